"""Reading and writing lake tables in batches: one transaction per batch and its checkpoint."""

from __future__ import annotations

import datetime
import json
from collections.abc import Mapping
from typing import Any

from sqlalchemy import (
    MetaData,
    Table,
    Text,
    case,
    cast,
    delete,
    func,
    insert,
    literal,
    null,
    select,
    tuple_,
    update,
)
from sqlalchemy.ext.asyncio import AsyncConnection

from core_service import metrics
from core_service.errors import DtmError
from core_service.lake._schema import domain_tables, plugin_tables, subtasks
from core_service.lake._tables import coercer, ensure, raw_table, sql_table
from core_service.store import Database, upsert
from plugin_sdk import domain
from plugin_sdk._json import dumps, loads
from plugin_sdk._tables import TableSpec


class LakeError(DtmError):
    """A batch could not be written, or a table is unknown."""


def _json_object(dialect: str, table: Table, kinds: Mapping[str, str] | None = None) -> Any:
    """SQL making one JSON object of a row, shaped alike on every database.

    Raw tables: id, params, data, url, input. Other tables: every column, datetimes as
    ISO 8601 in UTC and booleans as JSON booleans (SQLite stores 0/1 and naive text).
    """
    names = list(kinds) if kinds else ["id", "params", "data", "url", "input"]
    pairs: list[Any] = []
    for name in names:
        column: Any = table.c[name]
        kind = (kinds or {}).get(name)
        if dialect == "sqlite" and kind == "datetime":
            column = func.strftime("%Y-%m-%dT%H:%M:%f+00:00", column)
        elif dialect == "sqlite" and kind == "bool":
            column = case((column.is_(None), null()), (column == 1, func.json("true")),
                          else_=func.json("false"))  # fmt: skip
        pairs += [literal(name), column]
    if dialect == "postgresql":
        return cast(func.json_build_object(*pairs), Text)
    return func.json_object(*pairs)  # SQLite (json1, built in) and MySQL/MariaDB


