"""SQL tables of the data lake: raw, tool and domain tables from their declarations."""

from __future__ import annotations

import datetime
import json
from collections.abc import Mapping
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    inspect,
    text,
)
from sqlalchemy.engine import Connection
from sqlalchemy.types import TypeEngine

from plugin_sdk._tables import TableSpec

_TYPES: dict[str, Any] = {
    "text": Text,
    "int": Integer,
    "bigint": BigInteger,
    "float": Float,
    "bool": Boolean,
    "datetime": lambda: DateTime(timezone=True),
    "json": Text,
}


def _sql_type(kind: str, key: bool) -> TypeEngine[Any]:
    if kind == "string":
        # Keys need a length on MySQL; elsewhere a long value must not fail the write.
        return String(255) if key else Text()
    made: TypeEngine[Any] = _TYPES[kind]()
    return made


def sql_table(spec: TableSpec, metadata: MetaData) -> Table:
    if spec.name in metadata.tables:
        return metadata.tables[spec.name]
    cols = [
        Column(
            name,
            _sql_type(kind, name in spec.primary_key),
            primary_key=name in spec.primary_key,
            autoincrement=False,
        )
        for name, kind in spec.all_columns.items()
    ]
    table = Table(spec.name, metadata, *cols)
    if spec.lineage:
        Index(f"ix_{spec.name}_raw_params", table.c._raw_data_params)
    return table


def raw_table(name: str, metadata: MetaData) -> Table:
    """DevLake's raw table: id, params, data, url, input, created_at."""
    if name in metadata.tables:
        return metadata.tables[name]
    table = Table(
        name,
        metadata,
        Column(
            "id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
        ),
        Column("params", String(255), nullable=False),
        Column("data", Text, nullable=False),
        Column("url", Text),
        Column("input", Text),
        Column("created_at", DateTime(timezone=True), nullable=False),
    )
    Index(f"ix_{name}_params", table.c.params, table.c.id)
    return table


def ensure(conn: Connection, table: Table) -> list[str]:
    """Create the table, or add the columns it lacks; return what was done."""
    insp = inspect(conn)
    if not insp.has_table(table.name):
        table.create(conn)
        return [f"created {table.name}"]
    have = {c["name"] for c in insp.get_columns(table.name)}
    done = []
    for col in table.columns:
        if col.name not in have:
            ddl = col.type.compile(conn.dialect)
            conn.execute(text(f'ALTER TABLE "{table.name}" ADD COLUMN "{col.name}" {ddl}'))
            done.append(f"added {table.name}.{col.name}")
    return done


def _parse_datetime(value: Any) -> datetime.datetime | None:
    if value is None or value == "":
        return None
    if isinstance(value, datetime.datetime):
        return value
    if isinstance(value, int | float):
        return datetime.datetime.fromtimestamp(value, datetime.UTC)
    text_ = str(value).replace("Z", "+00:00")
    parsed = datetime.datetime.fromisoformat(text_)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=datetime.UTC)


def coercer(spec: TableSpec) -> Any:
    """A function turning one JSON row into column values of `spec` (unknown keys refused)."""
    kinds = spec.all_columns
    converters: dict[str, Any] = {}
    for name, kind in kinds.items():
        if kind == "datetime":
            converters[name] = _parse_datetime
        elif kind == "json":
            converters[name] = lambda v: v if v is None or isinstance(v, str) else json.dumps(v)
        elif kind == "bool":
            converters[name] = lambda v: None if v is None else bool(v)
        elif kind in ("int", "bigint"):
            converters[name] = lambda v: None if v is None or v == "" else int(v)
        elif kind == "float":
            converters[name] = lambda v: None if v is None or v == "" else float(v)
        elif kind in ("string", "text"):
            converters[name] = lambda v: None if v is None else str(v)
    defaults = dict.fromkeys(kinds)

    def coerce(row: Mapping[str, Any]) -> dict[str, Any]:
        unknown = [k for k in row if k not in kinds]
        if unknown:
            raise KeyError(
                f"table {spec.name} has no column(s) {unknown}; its columns are {sorted(kinds)}"
            )
        out = dict(defaults)
        for key, value in row.items():
            out[key] = converters[key](value)
        missing = [k for k in spec.primary_key if out[k] is None]
        if missing:
            raise KeyError(f"a row for {spec.name} lacks its primary key column(s) {missing}")
        return out

    return coerce


def as_json_row(row: Mapping[str, Any]) -> str:
    """A database row as the JSON a plugin receives (datetimes in ISO 8601)."""
    return json.dumps({k: _jsonable(v) for k, v in row.items()}, separators=(",", ":"))


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=datetime.UTC)
        return value.isoformat()
    return value
