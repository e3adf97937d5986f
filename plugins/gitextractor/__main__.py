"""Entry point: `python -m plugins.gitextractor` (the core starts it this way)."""

from plugin_sdk import serve
from plugins.gitextractor.plugin import GitExtractor

if __name__ == "__main__":
    serve(GitExtractor)
