"""Core tables and their versioned migrations.

Each migration is applied once, in order, inside one transaction, and recorded in
`dtm_migrations`. A new table or column is a new migration appended to MIGRATIONS;
an applied migration is never edited.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    insert,
    select,
    text,
)
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection

metadata = MetaData()

migrations_table = Table(
    "dtm_migrations",
    metadata,
    Column("version", Integer, primary_key=True),
    Column("name", String(200), nullable=False),
    Column("applied_at", DateTime(timezone=True), nullable=False),
)

state_table = Table(
    "dtm_state",
    metadata,
    # A namespace separates independent toolchains that share one database.
    Column("namespace", String(200), primary_key=True),
    Column("key", String(400), primary_key=True),  # "name.instanceID"
    Column("plugin", String(200), nullable=False),
    Column("instance_id", String(200), nullable=False),
    Column("options_json", Text, nullable=False),  # secret values replaced by a marker
    Column("secrets_enc", Text, nullable=False, default=""),  # encrypted {path: value}
    Column("options_digest", String(64), nullable=False),  # keyed digest, secrets included
    Column("status_json", Text, nullable=False),
    Column("depends_on_json", Text, nullable=False, default="[]"),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

locks_table = Table(
    "dtm_locks",
    metadata,
    Column("namespace", String(200), primary_key=True),
    Column("holder", String(400), nullable=False),  # "user@host pid N: dtm apply"
    Column("host", String(200), nullable=False),
    Column("pid", BigInteger, nullable=False),
    Column("acquired_at", DateTime(timezone=True), nullable=False),
)


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    apply: Callable[[Connection], None]


def _create(*tables: Table) -> Callable[[Connection], None]:
    def run(conn: Connection) -> None:
        for table in tables:
            table.create(conn, checkfirst=True)

    return run


MIGRATIONS: list[Migration] = [
    Migration(1, "toolchain state and locks", _create(state_table, locks_table)),
]

# Registered by other packages (the data lake) at import, before migrate() runs.
EXTRA_MIGRATIONS: list[Migration] = []


async def migrate(conn: AsyncConnection, dialect: str) -> list[int]:
    """Apply the migrations not yet applied; return their versions."""
    import core_service.lake._schema  # noqa: F401  (registers the data lake's migrations)

    if dialect == "postgresql":
        # Two cores starting at once must not both run migration N.
        await conn.execute(text("SELECT pg_advisory_xact_lock(7261001)"))
    await conn.run_sync(lambda c: migrations_table.create(c, checkfirst=True))
    done = set((await conn.execute(select(migrations_table.c.version))).scalars())
    applied = []
    for m in sorted([*MIGRATIONS, *EXTRA_MIGRATIONS], key=lambda m: m.version):
        if m.version in done:
            continue
        await conn.run_sync(m.apply)
        await conn.execute(
            insert(migrations_table).values(
                version=m.version, name=m.name, applied_at=datetime.datetime.now(datetime.UTC)
            )
        )
        applied.append(m.version)
    return applied
