"""SQL tables of the data lake: raw, tool and domain tables from their declarations."""

from __future__ import annotations

import datetime
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

from plugin_sdk._json import dumps
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
        # Scope first, then the key: a converter reads a scope in key order, batch after
        # batch, and this index serves that without sorting the scope each time.
        keys = [table.c[k] for k in spec.primary_key]
        Index(f"ix_{spec.name}_scope", table.c._raw_data_params, *keys)
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
        parsed = value
    elif isinstance(value, int | float):
        return datetime.datetime.fromtimestamp(value, datetime.UTC)
    else:
        parsed = datetime.datetime.fromisoformat(value)  # 3.11 reads "Z" too
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=datetime.UTC)


def _to_json(value: Any) -> Any:
    return value if isinstance(value, str) else dumps(value)


def _to_int(value: Any) -> Any:
    return None if value == "" else int(value)


def _to_float(value: Any) -> Any:
    return None if value == "" else float(value)


def coercer(spec: TableSpec) -> Any:
    """A function turning one JSON row into column values of `spec` (unknown keys refused).

    It runs once per row written, so it converts only what is not already of the
    column's type: most values arrive right.
    """
    kinds = spec.all_columns
    columns = frozenset(kinds)
    defaults = dict.fromkeys(kinds)
    fix: list[tuple[str, type | tuple[type, ...], Any]] = []
    for name, kind in kinds.items():
        if kind == "datetime":
            fix.append((name, datetime.datetime, _parse_datetime))
        elif kind == "json":
            fix.append((name, str, _to_json))
        elif kind == "bool":
            fix.append((name, bool, bool))
        elif kind in ("int", "bigint"):
            fix.append((name, int, _to_int))
        elif kind == "float":
            fix.append((name, float, _to_float))
        else:
            fix.append((name, str, str))
    datetimes = [(n, t, f) for n, t, f in fix if t is datetime.datetime]
    others = [(n, t, f) for n, t, f in fix if t is not datetime.datetime]
    primary_key = spec.primary_key

    def coerce(row: Mapping[str, Any]) -> dict[str, Any]:
        if not columns.issuperset(row):
            unknown = sorted(set(row) - columns)
            raise KeyError(
                f"table {spec.name} has no column(s) {unknown}; its columns are {sorted(kinds)}"
            )
        out = dict(defaults)
        out.update(row)
        for name, _, fn in datetimes:
            value = out[name]
            if value is not None:
                out[name] = fn(value)  # always: a datetime may lack its zone
        for name, kind, fn in others:
            value = out[name]
            if value is not None and type(value) is not kind:
                out[name] = fn(value)
        for key in primary_key:
            if out[key] is None:
                raise KeyError(f"a row for {spec.name} lacks its primary key column {key!r}")
        return out

    return coerce
