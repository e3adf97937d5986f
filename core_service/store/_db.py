"""The core's database: one async engine, the embedded SQLite default, and PostgreSQL."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from core_service.errors import StateError

log = logging.getLogger("dtm.db")


def normalise_url(url: str) -> str:
    """Accept the URLs people write and pick the async driver for them."""
    if "://" not in url:  # a bare path means a SQLite file
        return f"sqlite+aiosqlite:///{Path(url).expanduser().resolve()}"
    parsed = make_url(url)
    driver = {
        "sqlite": "sqlite+aiosqlite",
        "postgresql": "postgresql+asyncpg",
        "postgres": "postgresql+asyncpg",
        "mysql": "mysql+aiomysql",
        "mariadb": "mysql+aiomysql",
    }.get(parsed.drivername)
    if driver:
        parsed = parsed.set(drivername=driver)
    return parsed.render_as_string(hide_password=False)


def safe_url(url: str) -> str:
    """The URL with its password hidden, for messages and logs."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "<unparseable database URL>"


class Database:
    """Owns one AsyncEngine; `async with Database(url) as db` migrates on entry."""

    def __init__(self, url: str, *, echo: bool = False) -> None:
        self.url = normalise_url(url)
        self.dialect = make_url(self.url).get_backend_name()
        kwargs: dict[str, Any] = {"echo": echo}
        if self.dialect == "sqlite":
            path = make_url(self.url).database
            if path and path != ":memory:":
                Path(path).parent.mkdir(parents=True, exist_ok=True)
            # A small pool: opening a connection runs the pragmas below, which costs
            # more than most statements. Connections belong to this engine's loop.
            if path and path != ":memory:":
                kwargs["pool_size"] = 4
            kwargs["connect_args"] = {"timeout": 30}
        else:
            kwargs["pool_pre_ping"] = True
            kwargs["pool_size"] = 10
        self.engine: AsyncEngine = create_async_engine(self.url, **kwargs)
        if self.dialect == "sqlite":
            event.listen(self.engine.sync_engine, "connect", _sqlite_pragmas)
        self._closed = False

    def begin(self) -> Any:
        return self.engine.begin()

    def connect(self) -> Any:
        return self.engine.connect()

    async def migrate(self) -> list[int]:
        from core_service.store._schema import migrate

        try:
            async with self.engine.begin() as conn:
                return await migrate(conn, self.dialect)
        except OSError as exc:
            raise StateError(f"cannot reach the database at {safe_url(self.url)}: {exc}") from exc

    async def aclose(self) -> None:
        if not self._closed:
            self._closed = True
            await self.engine.dispose()

    async def __aenter__(self) -> Database:
        try:
            await self.migrate()
        except BaseException:
            await self.aclose()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    # WAL lets readers go on while one writer commits; busy_timeout waits for the writer.
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


async def upsert(
    conn: AsyncConnection, table: Any, rows: list[dict[str, Any]], keys: list[str]
) -> None:
    """Insert rows, replacing those whose primary key exists (SQLite, PostgreSQL, MySQL)."""
    if not rows:
        return
    dialect = conn.dialect.name
    stmt: Any
    if dialect in ("postgresql", "sqlite"):
        if dialect == "postgresql":
            from sqlalchemy.dialects.postgresql import insert as dialect_insert
        else:
            from sqlalchemy.dialects.sqlite import insert as dialect_insert  # type: ignore[assignment]
        ins = dialect_insert(table)
        update = {c.name: ins.excluded[c.name] for c in table.columns if c.name not in keys}
        if update:
            stmt = ins.on_conflict_do_update(index_elements=keys, set_=update)
        else:
            stmt = ins.on_conflict_do_nothing(index_elements=keys)
    else:
        from sqlalchemy.dialects.mysql import insert as mysql_insert

        mins: Any = mysql_insert(table)
        update = {c.name: mins.inserted[c.name] for c in table.columns if c.name not in keys}
        stmt = mins.on_duplicate_key_update(**update) if update else mins.prefix_with("IGNORE")
    await conn.execute(stmt, rows)
