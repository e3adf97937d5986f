"""Resuming collect_commits from any checkpoint: what the interrupted run committed plus what
the resumed run sends equals a clean run, with nothing lost and nothing twice."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from plugin_sdk import PluginError
from plugin_sdk.testing import PluginClient, SubtaskStart, serve_in_process
from plugins.gitextractor import GitExtractor
from tests.plugins.gitextractor._support import Builder, git, sample_repo

Batches = list[tuple[list[str], Any]]  # (rows, checkpoint) as the core commits them


async def collect(client: PluginClient, url: str, checkpoint: Any = None) -> Batches:
    options = {"url": url, "batchSize": 3}
    task = await client.prepare_task_data(options)
    start = SubtaskStart("collect_commits", options=options, task_data=task, checkpoint=checkpoint)
    batches: Batches = []
    rows: list[str] = []
    async for event in client.run_subtask(start):
        if event.kind == "batch":
            rows += event.rows
            if event.checkpoint:
                batches.append((rows, json.loads(event.checkpoint)))
                rows = []
    assert not rows, "rows sent without a checkpoint would never be committed"
    return batches


def shas(rows: list[str]) -> list[str]:
    return [json.loads(r)["data"]["sha"] for r in rows]


def grow(b: Builder, commits: int) -> None:
    for i in range(commits):
        b.write("log.txt", "".join(f"line {n}\n" for n in range(i + 1)))
        b.commit(f"grow {i}")


async def test_resume_from_every_checkpoint_equals_a_clean_run(tmp_path: Path) -> None:
    b = sample_repo(tmp_path / "demo")
    grow(b, 9)
    url = str(b.path)
    async with serve_in_process(GitExtractor()) as client:
        clean = await collect(client, url)
        everything = [row for rows, _ in clean for row in rows]
        assert len(everything) == int(git(b.path, "rev-list", "--all", "--count"))
        kinds = {(c["user"] is not None, c["skip"] > 0) for _, c in clean}
        assert kinds >= {(True, False), (True, True), (False, True)}  # every shape resumed
        for stop in range(len(clean)):
            committed = [row for rows, _ in clean[: stop + 1] for row in rows]
            resumed = await collect(client, url, clean[stop][1])
            again = committed + [row for rows, _ in resumed for row in rows]
            assert shas(again) == shas(everything), f"resumed after batch {stop}"
            assert again == everything


async def test_resume_finds_its_place_after_new_commits(tmp_path: Path) -> None:
    b = sample_repo(tmp_path / "demo")
    url = str(b.path)
    async with serve_in_process(GitExtractor()) as client:
        first = await collect(client, url)
        middle = next(i for i, (_, c) in enumerate(first) if c["user"] and i >= 1)
        committed = [row for rows, _ in first[: middle + 1] for row in rows]
        grow(b, 2)  # pushed while the task was down; a refreshed clone would have them too
        resumed = await collect(client, url, first[middle][1])
        clean = await collect(client, url)
    again = committed + [row for rows, _ in resumed for row in rows]
    assert shas(again) == shas([row for rows, _ in clean for row in rows])


async def test_resume_refuses_a_rewritten_history(tmp_path: Path) -> None:
    url = str(sample_repo(tmp_path / "demo").path)
    async with serve_in_process(GitExtractor()) as client:
        with pytest.raises(PluginError, match="no longer in its history"):
            await collect(client, url, {"user": {"sha": "0" * 40}, "skip": 0})
