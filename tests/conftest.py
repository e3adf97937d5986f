"""Shared fixtures: fixture plugins, throwaway plugin folders, database URLs."""

from __future__ import annotations

import os
import sys
import textwrap
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from core_service.host import PluginHost, RestartPolicy

ROOT = Path(__file__).resolve().parent.parent
FIXTURE_PLUGINS = ROOT / "tests" / "fixtures" / "plugins"


def write_plugin(base: Path, name: str, script: str, versions: str = "[1]") -> Path:
    """A plugin folder whose command runs `script` with this interpreter."""
    folder = base / name
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "main.py").write_text(textwrap.dedent(script))
    (folder / "plugin.yaml").write_text(
        f"name: {name}\nversion: 0.0.1\nprotocol_versions: {versions}\n"
        f"command: [{sys.executable!r}, {str(folder / 'main.py')!r}]\n"
    )
    return base


@pytest.fixture
async def host() -> AsyncIterator[PluginHost]:
    async with PluginHost(
        plugin_dirs=[FIXTURE_PLUGINS],
        reattach="",
        start_timeout=10,
        health_interval=0,
        restart=RestartPolicy(budget=3, window=30, initial_backoff=0.05, max_backoff=0.5),
    ) as h:
        yield h


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers kill(0); read its state.
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


# -- databases: every database test runs on SQLite and on PostgreSQL -------------------
PG_ADMIN_URL = os.environ.get("DTM_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
_pg_reason: list[str] = []


def _postgres_reachable() -> str:
    """'' when PostgreSQL answers, else why not (checked once per session)."""
    if not _pg_reason:
        import asyncio as _asyncio

        import asyncpg

        async def probe() -> None:
            conn = await asyncpg.connect(PG_ADMIN_URL, timeout=5)
            await conn.close()

        try:
            _asyncio.run(probe())
            _pg_reason.append("")
        except Exception as exc:
            _pg_reason.append(f"PostgreSQL at {PG_ADMIN_URL} is unreachable: {exc}")
    return _pg_reason[0]


def _fresh_pg_database() -> str:
    import asyncio as _asyncio
    import uuid

    import asyncpg

    name = f"dtm_test_{uuid.uuid4().hex[:12]}"

    async def create() -> None:
        conn = await asyncpg.connect(PG_ADMIN_URL, timeout=10)
        try:
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()

    _asyncio.run(create())
    return PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"


def _drop_pg_database(url: str) -> None:
    import asyncio as _asyncio

    import asyncpg

    name = url.rsplit("/", 1)[1]

    async def drop() -> None:
        conn = await asyncpg.connect(PG_ADMIN_URL, timeout=10)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()

    _asyncio.run(drop())


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty database URL: a SQLite file, or a new PostgreSQL database."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'state.db'}"
        return
    reason = _postgres_reachable()
    if reason:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{reason} (under CI a missing PostgreSQL is a failure, not a skip)")
        pytest.skip(reason)
    url = _fresh_pg_database()
    try:
        yield url
    finally:
        _drop_pg_database(url)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if _pg_reason and _pg_reason[0]:
        terminalreporter.write_line(
            f"NOTE: the PostgreSQL variants of the database tests were SKIPPED: {_pg_reason[0]}",
            yellow=True,
        )


@pytest.fixture
def clean_db_url(db_url: str, tmp_path: Path) -> Iterator[str]:
    """A second fresh database of the same kind as `db_url`, for a clean comparison run."""
    if db_url.startswith("sqlite"):
        yield f"sqlite+aiosqlite:///{tmp_path / 'clean.db'}"
        return
    url = _fresh_pg_database()
    try:
        yield url
    finally:
        _drop_pg_database(url)
