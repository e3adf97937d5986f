"""Entry point: `python -m plugins.github` (the core starts it this way)."""

from plugin_sdk import serve
from plugins.github.plugin import Github

if __name__ == "__main__":
    serve(Github)
