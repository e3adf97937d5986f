"""Reading and writing lake tables in batches: one transaction per batch and its checkpoint."""

from __future__ import annotations

import datetime
import json
from collections.abc import Mapping
from typing import Any

from sqlalchemy import MetaData, Table, delete, insert, select, tuple_, update
from sqlalchemy.ext.asyncio import AsyncConnection

from core_service.errors import DtmError
from core_service.lake._schema import domain_tables, plugin_tables, subtasks
from core_service.lake._tables import as_json_row, coercer, ensure, raw_table, sql_table
from core_service.store import Database, upsert
from plugin_sdk import domain
from plugin_sdk._tables import TableSpec


class LakeError(DtmError):
    """A batch could not be written, or a table is unknown."""


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
                rec = json.loads(text)
                values.append(
                    {
                        "params": params,
                        "data": json.dumps(rec.get("data")),
                        "url": rec.get("url"),
                        "input": None if rec.get("input") is None else json.dumps(rec["input"]),
                        "created_at": now,
                    }
                )
            await conn.execute(insert(table), values)
            return len(values)
        coerce = self._coercers.get(name)
        if coerce is None:
            coerce = self._coercers[name] = coercer(self.specs[name])
        try:
            values = [coerce(json.loads(text)) for text in rows]
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
    ) -> int:
        """Write a batch's rows and its checkpoint in one transaction; return rows written."""
        written = 0
        async with self.db.begin() as conn:
            for name, rows in rows_by_table.items():
                written += await self.write(conn, name, rows, params)
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
                query = select(table).where(table.c.params == params)
                if after is not None:
                    query = query.where(table.c.id > after)
                rows = (await conn.execute(query.order_by(table.c.id).limit(limit))).mappings()
                out = [as_json_row({**r, "data": r["data"], "input": r["input"]}) for r in rows]
                last = json.loads(out[-1])["id"] if out else after
                return out, last
            pk = [table.c[k] for k in self.specs[name].primary_key]
            query = select(table).where(table.c._raw_data_params == params)
            if after is not None:
                query = query.where(tuple_(*pk) > tuple_(*after))
            rows = list((await conn.execute(query.order_by(*pk).limit(limit))).mappings())
        out = [as_json_row(r) for r in rows]
        last = [rows[-1][c.name] for c in pk] if rows else after
        if rows and any(isinstance(v, datetime.datetime) for v in last):
            last = [v.isoformat() if isinstance(v, datetime.datetime) else v for v in last]
        return out, last

    async def delete_scope(self, name: str, params: str) -> None:
        table = self.table(name)
        column = table.c.params if self.is_raw(name) else table.c._raw_data_params
        async with self.db.begin() as conn:
            await conn.execute(delete(table).where(column == params))
