"""gitlab-ci against FakeGitLab: the repository files API, content_sha256 for drift."""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from core_service.host import PluginHost
from plugin_sdk import InvalidOptions, PermissionDenied
from plugin_sdk._plugin import secret_paths
from plugin_sdk.testing import serve_in_process
from plugins._scm.options import schema_gaps
from plugins.gitlab_ci import GitLabCI
from tests.fakes import FakeGitLab

PIPELINE = "stages: [test]\ntest:\n  stage: test\n  script:\n    - make test\n"
CI_FILE = ".gitlab-ci.yml"


@pytest.fixture
async def gl() -> AsyncIterator[FakeGitLab]:
    async with FakeGitLab() as fake:
        fake.add_project("platform/backend/api", files={"README.md": "# api\n"})
        yield fake


def options(gl: FakeGitLab, **extra: Any) -> dict[str, Any]:
    return {"apiURL": gl.url, "project": "platform/backend/api", "content": PIPELINE, **extra}


def project_files(gl: FakeGitLab, branch: str = "main") -> dict[str, bytes]:
    project = next(iter(gl.projects.values()))
    head = project.git.resolve(branch)
    return dict(head.files) if head else {}


def commit_count(gl: FakeGitLab) -> int:
    return len(next(iter(gl.projects.values())).git.commits)


async def test_lifecycle_and_drift(gl: FakeGitLab) -> None:
    opts, sec = options(gl), {"token": gl.token}
    async with serve_in_process(GitLabCI()) as client:
        assert await client.read(opts, sec) is None
        created = await client.create(opts, sec)
        assert project_files(gl)[CI_FILE] == PIPELINE.encode()
        assert created["content_sha256"] == hashlib.sha256(PIPELINE.encode()).hexdigest()
        project = next(iter(gl.projects.values()))
        assert created["outputs"] == {
            "project": "platform/backend/api",
            "branch": "main",
            "path": CI_FILE,
            "commit": project.git.branches["main"],
        }
        assert gl.token not in json.dumps(created)
        assert await client.read(opts, sec) == created
        # The project path travels as one URL segment, as GitLab requires.
        assert gl.requests[-1].path == (
            "/api/v4/projects/platform%2Fbackend%2Fapi/repository/files/.gitlab-ci.yml"
        )

        # Nothing to change: no empty commit. Another file changing is not drift.
        before = commit_count(gl)
        assert await client.update(opts, sec) == created
        assert commit_count(gl) == before
        gl.add_commit("platform/backend/api", "docs", files={"README.md": "# api v2\n"})
        assert await client.read(opts, sec) == created

        # Edited in GitLab by hand: drift; Update writes the content back.
        gl.add_commit("platform/backend/api", "hand edit", files={CI_FILE: "test: {script: [x]}\n"})
        drifted = await client.read(opts, sec)
        assert drifted is not None and drifted["content_sha256"] != created["content_sha256"]
        updated = await client.update(opts, sec)
        assert updated["content_sha256"] == created["content_sha256"]
        assert project_files(gl)[CI_FILE] == PIPELINE.encode()
        assert await client.read(opts, sec) == updated

        # New content through Update; then delete, and Read says it is gone.
        changed = options(gl, content=PIPELINE + "lint:\n  script: [make lint]\n")
        assert (await client.update(changed, sec))["content_sha256"] != created["content_sha256"]
        assert await client.delete(changed, sec) is True
        assert CI_FILE not in project_files(gl) and "README.md" in project_files(gl)
        assert await client.read(changed, sec) is None
        assert await client.delete(changed, sec) is False


async def test_removed_by_hand_other_branch_and_missing_project(gl: FakeGitLab) -> None:
    sec = {"token": gl.token}
    async with serve_in_process(GitLabCI()) as client:
        await client.create(options(gl), sec)
        gl.add_commit("platform/backend/api", "no CI", files={CI_FILE: None})
        assert await client.read(options(gl), sec) is None

        gl.add_commit("platform/backend/api", "branch", files={"x": "y"}, branch="ci")
        created = await client.create(options(gl, branch="ci"), sec)
        assert created["branch"] == "ci" and CI_FILE in project_files(gl, "ci")
        assert CI_FILE not in project_files(gl)

        project_id = next(iter(gl.projects))
        by_id = await client.read(options(gl, project=str(project_id), branch="ci"), sec)
        assert by_id is not None and by_id["content_sha256"] == created["content_sha256"]

        missing = options(gl, project="platform/nothing")
        assert await client.read(missing, sec) is None
        assert await client.delete(missing, sec) is False


async def test_bad_options_and_a_bad_token(gl: FakeGitLab) -> None:
    async with serve_in_process(GitLabCI()) as client:
        errors = await client.validate(
            {"project": "no-namespace", "content": "a: [b", "branch": "bad branch", "x": 1}
        )
        joined = "\n".join(errors)
        assert "'token' is a required property" in joined
        assert "Additional properties are not allowed ('x' was unexpected)" in joined
        assert any(e.startswith("project: 'no-namespace' does not match") for e in errors)
        assert "branch: 'bad branch' is not a valid git branch name" in errors
        assert any(e.startswith("content: is not valid YAML") for e in errors)
        assert await client.validate(options(gl, token="t")) == []
        assert "content: must be a YAML mapping of jobs and keywords" in await client.validate(
            options(gl, token="t", content="- just a list\n")
        )
        with pytest.raises(InvalidOptions, match="'token' is a required property"):
            await client.create(options(gl))
        bad = "glpat-NotTheRightToken99"
        with pytest.raises(PermissionDenied, match="401") as info:
            await client.create(options(gl), {"token": bad})
        assert bad not in str(info.value)
    assert CI_FILE not in project_files(gl)


async def test_through_a_real_plugin_process(gl: FakeGitLab) -> None:
    opts, sec = options(gl), {"token": gl.token}
    async with PluginHost(reattach="", health_interval=0) as host:
        handle = await host.get("gitlab-ci")
        info = await handle.info()
        assert info.options_schema is not None
        assert info.options_schema["properties"]["token"]["x-secret"] is True
        created = await handle.call(lambda c: c.create(opts, secrets=sec))
        assert gl.token not in json.dumps(created)
        assert await handle.call(lambda c: c.read(opts, secrets=sec)) == created
        assert await handle.call(lambda c: c.delete(opts, secrets=sec)) is True
        assert await handle.call(lambda c: c.read(opts, secrets=sec)) is None


def test_schema_documents_every_option() -> None:
    assert GitLabCI.options_schema is not None
    assert schema_gaps(GitLabCI.options_schema) == []
    assert secret_paths(GitLabCI.options_schema) == ["token"]
