"""The github collectors against FakeGitHub: pages, checkpoints, resume, incremental, faults."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from aiohttp import web
from yarl import URL

from plugin_sdk import ApiClient
from plugin_sdk._client import PluginClient
from plugin_sdk.testing import serve_in_process
from plugins.github import Github
from plugins.github._collect import in_order
from plugins.github._options import parse_time
from tests.fakes import FakeGitHub
from tests.plugins.github.helpers import (
    REPO,
    FaultyGitHub,
    batches,
    connection,
    future,
    ids,
    old,
    raw_rows,
    run,
    seed_issues,
    task_data,
)

ISSUES = f"/repos/{REPO}/issues"
RAW_ISSUES = "_raw_github_issues"


@pytest.fixture
async def gh() -> AsyncIterator[FakeGitHub]:
    async with FakeGitHub() as fake:
        fake.add_repo(REPO)  # no initial commit: the commit tests seed every commit they count
        yield fake


@pytest.fixture
async def client() -> AsyncIterator[PluginClient]:
    async with serve_in_process(Github()) as c:
        yield c


def queries(gh: FakeGitHub, path: str) -> list[dict[str, str]]:
    return [dict(r.query) for r in gh.requests_to(path)]


def page_of(url: str) -> str:
    return URL(url).query["page"]


async def test_issues_follow_link_pages_and_checkpoint_each_page(
    gh: FakeGitHub, client: PluginClient
) -> None:
    seeded = seed_issues(gh, 250)
    data = await task_data(client, gh)
    before = parse_time(future(-120))  # an hour ago: the run starts after it

    result = await run(client, gh, data, "collect_issues")

    assert result.records == 250
    assert ids(result, RAW_ISSUES) == [i["id"] for i in seeded]  # oldest change first
    assert [q.get("page") for q in queries(gh, ISSUES)] == [None, "2", "3"]
    first = queries(gh, ISSUES)[0]
    assert first == {"state": "all", "sort": "updated", "direction": "asc", "per_page": "100"}
    # One checkpoint per page: the next page to ask for, then None after the last one.
    pages = [c["user"]["next"] for c in result.checkpoints]
    assert [p and page_of(p) for p in pages] == ["2", "3", None, None]
    assert all(c["skip"] == 0 for c in result.checkpoints)
    assert result.progress[-1] == (250, 250)
    assert parse_time(result.state["since"]) >= before
    row = result.rows[RAW_ISSUES][0]
    assert row["url"].startswith(gh.url + ISSUES) and row["input"] == {"repo_id": data["repoId"]}


async def test_second_run_asks_only_for_what_changed(gh: FakeGitHub, client: PluginClient) -> None:
    seeded = seed_issues(gh, 250)
    data = await task_data(client, gh)
    first = await run(client, gh, data, "collect_issues")
    since = first.state["since"]

    # After the first run: three issues edited, five opened.
    for issue in seeded[10:13]:
        issue.update(title=issue["title"] + " (edited)", updated_at=future())
    added = [gh.add_issue(REPO, f"new {i}", created_at=future(i)) for i in range(5)]
    gh.requests.clear()

    second = await run(client, gh, data, "collect_issues", state=first.state)

    assert queries(gh, ISSUES) == [
        {"state": "all", "sort": "updated", "direction": "asc", "since": since, "per_page": "100"}
    ]
    assert second.records == 8
    assert ids(second, RAW_ISSUES) == [i["id"] for i in seeded[10:13] + added]
    assert parse_time(second.state["since"]) >= parse_time(since)

    # A full sync ignores the state and asks for everything again.
    gh.requests.clear()
    full = await run(client, gh, data, "collect_issues", state=first.state, full_sync=True)
    assert full.records == 255 and "since" not in queries(gh, ISSUES)[0]


async def test_time_after_bounds_the_first_run(gh: FakeGitHub, client: PluginClient) -> None:
    seed_issues(gh, 30)
    data = await task_data(client, gh, timeAfter="2024-01-01T00:20:00Z")
    result = await run(client, gh, data, "collect_issues")
    assert result.records == 10
    assert queries(gh, ISSUES)[0]["since"] == "2024-01-01T00:20:00Z"


async def test_resume_after_page_one_misses_nothing_and_repeats_nothing(
    gh: FakeGitHub, client: PluginClient
) -> None:
    seed_issues(gh, 250)
    data = await task_data(client, gh)
    clean = await run(client, gh, data, "collect_issues")
    after_page_1 = clean.checkpoints[0]
    assert after_page_1["user"]["next"] and after_page_1["skip"] == 0
    gh.requests.clear()

    resumed = await run(client, gh, data, "collect_issues", checkpoint=after_page_1)

    assert [q.get("page") for q in queries(gh, ISSUES)] == ["2", "3"]  # not page 1 again
    committed = ids(clean, RAW_ISSUES)[:100]  # what the interrupted run had committed
    assert committed + ids(resumed, RAW_ISSUES) == ids(clean, RAW_ISSUES)
    # The resumed run saves the first attempt's start as the next run's `since`.
    assert resumed.state == clean.state


async def test_resume_from_any_batch_mid_page(gh: FakeGitHub, client: PluginClient) -> None:
    seed_issues(gh, 250)
    data = await task_data(client, gh, batchSize=30)
    sent = await batches(client, gh, data, "collect_issues")
    everything = [r["data"]["id"] for b in sent for r in b.rows]
    assert len(everything) == 250
    assert any(b.checkpoint["skip"] for b in sent)  # some checkpoints fall mid-page

    for crash_after in range(len(sent) - 1):
        committed = [r["data"]["id"] for b in sent[: crash_after + 1] for r in b.rows]
        again = await batches(
            client, gh, data, "collect_issues", checkpoint=sent[crash_after].checkpoint
        )
        rest = [r["data"]["id"] for b in again for r in b.rows]
        assert committed + rest == everything, f"resumed after batch {crash_after}"


@pytest.mark.parametrize(
    ("arm", "extra_requests"),
    [
        pytest.param(lambda g: g.secondary_limit_next(1, retry_after=1), 1, id="secondary-403"),
        pytest.param(lambda g: g.fail_next(3, status=502), 3, id="502s"),
        pytest.param(lambda g: g.drop_next(1), 1, id="dropped"),
    ],
)
async def test_faults_mid_collection_still_give_every_issue(
    arm: Callable[[FakeGitHub], None], extra_requests: int
) -> None:
    async with FaultyGitHub() as gh, serve_in_process(Github()) as client:
        gh.add_repo(REPO)
        seeded = seed_issues(gh, 250)
        data = await task_data(client, gh)
        gh.arm = arm  # fires once page 2 is served: page 3 meets it

        result = await run(client, gh, data, "collect_issues")

        assert ids(result, RAW_ISSUES) == [i["id"] for i in seeded]
        page_3 = [r for r in gh.requests_to(ISSUES) if r.query.get("page") == "3"]
        assert len(page_3) >= 1 + extra_requests  # the fault hit page 3, which was retried


async def test_pulls_stop_at_the_first_unchanged_one(gh: FakeGitHub, client: PluginClient) -> None:
    pulls = [gh.add_pull(REPO, f"pr {i}", created_at=old(i)) for i in range(150)]
    data = await task_data(client, gh)
    first = await run(client, gh, data, "collect_pulls")
    assert first.records == 150
    assert ids(first, "_raw_github_pull_requests") == [p["id"] for p in reversed(pulls)]
    assert queries(gh, f"/repos/{REPO}/pulls")[0]["direction"] == "desc"

    pulls[3]["updated_at"] = future()
    added = gh.add_pull(REPO, "late", created_at=future(5))
    gh.requests.clear()
    second = await run(client, gh, data, "collect_pulls", state=first.state)

    assert ids(second, "_raw_github_pull_requests") == [added["id"], pulls[3]["id"]]
    assert len(gh.requests_to(f"/repos/{REPO}/pulls")) == 1  # page 2 is all older: not asked


async def test_pull_commits_are_driven_by_pull_request_rows(
    gh: FakeGitHub, client: PluginClient
) -> None:
    small = gh.add_pull(REPO, "small", commits=["one", "two"], created_at=old(1))
    empty = gh.add_pull(REPO, "empty", created_at=old(2))
    big = gh.add_pull(REPO, "big", commits=[f"c{i}" for i in range(120)], created_at=old(3))
    data = await task_data(client, gh)
    raw = await run(client, gh, data, "collect_pulls")
    tool = await run(
        client, gh, data, "extract_pulls", inputs=raw_rows(raw, "_raw_github_pull_requests",
                                                            data["params"]),
    )  # fmt: skip
    parents = tool.rows["_tool_github_pull_requests"]
    assert [p["number"] for p in parents] == [big["number"], empty["number"], small["number"]]

    result = await run(
        client, gh, data, "collect_pull_commits", inputs=parents, batch_size=2,
        input_table="_tool_github_pull_requests",
    )  # fmt: skip

    rows = result.rows["_raw_github_pull_request_commits"]
    assert result.records == len(rows) == 122
    by_pull = {p["id"]: [r["data"]["sha"] for r in rows if r["input"]["pull_request_id"] == p["id"]]
               for p in (small, empty, big)}  # fmt: skip
    assert by_pull[small["id"]] == [c["sha"] for c in gh.repos[REPO].pull_commits[1]]
    assert by_pull[empty["id"]] == [] and len(by_pull[big["id"]]) == 120
    assert rows[0]["input"] == {"repo_id": data["repoId"], "pull_request_id": big["id"],
                                "number": big["number"]}  # fmt: skip
    per_pull = [len(gh.requests_to(f"/repos/{REPO}/pulls/{p['number']}/commits"))
                for p in (small, empty, big)]  # fmt: skip
    assert per_pull == [1, 1, 2]  # one request per parent, the big one on two pages
    # The core's input checkpoints come back after each batch of parents.
    assert result.checkpoints == [{"after": 0}, {"after": 2}]


async def test_commits_since_the_last_run(gh: FakeGitHub, client: PluginClient) -> None:
    for i in range(120):
        gh.add_commit(REPO, f"change {i}", date=old(i), author_login="octocat")
    data = await task_data(client, gh)
    first = await run(client, gh, data, "collect_commits")
    assert first.records == 120
    assert [c["user"]["next"] is None for c in first.checkpoints] == [False, True, True]

    new = [gh.add_commit(REPO, f"late {i}", date=future(i)) for i in range(2)]
    gh.requests.clear()
    second = await run(client, gh, data, "collect_commits", state=first.state)
    assert [r["data"]["sha"] for r in second.rows["_raw_github_commits"]] == [
        c["sha"] for c in reversed(new)
    ]
    assert queries(gh, f"/repos/{REPO}/commits")[0]["since"] == first.state["since"]


async def test_an_empty_repository_has_no_commits(client: PluginClient) -> None:
    async with FakeGitHub() as gh:
        gh.add_repo(REPO)  # no files: GitHub answers 409 for its commits
        data = await task_data(client, gh)
        result = await run(client, gh, data, "collect_commits")
    assert result.records == 0 and "since" in result.state


class SlowRuns(FakeGitHub):
    """Runs pages answered slowly, counting how many are in flight at once."""

    def __init__(self) -> None:
        super().__init__()
        self.in_flight = self.most = 0

    async def _list_runs(self, request: web.Request) -> web.Response:
        self.in_flight += 1
        self.most = max(self.most, self.in_flight)
        try:
            await asyncio.sleep(0.05)
            return await super()._list_runs(request)
        finally:
            self.in_flight -= 1


async def sequential_run_ids(gh: FakeGitHub) -> list[Any]:
    out: list[Any] = []
    async with ApiClient(gh.url, token=gh.token) as api:
        async for resp in api.paginate(f"repos/{REPO}/actions/runs", style="page",
                                       items_key="workflow_runs"):  # fmt: skip
            out += [r["id"] for r in resp.body["workflow_runs"]]
    return out


async def test_runs_pages_in_parallel_equal_the_sequential_list(client: PluginClient) -> None:
    async with SlowRuns() as gh:
        gh.add_repo(REPO)
        for i in range(450):
            gh.add_run(REPO, created_at=old(i), name="CI")
        data = await task_data(client, gh)

        result = await run(client, gh, data, "collect_runs")

        assert ids(result, "_raw_github_runs") == await sequential_run_ids(gh)
        assert result.records == 450
        assert 1 < gh.most <= 4  # in parallel, and bounded
        pages = [q["page"] for q in queries(gh, f"/repos/{REPO}/actions/runs")][:5]
        assert sorted(pages) == ["1", "2", "3", "4", "5"]
        assert [c["user"]["page"] for c in result.checkpoints] == [2, 3, 4, 5, 6, 6]
        assert result.progress[-1] == (450, 450)
        assert result.state == {}  # not incremental

        # Resumed at page 3: pages 3 to 5 only, nothing repeated.
        at_page_3 = result.checkpoints[1]
        gh.requests.clear()
        resumed = await run(client, gh, data, "collect_runs", checkpoint=at_page_3)
        assert ids(resumed, "_raw_github_runs") == ids(result, "_raw_github_runs")[200:]
        assert sorted(q["page"] for q in queries(gh, f"/repos/{REPO}/actions/runs")) == [
            "3", "4", "5"
        ]  # fmt: skip


async def test_collect_repo(gh: FakeGitHub, client: PluginClient) -> None:
    data = await task_data(client, gh)
    result = await run(client, gh, data, "collect_repo")
    assert [r["data"]["full_name"] for r in result.rows["_raw_github_repos"]] == [REPO]
    assert result.rows["_raw_github_repos"][0]["url"] == f"{gh.url}/repos/{REPO}"


async def test_parent_requests_keep_to_the_connection_rate_limit(
    gh: FakeGitHub, client: PluginClient
) -> None:
    for i in range(3):
        gh.add_pull(REPO, f"pr {i}", commits=["x"], created_at=old(i))
    data = await task_data(client, gh)
    raw = await run(client, gh, data, "collect_pulls")
    parents = (
        await run(client, gh, data, "extract_pulls",
                  inputs=raw_rows(raw, "_raw_github_pull_requests", data["params"]))
    ).rows["_tool_github_pull_requests"]  # fmt: skip
    conn = {**connection(gh), "rateLimitPerHour": 18000}  # one request every 0.2 s

    loop = asyncio.get_running_loop()
    started = loop.time()
    result = await run(client, gh, data, "collect_pull_commits", inputs=parents,
                       input_table="_tool_github_pull_requests", connection=conn)  # fmt: skip

    assert result.records == 3
    # Each parent opens its own client; the pacer still spaces their first requests.
    assert loop.time() - started >= 0.39


async def test_in_order_cancels_what_is_in_flight_when_a_page_fails() -> None:
    started: list[int] = []
    cancelled: list[int] = []

    async def fetch(page: int) -> Any:
        started.append(page)
        try:
            await asyncio.sleep(0.01 if page == 3 else 1)
        except asyncio.CancelledError:
            cancelled.append(page)
            raise
        raise RuntimeError(f"page {page} failed")

    seen = []
    with pytest.raises(RuntimeError, match="page 3 failed"):
        async for page, _ in in_order(fetch, [3, 4, 5, 6, 7], 3):
            seen.append(page)
    assert seen == [] and started == [3, 4, 5] and sorted(cancelled) == [4, 5]
