"""gitextractor on a repository built with real git, checked against what git itself says."""

from __future__ import annotations

import datetime
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from plugin_sdk import InvalidOptions
from plugin_sdk.domain import BY_NAME
from plugin_sdk.testing import run_subtask, serve_in_process
from plugins._scm.options import schema_gaps
from plugins.gitextractor import GitExtractor
from tests.plugins.gitextractor._support import BINARY, by, git, numstat, run_task, sample_repo

DOMAIN = ("repos", "commits", "repo_commits", "commit_files", "refs", "accounts")


@pytest.fixture
async def extracted(tmp_path: Path) -> tuple[Path, dict[str, list[dict[str, Any]]]]:
    repo = sample_repo(tmp_path / "demo").path
    async with serve_in_process(GitExtractor()) as client:
        return repo, await run_task(client, {"url": str(repo)}, batch_size=3)


async def test_commits_match_git(extracted: tuple[Path, dict[str, list[dict[str, Any]]]]) -> None:
    repo, tables = extracted
    raw = [r["data"] for r in tables["_raw_gitextractor_commits"]]
    assert len(raw) == int(git(repo, "rev-list", "--all", "--count"))
    assert [c["sha"] for c in raw] == git(repo, "rev-list", "--all", "--date-order",
                                          "--reverse").split()  # fmt: skip
    commits = by(tables["commits"], "sha")
    for c in raw:
        assert (c["additions"], c["deletions"]) == numstat(repo, c["sha"], c["parents"])
        domain = commits[c["sha"]]
        assert (domain["additions"], domain["deletions"]) == (c["additions"], c["deletions"])
        assert domain["message"] == git(repo, "log", "-1", "--format=%B", c["sha"]).rstrip("\n")
        assert c["parents"] == git(repo, "log", "-1", "--format=%P", c["sha"]).split()
    first = commits[raw[0]["sha"]]
    assert first["message"] == "Initial commit\n\nA body\nover two lines."
    # Dates are normalised to UTC; git had them at +02:00.
    authored = datetime.datetime.fromisoformat(first["authored_date"])
    assert authored.utcoffset() == datetime.timedelta(0)
    assert authored == datetime.datetime.fromisoformat(
        git(repo, "log", "-1", "--format=%aI", first["sha"]).strip()
    )
    merges = [c for c in raw if len(c["parents"]) == 2]
    assert len(merges) == 1 and merges[0]["additions"] > 0  # counted against its 1st parent


async def test_files_renames_binaries_and_names(
    extracted: tuple[Path, dict[str, list[dict[str, Any]]]],
) -> None:
    repo, tables = extracted
    files = tables["_tool_gitextractor_commit_files"]
    rename = git(repo, "log", "-1", "--format=%H", "--grep=Rename").strip()
    renamed = [f for f in files if f["commit_sha"] == rename]
    assert len(renamed) == 1  # one row, under the new path
    assert renamed[0]["file_path"] == "src/main.py"
    assert renamed[0]["old_path"] == "src/app.py"
    assert (renamed[0]["additions"], renamed[0]["deletions"]) == (2, 0)
    logo = next(f for f in files if f["file_path"] == "logo.png")
    assert logo["binary"] is True and (logo["additions"], logo["deletions"]) == (0, 0)
    assert (repo / "logo.png").read_bytes() == BINARY
    paths = {f["file_path"] for f in files}
    assert {"docs/naïve café.md", "with space.txt", "bin/data.bin"} <= paths
    # Every file git lists for a commit is there, once.
    for sha in {f["commit_sha"] for f in files}:
        ours = sorted(f["file_path"] for f in files if f["commit_sha"] == sha)
        parents = git(repo, "log", "-1", "--format=%P", sha).split()
        base = [f"{sha}^1"] if parents else ["--root"]
        listed = git(repo, "diff-tree", "-r", "-z", "--name-only", "-M", "--no-commit-id",
                     *base, sha).split("\0")  # fmt: skip
        assert ours == sorted(filter(None, listed))
    domain = by(tables["commit_files"], "id")
    row = domain[hashlib.sha256(f"{rename}:src/main.py".encode()).hexdigest()]
    assert row == {**row, "commit_sha": rename, "file_path": "src/main.py", "additions": 2}


async def test_refs_match_for_each_ref(
    extracted: tuple[Path, dict[str, list[dict[str, Any]]]],
) -> None:
    repo, tables = extracted
    listed = git(repo, "for-each-ref", "--format=%(refname) %(objectname)^{commit}")
    expected = {
        name: git(repo, "rev-parse", target).strip()
        for name, target in (line.split(" ") for line in listed.splitlines())
    }
    repo_id = f"gitextractor:GitRepo:0:{repo}"
    refs = by(tables["refs"], "id")
    assert {r["id"]: r["commit_sha"] for r in refs.values()} == {
        f"{repo_id}:{name}": sha for name, sha in expected.items()
    }
    assert {(r["name"], r["ref_type"], r["is_default"]) for r in refs.values()} == {
        ("main", "BRANCH", True), ("feature", "BRANCH", False), ("stale", "BRANCH", False),
        ("v1.0", "TAG", False), ("light", "TAG", False),
    }  # fmt: skip
    tag = by(tables["_tool_gitextractor_refs"], "ref_name")["refs/tags/v1.0"]
    assert tag["object_sha"] != tag["commit_sha"]  # an annotated tag: its own object
    assert refs[f"{repo_id}:refs/tags/v1.0"]["created_date"] is not None


