"""Streaming: a repository of thousands of commits is read while git still writes its log,
in memory far smaller than the log itself."""

from __future__ import annotations

import asyncio
import json
import os
import tracemalloc
from contextlib import aclosing
from pathlib import Path

import pytest

from plugin_sdk import SubtaskContext
from plugin_sdk.testing import SubtaskStart, run_subtask, serve_in_process
from plugins.gitextractor import GitExtractor
from tests.plugins.gitextractor._support import git

COMMITS = 3000
FILLER = "Lorem ipsum dolor sit amet, consectetur adipiscing elit. " * 40  # ~2 KiB a message


@pytest.fixture(scope="module")
def big_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """COMMITS commits made by one `git fast-import` (seconds, not minutes of `git commit`)."""
    path = tmp_path_factory.mktemp("big") / "repo"
    path.mkdir()
    git(path, "init", "-q", "-b", "main")
    parts = []
    for i in range(COMMITS):
        message = f"commit {i}\n\n{FILLER}\n"
        content = "".join(f"{i} {n}\n" for n in range(i % 7 + 1))
        parts.append(
            f"commit refs/heads/main\nmark :{i + 1}\n"
            f"author Ada <ada{i % 13}@example.com> {1_700_000_000 + 60 * i} +0100\n"
            f"committer Ada <ada@example.com> {1_700_000_000 + 60 * i} +0100\n"
            f"data {len(message)}\n{message}\n"
            f"M 100644 inline file{i % 50}.txt\ndata {len(content)}\n{content}\n"
        )
    git(path, "fast-import", "--quiet", input="".join(parts).encode())
    return path


def git_log_children() -> list[int]:
    """Processes this test process started that run `git ... log`."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
            argv = (stat.parent / "cmdline").read_bytes().split(b"\0")
        except (OSError, ValueError, IndexError):
            continue  # a process that ended while we looked
        if ppid == os.getpid() and b"log" in argv:
            found.append(int(stat.parent.name))
    return found


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc")
async def test_commits_stream_while_git_runs_in_small_memory(big_repo: Path) -> None:
    plugin = GitExtractor()
    options = {"url": str(big_repo), "batchSize": 500}
    task = await plugin.prepare_task_data(options, {})
    ctx = SubtaskContext("gitextractor", "collect_commits", options, task, {})
    seen, size, git_running = 0, 0, False
    tracemalloc.start()
    try:
        async for raw in plugin.collect_commits(ctx):
            if seen == 0:
                # git cannot be done: its output is far larger than the pipe and our chunk.
                git_running = bool(git_log_children())
                tracemalloc.reset_peak()  # from here on: what reading the log holds
            seen += 1
            size += len(json.dumps(raw.data))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert seen == COMMITS
    assert git_running, "the first commit arrived only after git had finished"
    assert size > 6_000_000
    assert peak < size / 5, f"held {peak} bytes while reading {size} bytes of commits"
    assert ctx._progress[-1] == (COMMITS, COMMITS)


async def test_records_reach_the_core_in_batches(big_repo: Path) -> None:
    async with serve_in_process(GitExtractor()) as client:
        options = {"url": str(big_repo), "batchSize": 500}
        task = await client.prepare_task_data(options)
        result = await run_subtask(client, "collect_commits", options=options, task_data=task)
    assert result.records == COMMITS == int(git(big_repo, "rev-list", "--all", "--count"))
    assert len(result.checkpoints) >= COMMITS // 500
    assert [p for p in result.progress if p[1] != COMMITS] == []
    assert result.progress[-1] == (COMMITS, COMMITS)


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc")
async def test_a_cancelled_collection_leaves_no_git_behind(big_repo: Path) -> None:
    async with serve_in_process(GitExtractor()) as client:
        options = {"url": str(big_repo), "batchSize": 100}
        task = await client.prepare_task_data(options)
        events = client.run_subtask(SubtaskStart("collect_commits", options, task))
        async with aclosing(events):  # closing the stream cancels the call in the plugin
            async for event in events:
                if event.kind == "batch":
                    assert git_log_children(), "git should still be writing its log"
                    break
        for _ in range(100):
            if not git_log_children():
                break
            await asyncio.sleep(0.05)
        assert git_log_children() == []
