"""Fast JSON for the data path: rows cross the wire and the database as JSON text."""

from __future__ import annotations

from typing import Any

import orjson

# Datetimes without a zone are UTC, the convention of every lake table.
_OPTIONS = orjson.OPT_NAIVE_UTC | orjson.OPT_NON_STR_KEYS


def dumps(value: Any) -> str:
    return orjson.dumps(value, default=str, option=_OPTIONS).decode()


def dumps_sorted(value: Any) -> str:
    """Keys sorted: the same data always gives the same text (statuses are compared)."""
    return orjson.dumps(value, default=str, option=_OPTIONS | orjson.OPT_SORT_KEYS).decode()


def loads(text: str | bytes) -> Any:
    return orjson.loads(text)
