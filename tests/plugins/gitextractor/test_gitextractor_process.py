"""gitextractor as the core runs it: a real plugin process, and a pipeline into a real
database (SQLite and PostgreSQL) whose domain tables agree with git."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import text

from core_service.host import PluginHost
from core_service.lake import PipelineRunner, parse_plan
from core_service.store import Database
from tests.plugins.gitextractor._support import git, numstat, sample_repo


async def test_through_a_real_plugin_process(tmp_path: Path) -> None:
    repo = sample_repo(tmp_path / "demo").path
    async with PluginHost(reattach="", health_interval=0) as host:
        handle = await host.get("gitextractor")
        info = await handle.info()
        answer = await handle.call(
            lambda c: c.handle_api("POST", "/test-connection", body={"url": str(repo)})
        )
    assert (info.name, info.version) == ("gitextractor", "0.1.0")
    assert {"data", "api"} <= set(info.capabilities)
    assert info.options_schema is not None and info.options_schema["required"] == ["url"]
    assert answer.status == 200 and answer.body["refs"] > 0


async def rows(db: Database, sql: str) -> list[dict[str, Any]]:
    async with db.connect() as conn:
        return [dict(r) for r in (await conn.execute(text(sql))).mappings()]


async def test_a_pipeline_fills_the_domain_tables(db_url: str, tmp_path: Path) -> None:
    repo = sample_repo(tmp_path / "demo").path
    plan = parse_plan({"name": "git", "plan": [[
        {"plugin": "gitextractor", "options": {"url": str(repo), "batchSize": 4}},
    ]]})  # fmt: skip
    async with Database(db_url) as db, PluginHost(health_interval=0) as host:
        runner = PipelineRunner(db, host, batch_size=5)
        for _ in range(2):  # a second full run replaces the first: same rows, no duplicates
            assert await runner.run(await runner.create(plan)) == "done"
        commits = await rows(db, "SELECT * FROM commits")
        raw = await rows(db, "SELECT * FROM _raw_gitextractor_commits")
        files = await rows(db, "SELECT * FROM commit_files")
        refs = await rows(db, "SELECT * FROM refs")
        accounts = await rows(db, "SELECT * FROM accounts")
        repo_commits = await rows(db, "SELECT * FROM repo_commits")
        repos = await rows(db, "SELECT * FROM repos")
    total = int(git(repo, "rev-list", "--all", "--count"))
    assert len(commits) == len(raw) == len(repo_commits) == total
    for c in commits:
        parents = git(repo, "log", "-1", "--format=%P", c["sha"]).split()
        assert (c["additions"], c["deletions"]) == numstat(repo, c["sha"], parents)
        assert c["authored_date"] is not None
    assert sum(f["additions"] for f in files) == sum(c["additions"] for c in commits)
    assert len(refs) == len(git(repo, "for-each-ref").splitlines())
    assert sorted(a["email"] for a in accounts) == [
        "ada@example.com", "ci@example.com", "grace@example.com",
    ]  # fmt: skip
    assert [(r["id"], r["name"]) for r in repos] == [(f"gitextractor:GitRepo:0:{repo}", "demo")]
