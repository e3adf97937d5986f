"""The github plugin run by the core: a pipeline over a real plugin process and a SQLite lake."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import text

from core_service.host import PluginHost
from core_service.lake import PipelineRunner, parse_plan
from core_service.store import Database
from tests.fakes import FakeGitHub
from tests.plugins.github.helpers import REPO, future, old

PLAN = {"name": "gh", "plan": [[{"plugin": "github", "connection": "gh",
                                 "options": {"repo": REPO}}]]}  # fmt: skip


async def rows(db: Database, sql: str) -> list[dict[str, Any]]:
    async with db.connect() as conn:
        return [dict(r) for r in (await conn.execute(text(sql))).mappings().all()]


async def test_a_pipeline_fills_the_lake_and_a_second_run_adds_only_changes(
    tmp_path: Path,
) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'lake.db'}"
    async with FakeGitHub() as gh, Database(url) as db, PluginHost(health_interval=0) as host:
        gh.add_repo(REPO, files={"README.md": "# lake\n"})
        issues = [gh.add_issue(REPO, f"issue {i}", created_at=old(i)) for i in range(120)]
        gh.add_pull(REPO, "feature", commits=["a", "b"], created_at=old(200), merged_at=old(300))
        gh.add_run(REPO, name="Deploy prod", created_at=old(10), updated_at=old(12))
        runner = PipelineRunner(db, host, batch_size=50)
        await runner.connections.add("github", "gh", gh.url, secrets={"token": gh.token})

        assert await runner.run(await runner.create(parse_plan(PLAN))) == "done"

        counts = {t: len(await rows(db, f'SELECT * FROM "{t}"'))
                  for t in ("_raw_github_issues", "_tool_github_issues", "issues",
                            "pull_requests", "pull_request_commits", "cicd_deployments")}  # fmt: skip
        assert counts == {"_raw_github_issues": 121, "_tool_github_issues": 120, "issues": 120,
                          "pull_requests": 1, "pull_request_commits": 2,
                          "cicd_deployments": 1}  # fmt: skip
        deployment = (await rows(db, "SELECT * FROM cicd_deployments"))[0]
        assert deployment["environment"] == "PRODUCTION" and deployment["duration_sec"] == 120
        assert deployment["_raw_data_params"] == '{"ConnectionId":1,"Name":"octo/lake"}'

        # A second run asks for what changed: one issue edited, one opened.
        issues[5].update(title="edited", updated_at=future())
        gh.add_issue(REPO, "late", created_at=future(1))
        gh.requests.clear()
        assert await runner.run(await runner.create(parse_plan(PLAN))) == "done"
        asked = [r.query for r in gh.requests_to(f"/repos/{REPO}/issues")]
        assert len(asked) == 1 and "since" in asked[0]
        titles = {r["title"] for r in await rows(db, "SELECT title FROM issues")}
        assert len(titles) == 121 and "edited" in titles and "issue 5" not in titles

        # The token is in no table of the lake.
        for table in [r["name"] for r in await rows(
            db, "SELECT name FROM sqlite_master WHERE type = 'table'"
        )]:  # fmt: skip
            dump = str(await rows(db, f'SELECT * FROM "{table}"'))
            assert gh.token not in dump, table
