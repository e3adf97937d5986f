"""repo-scaffolding against FakeGitHub: a GitHub destination, and a template read from GitHub."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from core_service.host import PluginHost
from plugin_sdk import AlreadyExists, PermissionDenied, PluginError
from plugin_sdk.testing import serve_in_process
from plugins._scm import github
from plugins.repo_scaffolding import RepoScaffolding
from tests.fakes import FakeGitHub

BINARY = b"\x00\x01\x02[[ .AppName ]]\xff"


@pytest.fixture
async def gh() -> AsyncIterator[FakeGitHub]:
    async with FakeGitHub(login="octocat", orgs={"acme"}) as fake:
        yield fake


def make_template(root: Path) -> Path:
    tpl = root / "template"
    (tpl / "src" / "[[ .AppName ]]").mkdir(parents=True)
    (tpl / "README.md").write_text("# [[ .AppName ]] by [[ .Repo.Owner ]]\n")
    (tpl / "src" / "[[ .AppName ]]" / "__init__.py").write_text('NAME = "[[ .AppName ]]"\n')
    (tpl / "logo.bin").write_bytes(BINARY)
    return tpl


def options(gh: FakeGitHub, tmp_path: Path, owner: str = "octocat") -> dict[str, Any]:
    """Options as the core sends them: the token travels apart, as a secret."""
    return {
        "sourceRepo": {"path": str(tmp_path / "template")},
        "destinationRepo": {"scmType": "github", "owner": owner, "name": "myapp", "apiURL": gh.url},
    }


def secrets(gh: FakeGitHub) -> dict[str, str]:
    return {"destinationRepo.token": gh.token}


def files_on(gh: FakeGitHub, full_name: str, branch: str = "main") -> dict[str, bytes]:
    head = gh.repos[full_name.lower()].git.resolve(branch)
    return dict(head.files) if head else {}


async def test_lifecycle_on_github(gh: FakeGitHub, tmp_path: Path) -> None:
    make_template(tmp_path)
    opts, sec = options(gh, tmp_path), secrets(gh)
    async with serve_in_process(RepoScaffolding()) as client:
        assert await client.read(opts, sec) is None
        created = await client.create(opts, sec)

        assert gh.requests_to("/user/repos", "POST"), "the token's own user owns the repo"
        assert files_on(gh, "octocat/myapp") == {
            "README.md": b"# myapp by octocat\n",
            "logo.bin": BINARY,
            "src/myapp/__init__.py": b'NAME = "myapp"\n',
        }
        assert created["outputs"] == {
            "repoURL": f"{gh.root}/octocat/myapp",
            "cloneURL": f"{gh.root}/octocat/myapp.git",
            "owner": "octocat",
            "name": "myapp",
            "branch": "main",
        }
        assert created["private"] is False
        assert gh.token not in json.dumps(created)
        assert await client.read(opts, sec) == created

        # Changed on GitHub by hand: drift; Update commits the template's content back.
        gh.add_commit("octocat/myapp", "hand edit", files={"README.md": "hacked\n"})
        drifted = await client.read(opts, sec)
        assert (
            drifted is not None and drifted["files"]["README.md"] != created["files"]["README.md"]
        )
        gh.add_commit("octocat/myapp", "unrelated", files={"NOTES.md": "team notes\n"})
        updated = await client.update(opts, sec)
        assert updated == created
        assert files_on(gh, "octocat/myapp")["README.md"] == b"# myapp by octocat\n"
        puts = [r for r in gh.requests if r.method == "PUT"]
        assert len(puts) == 4, "Update writes only the file that differs"

        # Visibility is part of the resource: a flip by hand is drift, and Update flips it back.
        gh.repos["octocat/myapp"].data["private"] = True
        drifted = await client.read(opts, sec)
        assert drifted is not None and drifted["private"] is True
        assert (await client.update(opts, sec))["private"] is False

        assert await client.delete(opts, sec) is True
        async with github.client(gh.url, gh.token) as api:
            assert await api.get_or_none("/repos/octocat/myapp") is None  # 404 after delete
        assert await client.read(opts, sec) is None
        assert await client.delete(opts, sec) is False


async def test_repository_of_an_organization(gh: FakeGitHub, tmp_path: Path) -> None:
    make_template(tmp_path)
    opts = options(gh, tmp_path, owner="acme")
    opts["destinationRepo"] |= {"private": True, "branch": "trunk"}
    async with serve_in_process(RepoScaffolding()) as client:
        created = await client.create(opts, secrets(gh))
    assert gh.requests_to("/orgs/acme/repos", "POST") and not gh.requests_to("/user/repos")
    assert created["private"] is True and created["outputs"]["owner"] == "acme"
    assert files_on(gh, "acme/myapp", "trunk")["README.md"] == b"# myapp by acme\n"
    assert gh.repos["acme/myapp"].data["default_branch"] == "trunk"


async def test_template_and_destination_on_the_same_github_share_the_token(
    gh: FakeGitHub, tmp_path: Path
) -> None:
    gh.add_repo("acme/template", files={"README.md": "# [[ .Repo.Name ]]\n"})
    opts = options(gh, tmp_path)
    opts["sourceRepo"] = {"scmType": "github", "owner": "acme", "name": "template"}
    opts["sourceRepo"]["apiURL"] = gh.url + "/"  # the same API, written differently
    async with serve_in_process(RepoScaffolding()) as client:
        await client.create(opts, secrets(gh))
    assert files_on(gh, "octocat/myapp") == {"README.md": b"# myapp\n"}


async def test_refuses_an_existing_repository(gh: FakeGitHub, tmp_path: Path) -> None:
    make_template(tmp_path)
    gh.add_repo("octocat/myapp", files={"README.md": "someone else's\n"})
    async with serve_in_process(RepoScaffolding()) as client:
        with pytest.raises(AlreadyExists, match="octocat/myapp already exists"):
            await client.create(options(gh, tmp_path), secrets(gh))
    assert files_on(gh, "octocat/myapp") == {"README.md": b"someone else's\n"}


async def test_a_failed_create_leaves_no_repository(
    gh: FakeGitHub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_template(tmp_path)
    real_put, calls = github.put_file, []

    async def flaky_put(*args: Any, **kwargs: Any) -> str:
        calls.append(args[3])
        if len(calls) == 2:
            raise PermissionDenied("the token may not write contents")
        return await real_put(*args, **kwargs)

    monkeypatch.setattr(github, "put_file", flaky_put)
    async with serve_in_process(RepoScaffolding()) as client:
        with pytest.raises(PermissionDenied, match="may not write"):
            await client.create(options(gh, tmp_path), secrets(gh))
    assert "octocat/myapp" not in gh.repos  # rolled back: a retry starts clean


async def test_bad_token_is_refused_and_never_echoed(gh: FakeGitHub, tmp_path: Path) -> None:
    make_template(tmp_path)
    bad = "ghp_WrongTokenWrongToken0000"
    async with serve_in_process(RepoScaffolding()) as client:
        with pytest.raises(PermissionDenied, match="401") as info:
            await client.create(options(gh, tmp_path), {"destinationRepo.token": bad})
    assert bad not in str(info.value)


async def test_template_read_from_github(gh: FakeGitHub, tmp_path: Path) -> None:
    gh.add_repo(
        "acme/python-template",
        files={
            "README.md": "# [[ .AppName ]]\n",
            "[[ .AppName ]]/app/[[ .AppName ]].py": "print('[[ .Greeting ]]')\n",
            "img/logo.bin": BINARY,
        },
    )
    gh.add_commit("acme/python-template", "wip", files={"README.md": "unreleased\n"}, branch="dev")
    opts: dict[str, Any] = {
        "sourceRepo": {
            "scmType": "github",
            "owner": "acme",
            "name": "python-template",
            "apiURL": gh.url,
        },
        "destinationRepo": {"path": str(tmp_path / "svc")},
        "vars": {"Greeting": "hello"},
    }
    repo = tmp_path / "svc"
    async with serve_in_process(RepoScaffolding()) as client:
        created = await client.create(opts, {"sourceRepo.token": gh.token})
        assert (repo / "README.md").read_text() == "# svc\n"  # the default branch
        assert (repo / "svc" / "app" / "svc.py").read_text() == "print('hello')\n"
        assert (repo / "img" / "logo.bin").read_bytes() == BINARY
        assert gh.token not in json.dumps(created)
        assert await client.read(opts, {"sourceRepo.token": gh.token}) == created

        opts["sourceRepo"]["ref"] = "dev"
        await client.update(opts, {"sourceRepo.token": gh.token})
        assert (repo / "README.md").read_text() == "unreleased\n"

        opts["sourceRepo"]["name"] = "missing"
        with pytest.raises(PluginError, match="missing"):
            await client.read(opts, {"sourceRepo.token": gh.token})


async def test_github_destination_through_a_real_plugin_process(
    gh: FakeGitHub, tmp_path: Path
) -> None:
    make_template(tmp_path)
    opts, sec = options(gh, tmp_path), secrets(gh)
    async with PluginHost(reattach="", health_interval=0) as host:
        handle = await host.get("repo-scaffolding")
        created = await handle.call(lambda c: c.create(opts, secrets=sec))
        assert created["outputs"]["repoURL"] == f"{gh.root}/octocat/myapp"
        assert gh.token not in json.dumps(created)
        assert await handle.call(lambda c: c.read(opts, secrets=sec)) == created
        assert await handle.call(lambda c: c.delete(opts, secrets=sec)) is True
    assert "octocat/myapp" not in gh.repos
