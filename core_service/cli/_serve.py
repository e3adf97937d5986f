"""`dtm serve`: the core as a service (REST API, pipelines that survive restarts)."""

from __future__ import annotations

import argparse
import logging
import os

from core_service.cli._common import UsageError, out
from core_service.errors import DtmError


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("serve", help="run the core as a service: REST API on /api/v1")
    p.add_argument(
        "--listen",
        default=os.environ.get("DTM_LISTEN", "127.0.0.1:8080"),
        help="HOST:PORT (default 127.0.0.1:8080, or $DTM_LISTEN)",
    )
    p.add_argument(
        "--database-url", default=None, help="default: $DTM_DATABASE_URL, else ./devstream.db"
    )
    p.set_defaults(func=cmd_serve)


def cmd_serve(ns: argparse.Namespace) -> int:
    from aiohttp import web

    from core_service.api import Core, is_loopback, make_app

    host, _, port = ns.listen.rpartition(":")
    if not port.isdigit():
        raise UsageError(f"--listen {ns.listen!r}: expected HOST:PORT")
    token = os.environ.get("DTM_API_TOKEN", "")
    if not is_loopback(host) and not token:
        raise UsageError(
            f"refusing to listen on {ns.listen} without a token: set DTM_API_TOKEN (clients "
            "send `Authorization: Bearer TOKEN`), or listen on 127.0.0.1"
        )
    url = ns.database_url or os.environ.get("DTM_DATABASE_URL") or "devstream.db"
    logging.getLogger("dtm").setLevel(logging.INFO)
    try:
        core = Core(url, plugin_dirs=ns.plugin_dir)
    except DtmError:
        raise
    app = make_app(core, token)
    out.print(
        f"dtm core serving on http://{ns.listen}/api/v1 (OpenAPI at /api/v1/openapi.json)"
        + ("" if token else "; no token: loopback only"),
        highlight=False,
    )
    web.run_app(
        app,
        host=host or "0.0.0.0",
        port=int(port),
        print=None,
        handle_signals=True,
        shutdown_timeout=15,
    )
    return 0
