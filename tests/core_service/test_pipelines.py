"""Pipelines on SQLite and PostgreSQL: the icla tutorial end to end, crashes of the plugin and of
the core followed by resumed runs equal to clean ones, cancel, rerun, incremental runs."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml
from sqlalchemy import text

from core_service.host import PluginHost, RestartPolicy
from core_service.lake import PipelineRunner, parse_plan
from core_service.store import Database
from plugin_sdk.testing import ReplayServer
from tests.conftest import FIXTURE_PLUGINS, ROOT


def plan(options: dict[str, Any], *, name: str = "p", connection: str | None = None) -> Any:
    task: dict[str, Any] = {"plugin": "lakekit", "options": options}
    if connection:
        task["connection"] = connection
    return parse_plan({"name": name, "plan": [[task]]})


async def table_rows(db_url: str, table: str, drop: tuple[str, ...] = ()) -> list[tuple[Any, ...]]:
    """Every row's content, sorted; autoincrement ids and their references left out."""
    async with Database(db_url) as db, db.connect() as conn:
        rows = (await conn.execute(text(f'SELECT * FROM "{table}"'))).mappings().all()
    return sorted(tuple(str(v) for k, v in sorted(r.items()) if k not in drop) for r in rows)


RAW_DROP = ("id", "created_at")
LINEAGE_DROP = ("_raw_data_id",)


async def lake_tables(db_url: str) -> dict[str, list[tuple[Any, ...]]]:
    return {
        "raw": await table_rows(db_url, "_raw_lakekit_items", RAW_DROP),
        "tool": await table_rows(db_url, "_tool_lakekit_items", LINEAGE_DROP),
        "domain": await table_rows(db_url, "accounts", LINEAGE_DROP),
    }


async def run_plan(db_url: str, the_plan: Any, **kw: Any) -> tuple[int, str, dict[str, Any]]:
    async with Database(db_url) as db, PluginHost(
        plugin_dirs=[FIXTURE_PLUGINS], health_interval=0,
        restart=RestartPolicy(initial_backoff=0.05),
    ) as host:  # fmt: skip
        runner = PipelineRunner(db, host, batch_size=kw.pop("batch_size", 50), **kw)
        pid = await runner.create(the_plan)
        status = await runner.run(pid)
        return pid, status, await runner.get(pid)


async def test_icla_tutorial_end_to_end(db_url: str) -> None:
    body = {
        "last_updated": "2026-11-01",
        "committers": {f"c{i:04d}": f"Committer {i}" for i in range(1200)},
    }
    async with ReplayServer({"GET /public/icla-info.json": body}) as api:
        async with Database(db_url) as db, PluginHost(health_interval=0) as host:
            runner = PipelineRunner(db, host)
            await runner.connections.add("icla", "apache", api.url + "/")
            pid = await runner.create(
                parse_plan({"name": "icla", "plan": [[{"plugin": "icla", "connection": "apache"}]]})
            )
            assert await runner.run(pid) == "done"
            info = await runner.get(pid)
    subs = {s["name"]: s for s in info["tasks"][0]["subtasks"]}
    assert {n: s["records"] for n, s in subs.items()} == {
        "collect_committer": 1200,
        "extract_committer": 1200,
        "convert_committer": 1200,
    }
    raw = await table_rows(db_url, "_raw_icla_committer", RAW_DROP)
    assert len(raw) == 1200
    tool = await table_rows(db_url, "_tool_icla_committer")
    assert len(tool) == 1200
    async with Database(db_url) as db, db.connect() as conn:
        row = (
            (await conn.execute(text("SELECT * FROM accounts WHERE user_name = 'c0007'")))
            .mappings()
            .one()
        )
    assert row["id"] == "icla:IclaCommitter:1:c0007"
    assert row["full_name"] == "Committer 7"
    assert row["_raw_data_table"] == "_raw_icla_committer"
    assert row["_raw_data_params"]


