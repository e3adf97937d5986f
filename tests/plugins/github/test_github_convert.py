"""Every github subtask in class order, each fed like the core would: raw -> tool -> domain."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any

import pytest

from plugin_sdk import domain
from plugin_sdk._client import PluginClient
from plugin_sdk._tables import LINEAGE_COLUMNS
from plugin_sdk.testing import serve_in_process
from plugins.github import Github
from tests.fakes import FakeGitHub
from tests.plugins.github.helpers import REPO, old, run, task_data

TOOL = {spec.name: spec for spec in Github.tool_tables()}
MONA = {"login": "mona", "id": 77, "type": "User", "avatar_url": "https://avatars/77"}


def seed(gh: FakeGitHub) -> dict[str, Any]:
    """A small repository with one of each case the converters tell apart."""
    repo = gh.add_repo(REPO, description="the lake", files={"README.md": "# lake\n"})
    seeded = {"repo": repo}
    seeded["todo"] = gh.add_issue(REPO, "wish", labels=["enhancement"], created_at=old(0))
    seeded["bug"] = gh.add_issue(REPO, "crash", labels=["bug"], state="closed",
                                 created_at=old(0), closed_at=old(90), body="it crashes")  # fmt: skip
    seeded["doing"] = gh.add_issue(REPO, "work", created_at=old(1), assignee=MONA,
                                   assignees=[MONA])  # fmt: skip
    seeded["merged"] = gh.add_pull(REPO, "feature", head="feat", commits=["f1", "f2"],
                                   created_at=old(2), merged_at=old(40),
                                   merge_commit_sha="m" * 40)  # fmt: skip
    seeded["closed"] = gh.add_pull(REPO, "nope", created_at=old(3), state="closed",
                                   closed_at=old(4))  # fmt: skip
    seeded["open"] = gh.add_pull(REPO, "wip", created_at=old(5))
    seeded["commit"] = gh.add_commit(REPO, "fix crash", date=old(50), author_login="octocat")
    seeded["ci"] = gh.add_run(REPO, name="CI", created_at=old(10), updated_at=old(12))
    seeded["prod"] = gh.add_run(REPO, name="Deploy production", created_at=old(20),
                                run_started_at=old(21), updated_at=old(26))  # fmt: skip
    seeded["staging"] = gh.add_run(REPO, name="deploy", head_branch="staging",
                                   conclusion="failure", created_at=old(30),
                                   updated_at=old(31))  # fmt: skip
    seeded["running"] = gh.add_run(REPO, name="Deploy", head_branch="feature",
                                   status="in_progress", conclusion=None,
                                   created_at=old(40))  # fmt: skip
    return seeded


def key(table: str, row: Mapping[str, Any]) -> tuple[Any, ...]:
    spec = TOOL.get(table) or domain.BY_NAME[table]
    return tuple(row[k] for k in spec.primary_key)


async def run_all(client: PluginClient, gh: FakeGitHub, data: dict[str, Any]) -> dict[str, Any]:
    """Run every subtask in the order the class lists them, feeding each what the core
    would: raw rows (with id and params) to extractors, tool rows to converters and to the
    parent-driven collector. Tool and domain rows are upserted by primary key, as the core
    does; a subtask whose input is missing means the class order is wrong."""
    raw: dict[str, list[dict[str, Any]]] = {}
    rows: dict[str, dict[tuple[Any, ...], dict[str, Any]]] = {}
    for sub in Github.subtasks():
        meta = sub.resolved("github")
        source = meta["input_table"]
        if sub.kind == "collector" and not source:
            inputs: list[dict[str, Any]] = []
        elif sub.kind == "extractor":
            assert source in raw, f"{sub.name} runs before its raw table is collected"
            inputs = raw_rows_of(raw[source], data["params"])
        else:
            assert source in rows, f"{sub.name} runs before {source} is filled"
            inputs = list(rows[source].values())
        result = await run(client, gh, data, sub.name, inputs=inputs, input_table=source)
        for table, produced in result.rows.items():
            if table.startswith("_raw_"):
                raw.setdefault(table, []).extend(produced)
            else:
                for row in produced:
                    rows.setdefault(table, {})[key(table, row)] = row
    return {"raw": raw, **{t: list(r.values()) for t, r in rows.items()}}


def raw_rows_of(rows: list[dict[str, Any]], params: str) -> list[dict[str, Any]]:
    return [{"id": i, "params": params, **r} for i, r in enumerate(rows, start=1)]


def plain(row: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in row.items() if k not in LINEAGE_COLUMNS}


def one(rows: list[dict[str, Any]], **match: Any) -> dict[str, Any]:
    found = [r for r in rows if all(r.get(k) == v for k, v in match.items())]
    assert len(found) == 1, f"{len(found)} rows match {match}"
    return plain(found[0])


@pytest.fixture
async def lake(caplog: pytest.LogCaptureFixture) -> Any:
    caplog.set_level(logging.DEBUG)
    async with FakeGitHub() as gh, serve_in_process(Github()) as client:
        seeded = seed(gh)
        data = await task_data(client, gh)
        yield gh, seeded, data, await run_all(client, gh, data)


async def test_every_row_has_its_table_columns_and_lineage(lake: Any) -> None:
    _, _, data, out = lake
    for table, produced in out.items():
        if table == "raw":
            continue
        spec = TOOL.get(table) or domain.BY_NAME[table]
        for row in produced:
            assert set(row) == set(spec.all_columns), f"{table}: {set(row) ^ set(spec.all_columns)}"
            assert (
                row["_raw_data_params"] == data["params"] == '{"ConnectionId":1,"Name":"octo/lake"}'
            )
    expected = {
        "_tool_github_repos", "_tool_github_accounts", "_tool_github_issues",
        "_tool_github_pull_requests", "_tool_github_pull_request_commits",
        "_tool_github_commits", "_tool_github_runs", "repos", "accounts", "issues",
        "pull_requests", "pull_request_commits", "commits", "repo_commits", "cicd_pipelines",
        "cicd_deployments",
    }  # fmt: skip
    assert set(out) - {"raw"} == expected


async def test_repo_accounts_and_issues(lake: Any) -> None:
    _, seeded, data, out = lake
    repo_id = seeded["repo"]["id"]
    assert one(out["repos"]) == {
        "id": f"github:GithubRepo:1:{repo_id}", "name": REPO,
        "url": seeded["repo"]["html_url"], "description": "the lake",
        "owner_id": f"github:GithubAccount:1:{seeded['repo']['owner']['id']}",
        "language": None, "forked_from": None, "created_date": seeded["repo"]["created_at"],
        "updated_date": seeded["repo"]["updated_at"], "deleted": False,
    }  # fmt: skip
    assert one(out["accounts"], user_name="mona") == {
        "id": "github:GithubAccount:1:77", "email": None, "full_name": None,
        "user_name": "mona", "avatar_url": "https://avatars/77", "organization": None,
        "created_date": None, "status": 0,
    }  # fmt: skip
    # Pull requests are issues to GitHub, not to the domain layer.
    assert len(out["_tool_github_issues"]) == len(out["issues"]) == 3
    bug = seeded["bug"]
    assert one(out["issues"], issue_key=str(bug["number"])) == {
        "id": f"github:GithubIssue:1:{bug['id']}", "url": bug["html_url"],
        "issue_key": str(bug["number"]), "title": "crash", "description": "it crashes",
        "type": "BUG", "original_type": "bug", "status": "DONE", "original_status": "closed",
        "resolution_date": old(90), "created_date": old(0), "updated_date": old(0),
        "lead_time_minutes": 90, "priority": None, "creator_id": "github:GithubAccount:1:1",
        "creator_name": "octocat", "assignee_id": None, "assignee_name": None,
        "component": None,
    }  # fmt: skip
    statuses = {r["issue_key"]: (r["status"], r["type"]) for r in out["issues"]}
    assert statuses == {
        str(seeded["todo"]["number"]): ("TODO", "REQUIREMENT"),
        str(bug["number"]): ("DONE", "BUG"),
        str(seeded["doing"]["number"]): ("IN_PROGRESS", ""),
    }
    tool_issue = one(out["_tool_github_issues"], id=bug["id"])
    assert tool_issue["labels"] == ["bug"] and tool_issue["repo_id"] == data["repoId"]


async def test_pull_requests_and_their_commits(lake: Any) -> None:
    _, seeded, _, out = lake
    merged, repo_domain = seeded["merged"], f"github:GithubRepo:1:{seeded['repo']['id']}"
    assert one(out["pull_requests"], pull_request_key=merged["number"]) == {
        "id": f"github:GithubPullRequest:1:{merged['id']}", "base_repo_id": repo_domain,
        "head_repo_id": repo_domain, "status": "MERGED", "original_status": "closed",
        "title": "feature", "description": None, "url": merged["html_url"],
        "author_name": "octocat", "author_id": "github:GithubAccount:1:1",
        "pull_request_key": merged["number"], "created_date": old(2),
        "merged_date": old(40), "closed_date": old(40), "type": None,
        "merge_commit_sha": "m" * 40, "head_ref": "feat", "base_ref": "main",
        "base_commit_sha": merged["base"]["sha"], "head_commit_sha": merged["head"]["sha"],
    }  # fmt: skip
    by_key = {r["pull_request_key"]: r["status"] for r in out["pull_requests"]}
    assert by_key == {merged["number"]: "MERGED", seeded["closed"]["number"]: "CLOSED",
                      seeded["open"]["number"]: "OPEN"}  # fmt: skip
    pr_commits = sorted(out["pull_request_commits"], key=lambda r: r["commit_authored_date"])
    first = pr_commits[0]
    assert plain(first) == {
        "commit_sha": first["commit_sha"],
        "pull_request_id": f"github:GithubPullRequest:1:{merged['id']}",
        "commit_author_name": "DevStream Bot",
        "commit_author_email": "bot@devstream.invalid",
        "commit_authored_date": first["commit_authored_date"],
    }
    assert len(pr_commits) == 2


async def test_commits_and_repo_commits(lake: Any) -> None:
    _, seeded, _, out = lake
    sha = seeded["commit"]["sha"]
    assert one(out["commits"], sha=sha) == {
        "sha": sha, "additions": None, "deletions": None, "dev_eq": None,
        "message": "fix crash", "author_name": "Mona Lisa", "author_email": "mona@example.com",
        "authored_date": old(50), "author_id": "mona@example.com",
        "committer_name": "Mona Lisa", "committer_email": "mona@example.com",
        "committed_date": old(50), "committer_id": "mona@example.com",
    }  # fmt: skip
    repo_domain = f"github:GithubRepo:1:{seeded['repo']['id']}"
    assert {(r["repo_id"], r["commit_sha"]) for r in out["repo_commits"]} == {
        (repo_domain, c["sha"]) for c in out["commits"]
    }
    assert len(out["commits"]) == 2  # the README's commit and "fix crash"


async def test_runs_become_pipelines_and_deployments(lake: Any) -> None:
    _, seeded, _, out = lake
    scope = f"github:GithubRepo:1:{seeded['repo']['id']}"
    prod = seeded["prod"]
    assert one(out["cicd_deployments"], name="Deploy production") == {
        "id": f"github:GithubRun:1:{prod['id']}", "cicd_scope_id": scope,
        "name": "Deploy production", "result": "SUCCESS", "status": "DONE",
        "original_status": "completed", "original_result": "success",
        "environment": "PRODUCTION", "original_environment": "main",
        "created_date": old(20), "started_date": old(21), "finished_date": old(26),
        "duration_sec": 300.0,
    }  # fmt: skip
    ci = seeded["ci"]
    assert one(out["cicd_pipelines"], name="CI") == {
        "id": f"github:GithubRun:1:{ci['id']}", "name": "CI", "result": "SUCCESS",
        "status": "DONE", "original_status": "completed", "original_result": "success",
        "duration_sec": 120.0, "created_date": old(10), "finished_date": old(12),
        "environment": None, "type": None, "cicd_scope_id": scope,
    }  # fmt: skip
    deployments = {r["name"]: (r["environment"], r["result"], r["status"], r["duration_sec"])
                   for r in out["cicd_deployments"]}  # fmt: skip
    assert deployments == {
        "Deploy production": ("PRODUCTION", "SUCCESS", "DONE", 300.0),
        "deploy": ("STAGING", "FAILURE", "DONE", 60.0),
        "Deploy": ("TESTING", "", "IN_PROGRESS", None),
    }
    assert len(out["cicd_pipelines"]) == 4  # every run, deployment or not
    assert {r["type"] for r in out["cicd_pipelines"]} == {None, "DEPLOYMENT"}


async def test_the_token_is_in_no_row_and_no_log(
    lake: Any, caplog: pytest.LogCaptureFixture
) -> None:
    gh, _, data, out = lake
    assert gh.token not in json.dumps(out) and gh.token not in json.dumps(data)
    records = caplog.get_records("setup")  # the fixture ran every subtask
    assert any("/repos/octo/lake" in r.getMessage() for r in records)  # requests were logged
    assert all(gh.token not in r.getMessage() for r in records)
    assert all(gh.token not in (r.exc_text or "") for r in records)