class LakeStore:
    """Knows every lake table of this database and moves rows in and out of them."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.metadata = MetaData()
        self.tables: dict[str, Table] = dict(domain_tables)
        self.specs: dict[str, TableSpec] = dict(domain.BY_NAME)
        self._coercers: dict[str, Any] = {}

    # -- tables -------------------------------------------------------------------------
    async def ensure_plugin_tables(
        self, plugin: str, scripts: list[dict[str, Any]], raw_names: list[str]
    ) -> list[str]:
        """Apply a plugin's declarative migrations and make its raw tables; idempotent."""
        specs = [
            TableSpec.from_dict(op["table"])
            for script in scripts
            for op in script.get("operations") or []
            if op.get("op") == "ensure_table"
        ]
        done: list[str] = []
        async with self.db.begin() as conn:
            applied = {
                r.table_name: r.spec_json
                for r in (
                    await conn.execute(
                        select(plugin_tables).where(plugin_tables.c.plugin == plugin)
                    )
                )
            }
            for spec in specs:
                if not spec.name.startswith(f"_tool_{plugin.replace('-', '_')}_"):
                    raise LakeError(
                        f"plugin {plugin} declares table {spec.name}; a plugin's tables must "
                        f"be named _tool_{plugin.replace('-', '_')}_<entity>"
                    )
                table = sql_table(spec, self.metadata)
                self.tables[spec.name], self.specs[spec.name] = table, spec
                spec_json = json.dumps(spec.as_dict(), sort_keys=True)
                if applied.get(spec.name) == spec_json:
                    continue
                done += await conn.run_sync(lambda c, t=table: ensure(c, t))
                await upsert(
                    conn,
                    plugin_tables,
                    [
                        {
                            "table_name": spec.name,
                            "plugin": plugin,
                            "spec_json": spec_json,
                            "applied_at": datetime.datetime.now(datetime.UTC),
                        }
                    ],
                    ["table_name"],
                )
            for name in raw_names:
                table = raw_table(name, self.metadata)
                self.tables[name] = table
                if name not in applied:
                    done += await conn.run_sync(lambda c, t=table: ensure(c, t))
                    await upsert(
                        conn,
                        plugin_tables,
                        [
                            {
                                "table_name": name,
                                "plugin": plugin,
                                "spec_json": "raw",
                                "applied_at": datetime.datetime.now(datetime.UTC),
                            }
                        ],
                        ["table_name"],
                    )
        return done

    def table(self, name: str) -> Table:
        try:
            return self.tables[name]
        except KeyError:
            raise LakeError(
                f"no lake table {name!r}: it is neither a domain table nor declared "
                "by a plugin that ran here"
            ) from None

    @staticmethod
    def is_raw(name: str) -> bool:
        return name.startswith("_raw_")

    # -- writing ------------------------------------------------------------------------
    async def write(self, conn: AsyncConnection, name: str, rows: list[str], params: str) -> int:
        if not rows:
            return 0
        table = self.table(name)
        if self.is_raw(name):
            now = datetime.datetime.now(datetime.UTC)
            values = []
            for text in rows:
                rec = loads(text)
                values.append(
                    {
                        "params": params,
                        "data": dumps(rec.get("data")),
                        "url": rec.get("url"),
                        "input": None if rec.get("input") is None else dumps(rec["input"]),
                        "created_at": now,
                    }
                )
            await conn.execute(insert(table), values)
            return len(values)
        coerce = self._coercers.get(name)
        if coerce is None:
            coerce = self._coercers[name] = coercer(self.specs[name])
        try:
            values = [coerce(loads(text)) for text in rows]
        except (KeyError, ValueError, TypeError) as exc:
            raise LakeError(f"a row for {name} is malformed: {exc}") from exc
        # A batch may hold the same key twice (e.g. an account met on two rows): last wins.
        pk = self.specs[name].primary_key
        unique = list({tuple(v[k] for k in pk): v for v in values}.values())
        await upsert(conn, table, unique, list(pk))
        return len(values)

    async def commit_batch(
        self,
        task_id: int,
        subtask: str,
        params: str,
        rows_by_table: Mapping[str, list[str]],
        checkpoint: str,
        plugin: str = "",
    ) -> int:
        """Write a batch's rows and its checkpoint in one transaction; return rows written."""
        written = 0
        async with self.db.begin() as conn:
            for name, rows in rows_by_table.items():
                count = await self.write(conn, name, rows, params)
                written += count
                metrics.records_written.inc(plugin, name, amount=count)
            await conn.execute(
                update(subtasks)
                .where(subtasks.c.task_id == task_id, subtasks.c.name == subtask)
                .values(checkpoint_json=checkpoint, records=subtasks.c.records + written)
            )
        return written

    # -- reading ------------------------------------------------------------------------
    async def read_after(
        self, name: str, params: str, after: Any, limit: int
    ) -> tuple[list[str], Any]:
        """The next `limit` rows of a scope in key order, and the key to continue after."""
        table = self.table(name)
        async with self.db.connect() as conn:
            if self.is_raw(name):
                # The database builds each row's JSON: no Python object per column, and
                # the work runs beside the event loop (SQLite's thread, PostgreSQL).
                row_json = _json_object(conn.dialect.name, table)
                query = select(table.c.id, row_json).where(table.c.params == params)
                if after is not None:
                    query = query.where(table.c.id > after)
                found = (await conn.execute(query.order_by(table.c.id).limit(limit))).all()
                return [r[1] for r in found], (found[-1][0] if found else after)
            spec = self.specs[name]
            pk = [table.c[k] for k in spec.primary_key]
            row_json = _json_object(conn.dialect.name, table, spec.all_columns)
            query = select(*pk, row_json).where(table.c._raw_data_params == params)
            if after is not None:
                query = query.where(tuple_(*pk) > tuple_(*after))
            found = (await conn.execute(query.order_by(*pk).limit(limit))).all()
        if not found:
            return [], after
        last = list(found[-1][: len(pk)])
        last = [v.isoformat() if isinstance(v, datetime.datetime) else v for v in last]
        return [r[-1] for r in found], last

    async def delete_scope(self, name: str, params: str) -> None:
        table = self.table(name)
        column = table.c.params if self.is_raw(name) else table.c._raw_data_params
        async with self.db.begin() as conn:
            await conn.execute(delete(table).where(column == params))