async def test_plugin_killed_mid_collection_resumes_without_loss_or_duplicates(
    db_url: str, clean_db_url: str, tmp_path: Path
) -> None:
    options = {"count": 400, "checkpointEvery": 7, "crashAt": 213,
               "crashFile": str(tmp_path / "crashed")}  # fmt: skip
    _, status, info = await run_plan(db_url, plan(options))
    assert status == "done"
    assert (tmp_path / "crashed").exists()  # it did crash mid-collection
    collect = info["tasks"][0]["subtasks"][0]
    assert collect["attempts"] == 2 and collect["records"] == 400
    crashed = await lake_tables(db_url)
    _, status, _ = await run_plan(clean_db_url, plan({"count": 400, "checkpointEvery": 7}))
    assert status == "done"
    assert crashed == await lake_tables(clean_db_url)
    assert len(crashed["raw"]) == len(crashed["tool"]) == len(crashed["domain"]) == 400


CORE_ENV = {**os.environ, "COLUMNS": "200"}


def dtm(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "core_service.cli", "--plugin-dir", str(FIXTURE_PLUGINS), *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT, env=CORE_ENV,
    )  # fmt: skip


async def committed(db_url: str, table: str) -> int:
    async with Database(db_url) as db, db.connect() as conn:
        try:
            return int((await conn.execute(text(f'SELECT count(*) FROM "{table}"'))).scalar() or 0)
        except Exception:
            return 0


async def test_core_killed_mid_pipeline_then_resumed_equals_a_clean_run(
    db_url: str, clean_db_url: str, tmp_path: Path
) -> None:
    plan_file = tmp_path / "plan.yaml"
    plan_file.write_text(yaml.safe_dump({"name": "slow", "plan": [[{
        "plugin": "lakekit", "options": {"count": 300, "delay": 0.01, "checkpointEvery": 5},
    }]]}))  # fmt: skip
    core = dtm("pipeline", "run", "-f", str(plan_file), "--database", db_url)
    deadline = time.monotonic() + 60
    while await committed(db_url, "_raw_lakekit_items") < 60:
        assert time.monotonic() < deadline and core.poll() is None, core.communicate()
        await asyncio.sleep(0.05)
    core.send_signal(signal.SIGKILL)
    core.communicate()
    partial = await committed(db_url, "_raw_lakekit_items")
    assert 0 < partial < 300
    async with Database(db_url) as db, db.connect() as conn:
        pid, status = (await conn.execute(text(
            "SELECT id, status FROM dtm_pipelines"))).one()  # fmt: skip
    assert status == "running"  # left behind by the killed core

    resumed = dtm("pipeline", "rerun", str(pid), "--failed-only", "--database", db_url)
    out, errs = resumed.communicate(timeout=120)
    assert resumed.returncode == 0, out + errs
    assert "done" in out
    after = await lake_tables(db_url)
    await run_plan(clean_db_url, plan({"count": 300, "checkpointEvery": 5}))
    assert after == await lake_tables(clean_db_url)
    assert len(after["raw"]) == len(after["domain"]) == 300


async def test_cancel_stops_within_a_second_and_rerun_finishes(db_url: str, tmp_path: Path) -> None:
    async with Database(db_url) as db, PluginHost(
        plugin_dirs=[FIXTURE_PLUGINS], health_interval=0
    ) as host:  # fmt: skip
        runner = PipelineRunner(db, host, batch_size=20)
        pid = await runner.create(plan({"count": 2000, "delay": 0.005, "checkpointEvery": 5}))
        cancel = asyncio.Event()
        running = asyncio.create_task(runner.run(pid, cancel))
        while await committed(db_url, "_raw_lakekit_items") < 40:
            await asyncio.sleep(0.05)
        asked = time.monotonic()
        await runner.request_cancel(pid)  # as `dtm pipeline cancel` does, through the database
        assert await asyncio.wait_for(running, 5) == "cancelled"
        assert time.monotonic() - asked < 1.5
        info = await runner.get(pid)
        collect = info["tasks"][0]["subtasks"][0]
        assert collect["status"] == "cancelled" and collect["resumable"]
        stopped_at = await committed(db_url, "_raw_lakekit_items")
        await asyncio.sleep(0.3)
        assert await committed(db_url, "_raw_lakekit_items") == stopped_at  # nothing more
        assert stopped_at == collect["records"]  # the table and the checkpoint agree
        await runner.prepare_rerun(pid, failed_only=True)
        assert await runner.run(pid) == "done"
    tables = await lake_tables(db_url)
    assert len(tables["raw"]) == len(tables["domain"]) == 2000


