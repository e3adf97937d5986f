"""Helpers of the gitextractor tests: repositories built with real git, and a whole task
run in process (collect, extract, convert) the way the core would run it."""

from __future__ import annotations

import itertools
import os
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from plugin_sdk.testing import PluginClient, run_subtask
from plugins.gitextractor import GitExtractor

PLUGIN = "gitextractor"


def git(cwd: Path, *args: str, input: bytes | None = None, **env: str) -> str:
    """Run git in `cwd`; fail the test with git's stderr when it fails."""
    done = subprocess.run(
        ["git", *args], cwd=cwd, input=input, capture_output=True, env={**os.environ, **env}
    )
    assert done.returncode == 0, f"git {' '.join(args)}: {done.stderr.decode()}"
    return done.stdout.decode()


class Builder:
    """A working copy whose commits get increasing dates, two hours east of UTC."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.clock = itertools.count(1)
        path.mkdir(parents=True)
        git(path, "init", "-q", "-b", "main")

    def write(self, name: str, content: str | bytes) -> None:
        file = self.path / name
        file.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, str):
            file.write_text(content)
        else:
            file.write_bytes(content)

    def commit(
        self, message: str, *args: str, author: str = "Ada Lovelace <ada@example.com>"
    ) -> str:
        hour = next(self.clock)
        date = f"2024-03-{1 + hour // 24:02d}T{hour % 24:02d}:00:00+02:00"
        name, email = author[:-1].split(" <")
        git(self.path, "add", "-A")
        git(self.path, "commit", "-q", "--allow-empty", "-m", message, *args,
            GIT_AUTHOR_DATE=date, GIT_COMMITTER_DATE=date, GIT_AUTHOR_NAME=name,
            GIT_AUTHOR_EMAIL=email)  # fmt: skip
        return self.head()

    def head(self) -> str:
        return git(self.path, "rev-parse", "HEAD").strip()

    def merge(self, branch: str, message: str) -> str:
        hour = next(self.clock)
        date = f"2024-03-{1 + hour // 24:02d}T{hour % 24:02d}:00:00+02:00"
        git(self.path, "merge", "-q", "--no-ff", branch, "-m", message,
            GIT_AUTHOR_DATE=date, GIT_COMMITTER_DATE=date)  # fmt: skip
        return self.head()


BINARY = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01" + bytes(range(256))


def sample_repo(path: Path) -> Builder:
    """Linear history, a branch merged with a merge commit, a rename with an edit, a binary
    file, tags, names with spaces and non-ASCII letters, multi-line messages."""
    b = Builder(path)
    b.write("README.md", "# demo\n\nline one\nline two\n")
    b.write("src/app.py", "def main():\n    return 1\n")
    b.commit("Initial commit\n\nA body\nover two lines.")
    b.write("docs/naïve café.md", "unicode\nname\n")
    b.write("with space.txt", "spaced\n")
    b.commit("Names with spaces and ünïcödé")
    git(path, "checkout", "-q", "-b", "feature")
    b.write("src/app.py", "def main():\n    print('hi')\n    return 2\n")
    b.write("logo.png", BINARY)
    b.commit("feature: print, logo", author="Grace Hopper <grace@example.com>")
    b.write("README.md", "# demo\n\nline one\nline two\nfeature notes\n")
    b.commit("feature: notes", author="Grace Hopper <grace@example.com>")
    git(path, "checkout", "-q", "main")
    b.write("CHANGES.txt", "0.1\n")
    b.commit("changes")
    git(path, "branch", "stale")
    b.merge("feature", "Merge branch 'feature'\n\nBrings print and the logo.")
    git(path, "mv", "src/app.py", "src/main.py")
    b.write("src/main.py", "def main():\n    print('hi')\n    return 2\n\n# renamed\n")
    b.commit("Rename app.py to main.py")
    git(path, "tag", "-a", "v1.0", "-m", "release 1.0")
    git(path, "tag", "light", "HEAD~2")
    b.write("bin/data.bin", b"\x00\x01\x02binary\x00")
    b.write("with space.txt", "spaced\nmore\n")
    b.commit("binary data and an edit")
    return b


async def run_task(
    client: PluginClient, options: Mapping[str, Any], *, batch_size: int = 100
) -> dict[str, list[dict[str, Any]]]:
    """PrepareTaskData, then every subtask in order, feeding each one what the earlier
    ones produced (raw rows get ids, as the core gives them): rows by table."""
    options = {**options, "batchSize": batch_size}
    task = await client.prepare_task_data(options)
    tables: dict[str, list[dict[str, Any]]] = {}
    ids = itertools.count(1)
    for sub in GitExtractor.subtasks():
        meta = sub.resolved(PLUGIN)
        inputs = tables.get(meta["input_table"], [])
        result = await run_subtask(client, sub.name, options=options, task_data=task,
                                   inputs=inputs, input_table=meta["input_table"])  # fmt: skip
        for table, rows in result.rows.items():
            if table.startswith("_raw_"):
                rows = [{"id": next(ids), "params": task["params"], **r} for r in rows]
            tables.setdefault(table, []).extend(rows)
    return tables


def by(rows: list[dict[str, Any]], key: str) -> dict[Any, dict[str, Any]]:
    """Rows by a column, failing on a repeated value."""
    out = {r[key]: r for r in rows}
    assert len(out) == len(rows), f"{key} repeats"
    return out


def numstat(path: Path, sha: str, parents: list[str]) -> tuple[int, int]:
    """git's own line counts of a commit: against the first parent for a merge."""
    if len(parents) > 1:
        out = git(path, "diff", "--numstat", "-M", f"{sha}^1", sha)
    else:
        out = git(path, "show", "--numstat", "-M", "--format=", sha)
    added = deleted = 0
    for line in filter(None, out.splitlines()):
        a, d, _ = line.split("\t", 2)
        if a != "-":
            added, deleted = added + int(a), deleted + int(d)
    return added, deleted
