"""github-actions into a local git repository: commits on the branch, drift through Read."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from core_service.host import PluginHost
from plugin_sdk import InvalidOptions
from plugin_sdk._plugin import secret_paths
from plugin_sdk.testing import serve_in_process
from plugins._scm.options import schema_gaps
from plugins.github_actions import GitHubActions

CI = "on: push\njobs:\n  test:\n    runs-on: ubuntu-latest\n    steps:\n      - run: make test\n"
RELEASE = "on:\n  push:\n    tags: ['v*']\njobs:\n  release:\n    runs-on: ubuntu-latest\n"


def git(repo: Path, *args: str) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "me", "GIT_AUTHOR_EMAIL": "me@example.com"}
    env |= {"GIT_COMMITTER_NAME": "me", "GIT_COMMITTER_EMAIL": "me@example.com"}
    return subprocess.run(
        ["git", *args], cwd=repo, env=env, check=True, capture_output=True, text=True
    ).stdout


def make_repo(path: Path, branch: str = "main") -> Path:
    path.mkdir(parents=True)
    git(path, "init", "-q", "-b", branch)
    (path / "app.py").write_text("print('hi')\n")
    git(path, "add", "-A")
    git(path, "commit", "-qm", "initial")
    return path


def options(repo: Path, **extra: Any) -> dict[str, Any]:
    return {
        "scmType": "local",
        "path": str(repo),
        "workflows": [
            {"name": "ci.yml", "content": CI},
            {"name": "release.yaml", "content": RELEASE},
        ],
        **extra,
    }


async def test_lifecycle_and_drift(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "app")
    opts = options(repo)
    ci = repo / ".github" / "workflows" / "ci.yml"
    async with serve_in_process(GitHubActions()) as client:
        assert await client.read(opts) is None
        created = await client.create(opts)
        assert ci.read_text() == CI
        assert git(repo, "status", "--porcelain") == ""
        head = git(repo, "rev-parse", "HEAD").strip()
        assert git(repo, "log", "-1", "--format=%an %s").strip() == (
            "dtm ci: update GitHub Actions workflows (dtm github-actions)"
        )
        assert created["outputs"] == {
            "workflows": [".github/workflows/ci.yml", ".github/workflows/release.yaml"],
            "branch": "main",
            "commit": head,
            "path": str(repo),
        }
        assert set(created["workflows"]) == set(created["outputs"]["workflows"])
        assert await client.read(opts) == created

        # Update with nothing to change makes no empty commit.
        assert await client.update(opts) == created
        assert git(repo, "rev-parse", "HEAD").strip() == head

        # Another commit elsewhere in the repository is not drift of the workflows.
        (repo / "app.py").write_text("print('bye')\n")
        git(repo, "commit", "-qam", "team work")
        assert await client.read(opts) == created

        # A hand edit, uncommitted then committed, is drift; Update restores the file.
        ci.write_text(CI + "# local tweak\n")
        drifted = await client.read(opts)
        assert drifted is not None and drifted["dirty"] == [".github/workflows/ci.yml"]
        git(repo, "commit", "-qam", "tweak ci")
        drifted = await client.read(opts)
        assert drifted is not None and drifted["dirty"] == []
        assert (
            drifted["workflows"][".github/workflows/ci.yml"]
            != created["workflows"][".github/workflows/ci.yml"]
        )
        updated = await client.update(opts)
        assert ci.read_text() == CI and updated["workflows"] == created["workflows"]
        assert updated["outputs"]["commit"] == git(repo, "rev-parse", "HEAD").strip()

        # Delete removes exactly the listed files, in one commit, and nothing else.
        assert await client.delete(opts) is True
        assert not ci.exists() and not (repo / ".github" / "workflows" / "release.yaml").exists()
        assert git(repo, "status", "--porcelain") == ""
        assert "app.py" in git(repo, "ls-files")
        assert await client.read(opts) is None
        assert await client.delete(opts) is False


async def test_read_is_none_after_files_removed_by_hand(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "app")
    opts = options(repo)
    async with serve_in_process(GitHubActions()) as client:
        await client.create(opts)
        git(repo, "rm", "-rq", ".github")
        git(repo, "commit", "-qm", "no CI for us")
        assert await client.read(opts) is None
        await client.create(opts)
        subprocess.run(["rm", "-rf", str(repo)], check=True)
        assert await client.read(opts) is None
        assert await client.delete(opts) is False


async def test_commits_to_a_branch_that_is_not_checked_out(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "app")
    (repo / "wip.txt").write_text("uncommitted work\n")
    opts = options(repo, branch="ci")
    async with serve_in_process(GitHubActions()) as client:
        created = await client.create(opts)
        # The new branch starts empty of our files only; the person's checkout is untouched.
        assert git(repo, "symbolic-ref", "--short", "HEAD").strip() == "main"
        assert not (repo / ".github").exists()
        assert git(repo, "status", "--porcelain") == "?? wip.txt\n"
        assert git(repo, "show", "ci:.github/workflows/ci.yml") == CI
        assert "dirty" in created and created["dirty"] == []
        assert await client.read(opts) == created


async def test_bad_options_are_refused_with_clear_messages(tmp_path: Path) -> None:
    async with serve_in_process(GitHubActions()) as client:
        errors = await client.validate(
            {
                "scmType": "github",
                "owner": "acme",
                "workflows": [
                    {"name": "ci.yml", "content": "on: push\n"},
                    {"name": "ci.yml", "content": "jobs: [unclosed\n"},
                    {"name": "../escape.yml", "content": CI},
                ],
            }
        )
        assert "name: required when scmType is github" in errors
        assert "token: required when scmType is github" in errors
        assert "workflows.0.content: has no `jobs`: GitHub rejects a workflow without it" in errors
        assert "workflows.1.name: 'ci.yml' is listed twice" in errors
        assert any(e.startswith("workflows.1.content: is not valid YAML") for e in errors)
        assert any(e.startswith("workflows.2.name: '../escape.yml' does not match") for e in errors)
        assert any("should be non-empty" in e for e in await client.validate({"workflows": []}))
        assert "path: required when scmType is local" in await client.validate(
            {"workflows": [{"name": "ci.yml", "content": CI}]}
        )
        with pytest.raises(InvalidOptions, match="is not a git repository; create it first"):
            await client.create(options(tmp_path / "nowhere"))


async def test_through_a_real_plugin_process(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "app")
    opts = options(repo)
    async with PluginHost(reattach="", health_interval=0) as host:
        handle = await host.get("github-actions")
        created = await handle.call(lambda c: c.create(opts))
        assert created["outputs"]["workflows"][0] == ".github/workflows/ci.yml"
        assert await handle.call(lambda c: c.read(opts)) == created
        assert await handle.call(lambda c: c.delete(opts)) is True
        assert await handle.call(lambda c: c.read(opts)) is None


def test_schema_documents_every_option() -> None:
    assert GitHubActions.options_schema is not None
    assert schema_gaps(GitHubActions.options_schema) == []
    assert secret_paths(GitHubActions.options_schema) == ["token"]
