"""Shared pieces of the github plugin's tests: seeding, running subtasks, chaining layers."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web

from plugin_sdk._client import InputBatch, PluginClient, SubtaskStart
from plugin_sdk.testing import SubtaskResult, run_subtask
from tests.fakes import FakeGitHub

REPO = "octo/lake"
BASE = datetime(2024, 1, 1, tzinfo=UTC)


def old(minutes: int) -> str:
    """A time well before any test runs: what the first collection finds."""
    return (BASE + timedelta(minutes=minutes)).strftime("%Y-%m-%dT%H:%M:%SZ")


def future(minutes: int = 0) -> str:
    """A time after the test runs: what changed after a collection started."""
    when = datetime.now(UTC) + timedelta(hours=1, minutes=minutes)
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


def connection(gh: FakeGitHub, **extra: Any) -> dict[str, Any]:
    return {"id": 1, "endpoint": gh.url, "token": gh.token, **extra}


async def task_data(client: PluginClient, gh: FakeGitHub, **options: Any) -> dict[str, Any]:
    return await client.prepare_task_data({"repo": REPO, **options}, connection(gh))


async def run(
    client: PluginClient, gh: FakeGitHub, data: Mapping[str, Any], subtask: str, **kw: Any
) -> SubtaskResult:
    """Run one subtask as the core would, with this task's data and connection."""
    kw.setdefault("connection", connection(gh))
    return await run_subtask(client, subtask, options=data, task_data=data, **kw)


def raw_rows(result: SubtaskResult, table: str, params: str) -> list[dict[str, Any]]:
    """A collector's output as the core would feed it to an extractor (id and params added)."""
    return [{"id": i, "params": params, **row}
            for i, row in enumerate(result.rows.get(table, []), start=1)]  # fmt: skip


def ids(result: SubtaskResult, table: str) -> list[Any]:
    return [row["data"]["id"] for row in result.rows.get(table, [])]


@dataclass
class Batch:
    rows: list[dict[str, Any]]
    checkpoint: Any


async def batches(
    client: PluginClient,
    gh: FakeGitHub,
    data: Mapping[str, Any],
    subtask: str,
    *,
    checkpoint: Any = None,
    inputs: Sequence[InputBatch] = (),
) -> list[Batch]:
    """Every batch a subtask sends, in order, with its checkpoint: what the core commits."""

    async def feed() -> Any:
        for item in inputs:
            yield item

    start = SubtaskStart(subtask=subtask, options=dict(data), task_data=dict(data),
                         connection=connection(gh), checkpoint=checkpoint)  # fmt: skip
    out = []
    async for event in client.run_subtask(start, feed()):
        if event.kind == "batch":
            rows = [json.loads(r) for r in event.rows]
            out.append(Batch(rows, json.loads(event.checkpoint) if event.checkpoint else None))
    return out


class FaultyGitHub(FakeGitHub):
    """FakeGitHub that arms a fault once it has served page 2 of issues: the fault then
    hits page 3, in the middle of a collection rather than at its first request."""

    def __init__(self) -> None:
        super().__init__()
        self.arm: Any = None

    async def _list_issues(self, request: web.Request) -> web.Response:
        response = await super()._list_issues(request)
        if request.query.get("page") == "2" and self.arm is not None:
            arm, self.arm = self.arm, None
            arm(self)
        return response


def seed_issues(gh: FakeGitHub, count: int, *, offset: int = 0) -> list[dict[str, Any]]:
    return [gh.add_issue(REPO, f"issue {i}", created_at=old(offset + i)) for i in range(count)]
