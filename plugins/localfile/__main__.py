"""Entry point: `python -m plugins.localfile` (the core starts it this way)."""

from plugin_sdk import serve
from plugins.localfile.plugin import LocalFile

if __name__ == "__main__":
    serve(LocalFile)
