"""Where the bench-only plugins live."""

from pathlib import Path

BENCH_PLUGINS = Path(__file__).resolve().parent / "bench_plugins"
