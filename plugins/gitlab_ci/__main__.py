"""Entry point: `python -m plugins.gitlab_ci` (the core starts it this way)."""

from plugin_sdk import serve
from plugins.gitlab_ci.plugin import GitLabCI

if __name__ == "__main__":
    serve(GitLabCI)
