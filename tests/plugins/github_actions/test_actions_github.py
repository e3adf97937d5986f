"""github-actions against FakeGitHub: the contents API, blob shas for drift, 404 after delete."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from core_service.host import PluginHost
from plugin_sdk import InvalidOptions, ResourceNotFound
from plugin_sdk.testing import serve_in_process
from plugins._scm import github
from plugins.github_actions import GitHubActions
from tests.fakes import FakeGitHub

CI = "on: push\njobs:\n  test:\n    runs-on: ubuntu-latest\n    steps:\n      - run: make test\n"
LINT = "on: pull_request\njobs:\n  lint:\n    runs-on: ubuntu-latest\n"
CI_PATH = ".github/workflows/ci.yml"
LINT_PATH = ".github/workflows/lint.yml"


@pytest.fixture
async def gh() -> AsyncIterator[FakeGitHub]:
    async with FakeGitHub(login="octocat") as fake:
        fake.add_repo("octocat/app", files={"README.md": "# app\n"})
        yield fake


def options(gh: FakeGitHub, **extra: Any) -> dict[str, Any]:
    return {
        "scmType": "github",
        "owner": "octocat",
        "name": "app",
        "apiURL": gh.url,
        "workflows": [{"name": "ci.yml", "content": CI}, {"name": "lint.yml", "content": LINT}],
        **extra,
    }


def files_on(gh: FakeGitHub, branch: str = "main") -> dict[str, bytes]:
    head = gh.repos["octocat/app"].git.resolve(branch)
    return dict(head.files) if head else {}


def head_sha(gh: FakeGitHub, branch: str = "main") -> str:
    return gh.repos["octocat/app"].git.branches[branch]


async def test_lifecycle_on_github(gh: FakeGitHub) -> None:
    opts, sec = options(gh), {"token": gh.token}
    async with serve_in_process(GitHubActions()) as client:
        assert await client.read(opts, sec) is None
        created = await client.create(opts, sec)
        assert files_on(gh)[CI_PATH] == CI.encode() and files_on(gh)[LINT_PATH] == LINT.encode()
        assert created["outputs"] == {
            "workflows": [CI_PATH, LINT_PATH],
            "branch": "main",
            "commit": head_sha(gh),
        }
        assert "dirty" not in created and gh.token not in json.dumps(created)
        assert await client.read(opts, sec) == created

        # A commit elsewhere is not drift; the `commit` output stays the workflows' commit.
        gh.add_commit("octocat/app", "docs", files={"README.md": "# app, documented\n"})
        assert await client.read(opts, sec) == created

        # Edited on GitHub: drift; Update puts back only that file, with its current sha.
        gh.add_commit("octocat/app", "tweak", files={CI_PATH: CI + "# tweak\n"})
        drifted = await client.read(opts, sec)
        assert (
            drifted is not None and drifted["workflows"][CI_PATH] != created["workflows"][CI_PATH]
        )
        assert drifted["workflows"][LINT_PATH] == created["workflows"][LINT_PATH]
        puts_before = len([r for r in gh.requests if r.method == "PUT"])
        updated = await client.update(opts, sec)
        assert [r for r in gh.requests if r.method == "PUT"][puts_before:] != []
        assert len([r for r in gh.requests if r.method == "PUT"]) == puts_before + 1
        assert updated["workflows"] == created["workflows"]
        assert updated["outputs"]["commit"] == head_sha(gh)
        assert await client.read(opts, sec) == updated

        # Delete removes exactly the workflow files; the contents API then answers 404.
        assert await client.delete(opts, sec) is True
        assert set(files_on(gh)) == {"README.md"}
        async with github.client(gh.url, gh.token) as api:
            assert await api.get_or_none(f"/repos/octocat/app/contents/{CI_PATH}") is None
        assert await client.read(opts, sec) is None
        assert await client.delete(opts, sec) is False


async def test_commit_output_pages_through_a_long_history(gh: FakeGitHub) -> None:
    opts, sec = options(gh), {"token": gh.token}
    async with serve_in_process(GitHubActions()) as client:
        created = await client.create(opts, sec)  # two PUTs: ci.yml, then lint.yml
        for i in range(150):
            gh.add_commit("octocat/app", f"work {i}", files={"README.md": f"# app {i}\n"})
        gh.requests.clear()
        assert await client.read(opts, sec) == created
    listed = [r for r in gh.requests_to("/repos/octocat/app/commits") if "path" not in r.query]
    assert [r.query.get("page") for r in listed] == [None, "2"]  # followed the Link header


async def test_removed_by_hand_and_missing_repository(gh: FakeGitHub) -> None:
    opts, sec = options(gh), {"token": gh.token}
    async with serve_in_process(GitHubActions()) as client:
        await client.create(opts, sec)
        gh.add_commit("octocat/app", "drop CI", files={CI_PATH: None, LINT_PATH: None})
        assert await client.read(opts, sec) is None

        gone = options(gh, name="nope")
        assert await client.read(gone, sec) is None
        assert await client.delete(gone, sec) is False
        with pytest.raises(ResourceNotFound, match="octocat/nope does not exist; create it first"):
            await client.create(gone, sec)


async def test_other_branch_and_an_empty_repository(gh: FakeGitHub) -> None:
    gh.add_repo("octocat/empty")
    sec = {"token": gh.token}
    async with serve_in_process(GitHubActions()) as client:
        created = await client.create(options(gh, name="empty"), sec)
        head = gh.repos["octocat/empty"].git.resolve("main")
        assert head is not None and set(head.files) == {CI_PATH, LINT_PATH}
        assert created["outputs"]["commit"] == head.sha

        gh.add_commit("octocat/app", "start", files={"x": "y"}, branch="ci-setup")
        await client.create(options(gh, branch="ci-setup"), sec)
        assert CI_PATH in files_on(gh, "ci-setup") and CI_PATH not in files_on(gh)


async def test_token_is_required_and_never_in_the_status(gh: FakeGitHub) -> None:
    opts = options(gh)
    async with serve_in_process(GitHubActions()) as client:
        with pytest.raises(InvalidOptions, match="token: required when scmType is github"):
            await client.create(opts)
        status = await client.create(opts, {"token": gh.token})
    assert gh.token not in json.dumps(status)
    assert all(gh.token not in str(r.headers) for r in gh.requests)  # the fake masks it too


async def test_github_mode_through_a_real_plugin_process(gh: FakeGitHub) -> None:
    opts, sec = options(gh), {"token": gh.token}
    async with PluginHost(reattach="", health_interval=0) as host:
        handle = await host.get("github-actions")
        created = await handle.call(lambda c: c.create(opts, secrets=sec))
        assert await handle.call(lambda c: c.read(opts, secrets=sec)) == created
        assert await handle.call(lambda c: c.delete(opts, secrets=sec)) is True
    assert CI_PATH not in files_on(gh)
