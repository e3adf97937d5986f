"""Shared CLI plumbing: output, errors, logging, running a coroutine with a plugin host."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from rich.console import Console
from rich.logging import RichHandler

from core_service.errors import DtmError
from core_service.host import PluginHost
from plugin_sdk import PluginError

T = TypeVar("T")
out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)


class UsageError(DtmError):
    """A command-line mistake; exit code 2."""


def setup_logging(verbose: int) -> None:
    level = logging.WARNING - 10 * verbose
    handler = RichHandler(console=err, show_path=False, rich_tracebacks=False, markup=False)
    logging.basicConfig(level=level, handlers=[handler], format="%(name)s: %(message)s")
    # Plugin logs are info by default: show them with -v only.
    logging.getLogger("dtm.plugin").setLevel(
        max(level, logging.INFO) if verbose else logging.WARNING
    )


def print_json(value: Any) -> None:
    out.print_json(json.dumps(value, default=str, sort_keys=True))


def parse_json_arg(text: str, what: str) -> Any:
    try:
        return json.loads(text)
    except ValueError as exc:
        raise UsageError(f"{what} is not valid JSON: {exc} (got {text[:80]!r})") from exc


def make_host(ns: argparse.Namespace) -> PluginHost:
    return PluginHost(
        plugin_dirs=getattr(ns, "plugin_dir", None) or (),
        reattach=getattr(ns, "reattach", None),
    )


def run(main: Callable[[], Awaitable[T]]) -> T:
    return asyncio.run(main())  # type: ignore[arg-type]


def fail(exc: BaseException) -> int:
    """Print an error for a person and return the exit code."""
    if isinstance(exc, UsageError):
        err.print(f"[red]error:[/red] {exc}", markup=True, highlight=False)
        return 2
    if isinstance(exc, DtmError | PluginError):
        err.print(f"[red]error:[/red] {exc}", markup=True, highlight=False)
        return 1
    raise exc


def add_output(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-o", "--output", choices=("text", "json"), default="text")


def call_wrapped(fn: Callable[[argparse.Namespace], int], ns: argparse.Namespace) -> int:
    try:
        return fn(ns)
    except (DtmError, PluginError) as exc:
        return fail(exc)
    except KeyboardInterrupt:
        err.print("interrupted")
        return 130