async def test_domain_rows_have_devlake_columns(
    extracted: tuple[Path, dict[str, list[dict[str, Any]]]],
) -> None:
    repo, tables = extracted
    for name in DOMAIN:
        spec = BY_NAME[name]
        assert tables[name], f"no {name} rows"
        for row in tables[name]:
            assert set(row) <= set(spec.all_columns), (name, set(row) - set(spec.all_columns))
            assert all(row[k] is not None for k in spec.primary_key)
            assert row["_raw_data_table"].startswith("_raw_gitextractor_")
            assert json.loads(row["_raw_data_params"]) == {
                "RepoId": f"gitextractor:GitRepo:0:{repo}"
            }
    repo_id = f"gitextractor:GitRepo:0:{repo}"
    assert tables["repos"] == [{**tables["repos"][0], "id": repo_id, "name": "demo",
                                "url": str(repo)}]  # fmt: skip
    commits = tables["commits"]
    assert {(r["repo_id"], r["commit_sha"]) for r in tables["repo_commits"]} == {
        (repo_id, c["sha"]) for c in commits
    }
    accounts = {a["id"]: a for a in tables["accounts"]}
    assert {a["email"] for a in accounts.values()} == {
        "ada@example.com",
        "grace@example.com",
        "ci@example.com",
    }
    for c in commits:
        assert c["dev_eq"] == 0
        assert accounts[c["author_id"]]["email"] == c["author_email"]
        assert accounts[c["committer_id"]]["email"] == c["committer_email"]
    assert accounts["gitextractor:GitAccount:0:grace@example.com"]["full_name"] == "Grace Hopper"


async def test_progress_and_checkpoints(tmp_path: Path) -> None:
    repo = sample_repo(tmp_path / "demo").path
    total = int(git(repo, "rev-list", "--all", "--count"))
    async with serve_in_process(GitExtractor()) as client:
        options = {"url": str(repo), "batchSize": 2}
        task = await client.prepare_task_data(options)
        result = await run_subtask(client, "collect_commits", options=options, task_data=task)
    assert result.records == total
    assert result.progress[-1] == (total, total)
    # Batches after a checkpoint repeat it (with a skip count): its distinct values, in order.
    marks = list(dict.fromkeys(c["user"]["sha"] for c in result.checkpoints if c["user"]))
    shas = [r["data"]["sha"] for r in result.rows["_raw_gitextractor_commits"]]
    assert marks == shas[1::2][: len(marks)] and len(marks) == total // 2


async def test_skip_commit_files_keeps_line_counts(tmp_path: Path) -> None:
    repo = sample_repo(tmp_path / "demo").path
    async with serve_in_process(GitExtractor()) as client:
        tables = await run_task(client, {"url": str(repo), "skipCommitFiles": True})
    assert "commit_files" not in tables
    assert sum(c["additions"] for c in tables["commits"]) > 0


async def test_empty_repository(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    git(tmp_path / "empty", "init", "-q")
    async with serve_in_process(GitExtractor()) as client:
        tables = await run_task(client, {"url": str(tmp_path / "empty"), "name": "nothing"})
    assert "commits" not in tables and "refs" not in tables
    assert tables["repos"][0]["name"] == "nothing"


async def test_history_is_branches_tags_and_head_not_notes(tmp_path: Path) -> None:
    b = sample_repo(tmp_path / "demo")
    git(b.path, "notes", "add", "-m", "a note", "HEAD")  # refs/notes holds a commit
    git(b.path, "checkout", "-q", "--detach", "HEAD")
    b.write("detached.txt", "only HEAD reaches me\n")
    detached = b.commit("on a detached HEAD")
    async with serve_in_process(GitExtractor()) as client:
        options = {"url": str(b.path)}
        task = await client.prepare_task_data(options)
        result = await run_subtask(client, "collect_commits", options=options, task_data=task)
    shas = [r["data"]["sha"] for r in result.rows["_raw_gitextractor_commits"]]
    notes = git(b.path, "rev-list", "refs/notes/commits").split()
    assert detached in shas and not set(notes) & set(shas)
    assert len(shas) == int(git(b.path, "rev-list", "--all", "--count")) - len(notes)


async def test_local_path_must_be_a_repository_itself(tmp_path: Path) -> None:
    repo = sample_repo(tmp_path / "demo").path
    async with serve_in_process(GitExtractor()) as client:
        with pytest.raises(InvalidOptions, match="is not a git repository"):
            await client.prepare_task_data({"url": str(repo / "src")})  # inside one: refused
        with pytest.raises(InvalidOptions, match="is not a directory"):
            await client.prepare_task_data({"url": str(tmp_path / "nowhere")})
        with pytest.raises(InvalidOptions, match="url"):
            await client.prepare_task_data({"url": "", "colour": 1})
        task = await client.prepare_task_data({"url": str(repo / ".git")})
        assert task["name"] == "demo" and task["path"] == str(repo / ".git")
        assert task["params"] == json.dumps({"RepoId": f"gitextractor:GitRepo:0:{repo}/.git"},
                                            separators=(",", ":"))  # fmt: skip


async def test_metadata_lists_subtasks_in_dependency_order() -> None:
    subs = [s.resolved("gitextractor") for s in GitExtractor.subtasks()]
    seen: set[str] = set()
    for sub in subs:
        assert set(sub["dependencies"]) <= seen, sub["name"]
        seen.add(sub["name"])
    assert [s["name"] for s in subs if s["kind"] == "collector"] == [
        "collect_repos", "collect_commits", "collect_refs",
    ]  # fmt: skip
    assert {t.name for t in GitExtractor.tool_tables()} == {
        "_tool_gitextractor_repos", "_tool_gitextractor_commits",
        "_tool_gitextractor_commit_files", "_tool_gitextractor_refs",
    }  # fmt: skip
    assert GitExtractor.options_schema is not None
    assert schema_gaps(GitExtractor.options_schema) == []
