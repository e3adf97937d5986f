"""The github-actions plugin: workflow files committed into `.github/workflows/` of a repository.

The repository is a local git working copy (`scmType: local`, for instance one made by
repo-scaffolding) or a GitHub repository (`scmType: github`, through the contents API). The
resource is the set of workflow files: Read reports each one's git blob sha on the branch
(and, locally, which differ in the working copy), so a hand edit is drift; it returns None
when none of them exists any more. Other files of the repository are never touched.

Update writes the workflows its options list; a workflow dropped from the list stays in the
repository (Update is not told what the previous options held): delete the tool first, or
remove the file by hand.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from plugin_sdk import ApiClient, Plugin, PluginInternalError, ResourceNotFound
from plugins._scm import git, github
from plugins._scm.git import File
from plugins._scm.options import repo_errors, repo_properties, with_defaults

WORKFLOW_DIR = ".github/workflows"

OPTIONS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["workflows"],
    "properties": {
        **repo_properties(role="repository"),
        "workflows": {
            "type": "array",
            "minItems": 1,
            "description": f"the workflow files to keep in {WORKFLOW_DIR}/",
            "items": {
                "type": "object",
                "additionalProperties": False,
                "required": ["name", "content"],
                "properties": {
                    "name": {
                        "type": "string",
                        "pattern": r"^[A-Za-z0-9][A-Za-z0-9._-]*\.ya?ml$",
                        "examples": ["ci.yml"],
                        "description": f"the file's name in {WORKFLOW_DIR}/ (ends in .yml "
                        "or .yaml)",
                    },
                    "content": {
                        "type": "string",
                        "minLength": 1,
                        "examples": ["on: push\njobs: {}\n"],
                        "description": "the workflow's YAML, written as it is",
                    },
                },
            },
        },
        "commitMessage": {
            "type": "string",
            "minLength": 1,
            "default": "ci: update GitHub Actions workflows (dtm github-actions)",
            "description": "the message of the commits that write or delete the workflows",
        },
    },
}


class GitHubActions(Plugin):
    name = "github-actions"
    version = "0.1.0"
    description = "Commits GitHub Actions workflow files into a repository (local git or GitHub)."
    options_schema = OPTIONS_SCHEMA

    async def validate(self, options: Mapping[str, Any]) -> list[str]:
        errors = await super().validate(options)
        errors += repo_errors(with_defaults(OPTIONS_SCHEMA, options))
        workflows = options.get("workflows")
        if isinstance(workflows, list):
            errors += _workflow_errors(workflows)
        return errors

    async def create(self, options: Mapping[str, Any]) -> dict[str, Any]:
        return await self._write(options)

    async def update(self, options: Mapping[str, Any]) -> dict[str, Any]:
        return await self._write(options)

    async def read(self, options: Mapping[str, Any]) -> dict[str, Any] | None:
        o = with_defaults(OPTIONS_SCHEMA, options)
        names = list(workflow_files(o))
        if o["scmType"] == "github":
            async with _client(o) as api:
                if await github.get_repo(api, o["owner"], o["name"]) is None:
                    return None
                return await _github_status(api, o, names)
        repo = _repo_dir(o)
        if not git.is_repo(repo):
            return None
        return await _local_status(repo, o, names)

    async def delete(self, options: Mapping[str, Any]) -> bool:
        o = with_defaults(OPTIONS_SCHEMA, options)
        names = list(workflow_files(o))
        message = o["commitMessage"]
        if o["scmType"] == "github":
            async with _client(o) as api:
                if await github.get_repo(api, o["owner"], o["name"]) is None:
                    return False
                current = await github.shas_of(api, o["owner"], o["name"], o["branch"], names)
                return await github.delete_files(
                    api, o["owner"], o["name"], current, branch=o["branch"], message=message
                )
        repo = _repo_dir(o)
        if not git.is_repo(repo):
            return False
        state = await git.tracked(repo, o["branch"], names)
        if not state.present:
            return False
        await git.commit(repo, o["branch"], dict.fromkeys(names), message)
        return True

    async def _write(self, options: Mapping[str, Any]) -> dict[str, Any]:
        o = with_defaults(OPTIONS_SCHEMA, options)
        files = workflow_files(o)
        if o["scmType"] == "github":
            async with _client(o) as api:
                if await github.get_repo(api, o["owner"], o["name"]) is None:
                    raise ResourceNotFound(
                        f"the GitHub repository {o['owner']}/{o['name']} does not exist; "
                        "create it first (for instance with repo-scaffolding)"
                    )
                current = await github.shas_of(api, o["owner"], o["name"], o["branch"], files)
                await github.put_files(
                    api,
                    o["owner"],
                    o["name"],
                    files,
                    branch=o["branch"],
                    message=o["commitMessage"],
                    current=current,
                )
                return _written(await _github_status(api, o, list(files)))
        repo = _repo_dir(o)
        git.require_repo(repo, "path")
        await git.commit(repo, o["branch"], files, o["commitMessage"])
        return _written(await _local_status(repo, o, list(files)))


def _written(status: dict[str, Any] | None) -> dict[str, Any]:
    if status is None:  # only if someone deletes the files between our write and read
        raise PluginInternalError("the workflow files vanished right after they were written")
    return status


def workflow_files(o: Mapping[str, Any]) -> dict[str, File]:
    """Repository path -> content of every workflow the options list."""
    return {
        f"{WORKFLOW_DIR}/{w['name']}": File(str(w["content"]).encode("utf-8"))
        for w in o["workflows"]
    }


def _workflow_errors(workflows: list[Any]) -> list[str]:
    errors: list[str] = []
    seen: set[str] = set()
    for i, workflow in enumerate(workflows):
        if not isinstance(workflow, Mapping):
            continue
        name, content = workflow.get("name"), workflow.get("content")
        if isinstance(name, str):
            if name in seen:
                errors.append(f"workflows.{i}.name: {name!r} is listed twice")
            seen.add(name)
        if isinstance(content, str) and content:
            errors += [f"workflows.{i}.content: {why}" for why in _yaml_problems(content)]
    return errors


def _yaml_problems(content: str) -> list[str]:
    try:
        doc = yaml.safe_load(content)
    except yaml.YAMLError as exc:
        return [f"is not valid YAML: {' '.join(str(exc).split())}"]
    if not isinstance(doc, Mapping):
        return ["must be a YAML mapping with `on` and `jobs`"]
    # YAML 1.1 reads a bare `on` key as the boolean true; GitHub reads it as "on".
    missing = [key for key, alts in (("on", ("on", True)), ("jobs", ("jobs",))) if not any(
        a in doc for a in alts
    )]  # fmt: skip
    return [f"has no `{key}`: GitHub rejects a workflow without it" for key in missing]


def _repo_dir(o: Mapping[str, Any]) -> Path:
    return git.local_path(str(o["path"]))


def _client(o: Mapping[str, Any]) -> ApiClient:
    return github.client(str(o["apiURL"]), str(o["token"]))


async def _local_status(
    repo: Path, o: Mapping[str, Any], names: list[str]
) -> dict[str, Any] | None:
    state = await git.tracked(repo, o["branch"], names, with_commit=True)
    if not state.present:
        return None
    return _status(o, state.files, state.commit or "", dirty=state.dirty, path=str(repo))


async def _github_status(
    api: ApiClient, o: Mapping[str, Any], names: list[str]
) -> dict[str, Any] | None:
    owner, name, branch = o["owner"], o["name"], o["branch"]
    shas = await github.shas_of(api, owner, name, branch, names)
    present = [n for n, sha in shas.items() if sha]
    if not present:
        return None
    commit = await github.last_commit(api, owner, name, branch, present)
    return _status(o, shas, commit, dirty=None, path="")


def _status(
    o: Mapping[str, Any],
    shas: Mapping[str, str | None],
    commit: str,
    *,
    dirty: list[str] | None,
    path: str,
) -> dict[str, Any]:
    status: dict[str, Any] = {
        "scmType": o["scmType"],
        "branch": o["branch"],
        "workflows": dict(shas),
        "outputs": {"workflows": sorted(shas), "branch": o["branch"], "commit": commit},
    }
    if dirty is not None:
        status["dirty"] = dirty
    if path:
        status["outputs"]["path"] = path
    return status
