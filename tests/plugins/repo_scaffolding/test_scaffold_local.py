"""repo-scaffolding into a local git repository: real git, real files, drift through Read."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from core_service.host import PluginHost
from plugin_sdk import InvalidOptions, PermissionDenied
from plugin_sdk._plugin import secret_paths
from plugin_sdk.testing import serve_in_process
from plugins._scm.options import schema_gaps
from plugins.repo_scaffolding import RepoScaffolding

BINARY = b"\x89PNG\r\n\x1a\n\x00\x00[[ .AppName ]]\xff\xfe"


def git(repo: Path, *args: str) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "me", "GIT_AUTHOR_EMAIL": "me@example.com"}
    env |= {"GIT_COMMITTER_NAME": "me", "GIT_COMMITTER_EMAIL": "me@example.com"}
    return subprocess.run(
        ["git", *args], cwd=repo, env=env, check=True, capture_output=True, text=True
    ).stdout


def make_template(root: Path) -> Path:
    """A template with placeholders in nested names and contents, a binary and a script."""
    tpl = root / "template"
    (tpl / "[[ .AppName ]]" / "core").mkdir(parents=True)
    (tpl / "assets").mkdir()
    (tpl / "README.md").write_text("# [[ .AppName ]]\nby [[ .Repo.Owner ]] for [[.Team]]\n")
    (tpl / "pyproject.toml").write_text('[project]\nname = "[[ .AppName ]]"\n[[tool.mypy]]\n')
    (tpl / "[[ .AppName ]]" / "core" / "[[ .AppName ]]_main.py").write_text(
        'IMAGE = "[[ .Image.Repo ]]:[[ .Image.Tag ]]"\n'
    )
    (tpl / "assets" / "logo.png").write_bytes(BINARY)
    script = tpl / "run.sh"
    script.write_text("#!/bin/sh\necho [[ .AppName ]]\n")
    script.chmod(0o755)
    return tpl


def options(tmp_path: Path, **dest: Any) -> dict[str, Any]:
    return {
        "sourceRepo": {"scmType": "local", "path": str(tmp_path / "template")},
        "destinationRepo": {"scmType": "local", "path": str(tmp_path / "out" / "myapp"), **dest},
        "vars": {"Team": "platform", "Image": {"Repo": "ghcr.io/acme/myapp", "Tag": 3}},
    }


async def test_lifecycle_rendering_and_drift(tmp_path: Path) -> None:
    make_template(tmp_path)
    opts = options(tmp_path, owner="acme")
    repo = tmp_path / "out" / "myapp"
    async with serve_in_process(RepoScaffolding()) as client:
        assert await client.read(opts) is None
        created = await client.create(opts)

        # Names and contents rendered; the binary copied byte for byte; the mode kept.
        assert (repo / "README.md").read_text() == "# myapp\nby acme for platform\n"
        assert (repo / "pyproject.toml").read_text().endswith("[[tool.mypy]]\n")
        main = repo / "myapp" / "core" / "myapp_main.py"
        assert main.read_text() == 'IMAGE = "ghcr.io/acme/myapp:3"\n'
        assert (repo / "assets" / "logo.png").read_bytes() == BINARY
        assert os.access(repo / "run.sh", os.X_OK)
        assert git(repo, "status", "--porcelain") == ""
        assert git(repo, "log", "--format=%an <%ae> %s").strip() == (
            "dtm <dtm@localhost> Scaffold from template (dtm repo-scaffolding)"
        )
        assert git(repo, "symbolic-ref", "--short", "HEAD").strip() == "main"
        assert created["outputs"] == {
            "repoURL": repo.as_uri(),
            "cloneURL": repo.as_uri(),
            "owner": "acme",
            "name": "myapp",
            "branch": "main",
            "path": str(repo),
        }
        assert sorted(created["files"]) == [
            "README.md",
            "assets/logo.png",
            "myapp/core/myapp_main.py",
            "pyproject.toml",
            "run.sh",
        ]
        assert await client.read(opts) == created  # deterministic: unchanged compares equal

        # An uncommitted hand edit is drift; Update puts the file back and commits nothing.
        (repo / "README.md").write_text("mine now\n")
        drifted = await client.read(opts)
        assert drifted is not None and drifted["dirty"] == ["README.md"]
        assert await client.update(opts) == created
        assert (repo / "README.md").read_text().startswith("# myapp")
        assert len(git(repo, "log", "--format=%H").split()) == 1

        # A committed hand edit is drift too; Update commits the template's content back.
        main.write_text("patched\n")
        git(repo, "commit", "-qam", "hand edit")
        drifted = await client.read(opts)
        assert drifted is not None and drifted["dirty"] == []
        assert (
            drifted["files"]["myapp/core/myapp_main.py"]
            != created["files"]["myapp/core/myapp_main.py"]
        )
        assert await client.update(opts) == created
        assert git(repo, "status", "--porcelain") == ""

        # Files the template does not make (the team's code, a CI workflow) are not drift.
        (repo / "src.py").write_text("print()\n")
        git(repo, "add", "src.py")
        git(repo, "commit", "-qm", "team code")
        assert await client.read(opts) == created

        # Removed by hand: Read says it is gone; Create makes it again.
        subprocess.run(["rm", "-rf", str(repo)], check=True)
        assert await client.read(opts) is None
        assert await client.create(opts) == created
        assert await client.delete(opts) is True
        assert not repo.exists()
        assert await client.delete(opts) is False
    # Nothing but the repository was ever written next to it (the staging dir is gone).
    assert list((tmp_path / "out").iterdir()) == []


async def test_template_change_shows_as_drift(tmp_path: Path) -> None:
    tpl = make_template(tmp_path)
    opts = options(tmp_path)
    async with serve_in_process(RepoScaffolding()) as client:
        created = await client.create(opts)
        (tpl / "CHANGELOG.md").write_text("v1 of [[ .AppName ]]\n")
        drifted = await client.read(opts)
        assert drifted is not None and drifted["files"]["CHANGELOG.md"] is None
        updated = await client.update(opts)
        assert updated["files"]["CHANGELOG.md"] is not None
        assert (tmp_path / "out" / "myapp" / "CHANGELOG.md").read_text() == "v1 of myapp\n"
        assert updated != created and await client.read(opts) == updated


async def test_template_from_a_git_ref(tmp_path: Path) -> None:
    tpl = make_template(tmp_path)
    git(tpl, "init", "-q", "-b", "trunk")
    git(tpl, "add", "-A")
    git(tpl, "commit", "-qm", "v1")
    git(tpl, "tag", "v1")
    (tpl / "README.md").write_text("work in progress, not released\n")
    opts = options(tmp_path, branch="develop")
    opts["sourceRepo"]["ref"] = "v1"
    repo = tmp_path / "out" / "myapp"
    async with serve_in_process(RepoScaffolding()) as client:
        created = await client.create(opts)
        assert (repo / "README.md").read_text().startswith("# myapp")  # the tag, not the disk
        assert os.access(repo / "run.sh", os.X_OK)  # the mode comes from the git tree
        assert not (repo / ".git" / "refs" / "heads" / "main").exists()
        assert created["branch"] == "develop" and created["outputs"]["branch"] == "develop"
        opts["sourceRepo"]["ref"] = "no-such-tag"
        with pytest.raises(InvalidOptions, match="no-such-tag"):
            await client.read(opts)


async def test_unknown_placeholder_is_a_clear_error(tmp_path: Path) -> None:
    make_template(tmp_path)
    opts = options(tmp_path)
    del opts["vars"]["Image"]
    async with serve_in_process(RepoScaffolding()) as client:
        with pytest.raises(InvalidOptions, match=r"\[\[ \.Image\.Repo \]\].*Add it under `vars`"):
            await client.create(opts)
    assert not (tmp_path / "out" / "myapp").exists()


async def test_never_clobbers_or_deletes_what_it_did_not_create(tmp_path: Path) -> None:
    make_template(tmp_path)
    opts = options(tmp_path)
    repo = tmp_path / "out" / "myapp"
    repo.mkdir(parents=True)
    (repo / "notes.txt").write_text("precious")
    async with serve_in_process(RepoScaffolding()) as client:
        with pytest.raises(Exception, match="already exists and is not an empty directory"):
            await client.create(opts)
        with pytest.raises(PermissionDenied, match="not a git repository"):
            await client.delete(opts)
        git(repo, "init", "-q")
        with pytest.raises(PermissionDenied, match="not created by repo-scaffolding"):
            await client.delete(opts)
    assert (repo / "notes.txt").read_text() == "precious"


async def test_bad_options_are_refused_with_clear_messages(tmp_path: Path) -> None:
    tpl = make_template(tmp_path)
    async with serve_in_process(RepoScaffolding()) as client:
        errors = await client.validate(
            {
                "sourceRepo": {"scmType": "github", "name": "tpl"},
                "destinationRepo": {"scmType": "github", "owner": "acme/x", "branch": "a..b"},
                "vars": {"app-name": "x"},
                "colour": "blue",
            }
        )
        joined = "\n".join(errors)
        assert "Additional properties are not allowed ('colour' was unexpected)" in joined
        assert "sourceRepo.owner: required when sourceRepo.scmType is github" in errors
        assert "destinationRepo.name: required when destinationRepo.scmType is github" in errors
        assert "destinationRepo.token: required when destinationRepo.scmType is github" in errors
        assert any(
            e.startswith("destinationRepo.owner: 'acme/x' must be a bare name") for e in errors
        )
        assert "destinationRepo.branch: 'a..b' is not a valid git branch name" in errors
        assert any(e.startswith("vars.app-name: a template cannot refer to") for e in errors)

        errors = await client.validate(
            {"sourceRepo": {"path": str(tpl)}, "destinationRepo": {"path": str(tpl / "out")}}
        )
        assert len(errors) == 1 and "overlaps the template" in errors[0]
        errors = await client.validate({"sourceRepo": {}, "destinationRepo": {"scmType": "svn"}})
        assert "sourceRepo.path: required when sourceRepo.scmType is local" in errors
        assert any(e.startswith("destinationRepo.scmType: 'svn' is not one of") for e in errors)
        with pytest.raises(InvalidOptions, match="required property"):
            await client.create({"sourceRepo": {"path": str(tpl)}})


def test_schema_documents_every_option() -> None:
    # The core writes a commented example config from the schema.
    assert RepoScaffolding.options_schema is not None
    assert schema_gaps(RepoScaffolding.options_schema) == []
    assert secret_paths(RepoScaffolding.options_schema) == [
        "sourceRepo.token",
        "destinationRepo.token",
    ]


async def test_through_a_real_plugin_process(tmp_path: Path) -> None:
    make_template(tmp_path)
    opts = options(tmp_path)
    async with PluginHost(reattach="", health_interval=0) as host:
        handle = await host.get("repo-scaffolding")
        info = await handle.info()
        assert info.name == "repo-scaffolding" and "resource" in info.capabilities
        created = await handle.call(lambda c: c.create(opts))
        assert created["outputs"]["path"] == str(tmp_path / "out" / "myapp")
        assert await handle.call(lambda c: c.read(opts)) == created
        assert await handle.call(lambda c: c.delete(opts)) is True
        assert await handle.call(lambda c: c.read(opts)) is None
