"""Entry point: `python -m plugins.repo_scaffolding` (the core starts it this way)."""

from plugin_sdk import serve
from plugins.repo_scaffolding.plugin import RepoScaffolding

if __name__ == "__main__":
    serve(RepoScaffolding)
