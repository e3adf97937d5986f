"""The `dtm` command line."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from core_service import __version__
from core_service.cli import _develop, _lake, _plugin, _serve, _toolchain
from core_service.cli._common import call_wrapped, setup_logging


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dtm",
        description="DevStream: toolchain as code and an engineering data lake, with plugins "
        "as separate processes over gRPC.",
    )
    parser.add_argument("--version", action="version", version=f"dtm {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logs (-vv: debug)")
    parser.add_argument(
        "--plugin-dir",
        action="append",
        default=[],
        help="also look for plugins here (repeatable; $DTM_PLUGIN_DIRS too)",
    )
    parser.add_argument(
        "--reattach",
        default=None,
        help="JSON of standalone plugins to use instead of starting them "
        "(default: $DTM_REATTACH_PLUGINS)",
    )
    parser.add_argument(
        "--server",
        default=None,
        help="drive a running core at this URL instead of working here (default: $DTM_SERVER); "
        "the token comes from $DTM_API_TOKEN, never from the command line",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    _toolchain.register(sub)
    _lake.register(sub)
    _serve.register(sub)
    _plugin.register(sub)
    _develop.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    ns = parser.parse_args(argv)
    setup_logging(ns.verbose)
    return call_wrapped(ns.func, ns)


if __name__ == "__main__":
    sys.exit(main())
