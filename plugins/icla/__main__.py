"""Entry point: `python -m plugins.icla` (the core starts it this way)."""

from plugin_sdk import serve
from plugins.icla.plugin import Icla

if __name__ == "__main__":
    serve(Icla)
