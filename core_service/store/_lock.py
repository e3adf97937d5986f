"""The state lock: two applies on one state never interleave.

PostgreSQL: a session-level advisory lock, released by the server when the holding
process dies, plus a row saying who holds it. SQLite: the row itself is the lock;
a row left by a dead process is reported as stale and broken with `dtm state unlock`.
"""

from __future__ import annotations

import asyncio
import datetime
import getpass
import hashlib
import os
import socket
import time
from typing import Any

from sqlalchemy import delete, insert, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from core_service.errors import LockHeld
from core_service.store._db import Database, upsert
from core_service.store._schema import locks_table


def _advisory_key(namespace: str) -> int:
    digest = hashlib.sha256(f"dtm-state:{namespace}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class StateLock:
    def __init__(self, db: Database, namespace: str, purpose: str = "dtm") -> None:
        self.db = db
        self.namespace = namespace
        self.host = socket.gethostname()
        self.pid = os.getpid()
        self.holder = f"{getpass.getuser()}@{self.host} pid {self.pid}: {purpose}"
        self._conn: AsyncConnection | None = None
        self._held = False

    async def acquire(self, wait: float = 0.0, poll: float = 0.2) -> None:
        """Take the lock, waiting up to `wait` seconds; raise LockHeld naming the holder."""
        deadline = time.monotonic() + wait
        while True:
            if await self._try():
                self._held = True
                return
            if time.monotonic() >= deadline:
                raise LockHeld(await self._held_message())
            await asyncio.sleep(poll)

    async def _try(self) -> bool:
        now = datetime.datetime.now(datetime.UTC)
        row = {
            "namespace": self.namespace,
            "holder": self.holder,
            "host": self.host,
            "pid": self.pid,
            "acquired_at": now,
        }
        if self.db.dialect == "postgresql":
            conn = await self.db.engine.connect()
            got = (
                await conn.execute(
                    text("SELECT pg_try_advisory_lock(:k)"), {"k": _advisory_key(self.namespace)}
                )
            ).scalar()
            await conn.commit()
            if not got:
                await conn.close()
                return False
            self._conn = conn  # the session holds the lock for as long as it lives
            async with self.db.begin() as info:
                await upsert(info, locks_table, [row], ["namespace"])
            return True
        try:
            async with self.db.begin() as conn:
                await conn.execute(insert(locks_table).values(**row))
        except IntegrityError:
            return False
        return True

    async def info(self) -> dict[str, Any] | None:
        async with self.db.connect() as conn:
            found = (
                (
                    await conn.execute(
                        select(locks_table).where(locks_table.c.namespace == self.namespace)
                    )
                )
                .mappings()
                .first()
            )
        return dict(found) if found else None

    async def _held_message(self) -> str:
        info = await self.info()
        for _ in range(10):
            # On PostgreSQL the holder writes who it is just after it takes the lock.
            if info is not None:
                break
            await asyncio.sleep(0.1)
            info = await self.info()
        if info is None:
            return f"the state {self.namespace!r} is locked by another process"
        since = info["acquired_at"]
        if isinstance(since, datetime.datetime):
            since = since.replace(tzinfo=since.tzinfo or datetime.UTC).isoformat(timespec="seconds")
        text_ = f"the state {self.namespace!r} is locked by {info['holder']} since {since}"
        if info["host"] == self.host and not _pid_alive(int(info["pid"])):
            text_ += (
                f"; process {info['pid']} is no longer running, so the lock is stale: "
                "break it with `dtm state unlock`"
            )
        else:
            text_ += "; wait for it to finish, or pass --lock-timeout SECONDS to wait"
        return text_

    async def release(self) -> None:
        if not self._held:
            return
        self._held = False
        async with self.db.begin() as conn:
            await conn.execute(
                delete(locks_table).where(
                    locks_table.c.namespace == self.namespace, locks_table.c.pid == self.pid,
                    locks_table.c.host == self.host,
                )
            )  # fmt: skip
        if self._conn is not None:
            await self._conn.execute(
                text("SELECT pg_advisory_unlock(:k)"), {"k": _advisory_key(self.namespace)}
            )
            await self._conn.close()
            self._conn = None

    async def break_lock(self, force: bool = False) -> dict[str, Any] | None:
        """Remove a lock left behind; refuse to break one whose holder is alive unless forced."""
        info = await self.info()
        if self.db.dialect == "postgresql":
            async with self.db.connect() as conn:
                held = (
                    await conn.execute(
                        text(
                            "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted "
                            "AND ((classid::bigint << 32) | objid::bigint) = :k"
                        ),
                        {"k": _advisory_key(self.namespace) & 0xFFFFFFFFFFFFFFFF},
                    )
                ).scalar()
                if held is not None and not force:
                    raise LockHeld(
                        f"{await self._held_message()}; its database session is alive "
                        "(pass --force to terminate it)"
                    )
                if held is not None:
                    await conn.execute(text("SELECT pg_terminate_backend(:p)"), {"p": held})
        elif info and info["host"] == self.host and _pid_alive(int(info["pid"])) and not force:
            raise LockHeld(f"{await self._held_message()}; pass --force to break it anyway")
        async with self.db.begin() as conn:
            await conn.execute(delete(locks_table).where(locks_table.c.namespace == self.namespace))
        return info

    async def __aenter__(self) -> StateLock:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.release()