async def test_rerun_failed_only_runs_only_what_failed(db_url: str, tmp_path: Path) -> None:
    fail = tmp_path / "fail"
    fail.write_text("fail")
    async with Database(db_url) as db, PluginHost(
        plugin_dirs=[FIXTURE_PLUGINS], health_interval=0
    ) as host:  # fmt: skip
        runner = PipelineRunner(db, host)
        pid = await runner.create(plan({"count": 50, "failFile": str(fail)}))
        assert await runner.run(pid) == "failed"
        info = await runner.get(pid)
        assert "extractor told to fail" in info["message"]
        statuses = {s["name"]: s["status"] for s in info["tasks"][0]["subtasks"]}
        assert statuses == {
            "collect_items": "done",
            "extract_items": "failed",
            "convert_items": "pending",
        }
        fail.unlink()
        await runner.prepare_rerun(pid, failed_only=True)
        assert await runner.run(pid) == "done"
        subs = {s["name"]: s for s in (await runner.get(pid))["tasks"][0]["subtasks"]}
    assert subs["collect_items"]["attempts"] == 1  # not run again
    assert subs["extract_items"]["attempts"] == 2
    assert subs["convert_items"]["records"] == 50


async def test_incremental_run_collects_only_what_is_new(db_url: str) -> None:
    _, _, first = await run_plan(db_url, plan({"count": 30}))
    _, _, second = await run_plan(db_url, plan({"count": 45}))
    assert first["tasks"][0]["subtasks"][0]["records"] == 30
    assert second["tasks"][0]["subtasks"][0]["records"] == 15  # only the new ones
    tables = await lake_tables(db_url)
    assert len(tables["raw"]) == len(tables["tool"]) == len(tables["domain"]) == 45
    _, _, full = await run_plan(db_url, parse_plan({"name": "full", "plan": [[{
        "plugin": "lakekit", "options": {"count": 45}, "fullSync": True}]]}))  # fmt: skip
    assert full["tasks"][0]["subtasks"][0]["records"] == 45
    assert len((await lake_tables(db_url))["raw"]) == 45  # replaced, not appended


def test_connection_secrets_are_encrypted_and_never_printed(tmp_path: Path) -> None:
    db = tmp_path / "lake.db"
    env = {**CORE_ENV, "MY_GH_TOKEN": "ghp_supersecretvalue123"}
    made = subprocess.run(
        [sys.executable, "-m", "core_service.cli", "connection", "add", "github", "--name", "gh",
         "--endpoint", "http://127.0.0.1:1", "--token-env", "MY_GH_TOKEN", "--database", str(db)],
        capture_output=True, text=True, cwd=ROOT, env=env, timeout=60,
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    assert "secrets stored encrypted: token" in made.stdout
    listed = subprocess.run(
        [sys.executable, "-m", "core_service.cli", "connection", "list", "-o", "json",
         "--database", str(db)], capture_output=True, text=True, cwd=ROOT, env=env, timeout=60,
    )  # fmt: skip
    assert json.loads(listed.stdout)[0]["secrets"] == ["token"]
    everything = made.stdout + made.stderr + listed.stdout + listed.stderr
    assert "ghp_supersecretvalue123" not in everything
    assert b"ghp_supersecretvalue123" not in db.read_bytes()
