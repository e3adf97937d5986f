"""The gitlab-ci plugin: a project's `.gitlab-ci.yml`, kept through GitLab's REST API v4.

It uses the repository files API (`/projects/:id/repository/files/.gitlab-ci.yml`). Read
reports the file's `content_sha256` on the branch, so an edit in GitLab's web editor or a
pushed commit is drift, and `last_commit_id` (the last commit that changed the file, which
other commits on the branch leave alone); it returns None when the file or the project is
gone. A write happens only when the content differs, so Update without a change makes no
empty commit.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

import yaml

from plugin_sdk import ApiClient, Plugin, PluginInternalError
from plugins._scm.git import check_branch_name
from plugins._scm.options import with_defaults

GITLAB_API = "https://gitlab.com/api/v4"
CI_FILE = ".gitlab-ci.yml"

OPTIONS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["project", "content", "token"],
    "properties": {
        "apiURL": {
            "type": "string",
            "format": "uri",
            "default": GITLAB_API,
            "description": "the GitLab REST API v4 base URL (self-managed: https://HOST/api/v4)",
        },
        "project": {
            "type": "string",
            "pattern": r"^(\d+|[^/\s]+(/[^/\s]+)+)$",
            "examples": ["my-group/myapp"],
            "description": "the project: its full path (group/name, subgroups allowed) or "
            "its numeric id",
        },
        "branch": {
            "type": "string",
            "minLength": 1,
            "default": "main",
            "description": "the branch to commit .gitlab-ci.yml to",
        },
        "content": {
            "type": "string",
            "minLength": 1,
            "examples": ["test:\n  script: [make test]\n"],
            "description": "the pipeline definition (YAML), written as it is",
        },
        "token": {
            "type": "string",
            "minLength": 1,
            "x-secret": True,
            "examples": ["glpat-..."],
            "description": "a GitLab access token with the api scope (a secret: kept out of "
            "state and logs)",
        },
        "commitMessage": {
            "type": "string",
            "minLength": 1,
            "default": "ci: update .gitlab-ci.yml (dtm gitlab-ci)",
            "description": "the message of the commits that write or delete the file",
        },
    },
}


class GitLabCI(Plugin):
    name = "gitlab-ci"
    version = "0.1.0"
    description = "Keeps a GitLab project's .gitlab-ci.yml through the GitLab REST API."
    options_schema = OPTIONS_SCHEMA

    async def validate(self, options: Mapping[str, Any]) -> list[str]:
        errors = await super().validate(options)
        branch = options.get("branch")
        if isinstance(branch, str) and branch and (why := check_branch_name(branch)):
            errors.append(f"branch: {why}")
        content = options.get("content")
        if isinstance(content, str) and content:
            try:
                doc = yaml.safe_load(content)
            except yaml.YAMLError as exc:
                errors.append(f"content: is not valid YAML: {' '.join(str(exc).split())}")
            else:
                if not isinstance(doc, Mapping):
                    errors.append("content: must be a YAML mapping of jobs and keywords")
        return errors

    async def create(self, options: Mapping[str, Any]) -> dict[str, Any]:
        return await self._write(options)

    async def update(self, options: Mapping[str, Any]) -> dict[str, Any]:
        return await self._write(options)

    async def read(self, options: Mapping[str, Any]) -> dict[str, Any] | None:
        o = with_defaults(OPTIONS_SCHEMA, options)
        async with _client(o) as api:
            found = await _get(api, o)
        return None if found is None else _status(o, found)

    async def delete(self, options: Mapping[str, Any]) -> bool:
        o = with_defaults(OPTIONS_SCHEMA, options)
        async with _client(o) as api:
            if await _get(api, o) is None:
                return False
            await api.request(
                "DELETE",
                _file_path(o),
                json={"branch": o["branch"], "commit_message": o["commitMessage"]},
            )
        return True

    async def _write(self, options: Mapping[str, Any]) -> dict[str, Any]:
        o = with_defaults(OPTIONS_SCHEMA, options)
        data = str(o["content"]).encode("utf-8")
        body = {
            "branch": o["branch"],
            "content": o["content"],
            "commit_message": o["commitMessage"],
        }
        async with _client(o) as api:
            found = await _get(api, o)
            if found is None:
                await api.post(_file_path(o), json=body)
            elif found.get("content_sha256") != hashlib.sha256(data).hexdigest():
                # last_commit_id: GitLab refuses the write if the file changed since we read.
                guard = {"last_commit_id": found.get("last_commit_id")}
                await api.put(_file_path(o), json={**body, **guard})
            written = await _get(api, o)
        if written is None:
            raise PluginInternalError(f"{CI_FILE} vanished from {o['project']} right after a write")
        return _status(o, written)


def _client(o: Mapping[str, Any]) -> ApiClient:
    return ApiClient(str(o["apiURL"]), token=str(o.get("token") or "") or None)


def _file_path(o: Mapping[str, Any]) -> str:
    # The project path and the file path are each one URL segment: / becomes %2F.
    project = quote(str(o["project"]), safe="")
    return f"/projects/{project}/repository/files/{quote(CI_FILE, safe='')}"


async def _get(api: ApiClient, o: Mapping[str, Any]) -> dict[str, Any] | None:
    resp = await api.get_or_none(_file_path(o), params={"ref": o["branch"]})
    return None if resp is None else dict(resp.body)


def _status(o: Mapping[str, Any], found: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "project": o["project"],
        "branch": o["branch"],
        "file": CI_FILE,
        "content_sha256": str(found.get("content_sha256") or ""),
        "outputs": {
            "project": o["project"],
            "branch": o["branch"],
            "path": CI_FILE,
            "commit": str(found.get("last_commit_id") or ""),
        },
    }
