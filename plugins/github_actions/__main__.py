"""Entry point: `python -m plugins.github_actions` (the core starts it this way)."""

from plugin_sdk import serve
from plugins.github_actions.plugin import GitHubActions

if __name__ == "__main__":
    serve(GitHubActions)
