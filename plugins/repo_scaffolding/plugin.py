"""The repo-scaffolding plugin: a new repository rendered from a template repository.

As DevStream's plugin of the same name: the template (`sourceRepo`, a local directory or
git repository, or a GitHub repository) is rendered with `vars` (placeholders `[[ .Name ]]`
in file contents and in file and directory names) into `destinationRepo`, a local git
repository or a new GitHub repository. AppName, Repo.Name and Repo.Owner are set from the
destination unless `vars` gives them, as DevStream does.

The resource is the set of files the template renders to: Read renders the template again
and compares those files' blob shas, so a hand edit, a change of the template and a change
of `vars` all show as drift, while files others add to the repository do not. Update writes
what differs; a file the template no longer produces is left in place (Update is not told
what the template produced before).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Any

from plugin_sdk import Plugin
from plugins._scm.git import File
from plugins._scm.options import repo_errors, repo_properties, with_defaults
from plugins.repo_scaffolding import local, remote, source
from plugins.repo_scaffolding.render import render_tree

_FIELD = re.compile(r"^[A-Za-z_]\w*$")


def _source_properties() -> dict[str, Any]:
    props = repo_properties(role="template repository")
    del props["branch"]
    props["path"] = {
        **props["path"],
        "examples": ["./templates/python-service"],
        "description": "local: the template: a directory, or a git repository when `ref` is "
        "given (required when scmType is local)",
    }
    props["ref"] = {
        "type": "string",
        "default": "",
        "description": "the branch, tag or commit to render; github: empty means the "
        "repository's default branch; local: empty reads the directory as it is on disk",
    }
    props["token"] = {
        **props["token"],
        "description": "github: a token to read a private template (a secret; empty uses "
        "destinationRepo.token when both are on the same GitHub, else no token)",
    }
    return props


def _destination_properties() -> dict[str, Any]:
    props = repo_properties(role="new repository", with_private=True)
    props["name"] = {
        **props["name"],
        "description": "the repository's name (required when scmType is github; local: "
        "defaults to the directory's name, used for AppName and the `name` output)",
    }
    return props


OPTIONS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["sourceRepo", "destinationRepo"],
    "properties": {
        "sourceRepo": {
            "type": "object",
            "additionalProperties": False,
            "description": "the template repository to render",
            "properties": _source_properties(),
        },
        "destinationRepo": {
            "type": "object",
            "additionalProperties": False,
            "description": "the repository to create from the template",
            "properties": _destination_properties(),
        },
        "vars": {
            "type": "object",
            "default": {},
            "examples": [{"ImageRepo": "ghcr.io/my-org/myapp"}],
            "description": "values of the template's [[ .Name ]] placeholders; AppName, "
            "Repo.Name and Repo.Owner default to the destination's name and owner",
        },
        "commitMessage": {
            "type": "string",
            "minLength": 1,
            "default": "Scaffold from template (dtm repo-scaffolding)",
            "description": "the message of the commits that write the rendered files",
        },
    },
}


class RepoScaffolding(Plugin):
    name = "repo-scaffolding"
    version = "0.1.0"
    description = (
        "Creates a repository (local git or GitHub) from a template repository, "
        "rendering [[ .Name ]] placeholders."
    )
    options_schema = OPTIONS_SCHEMA

    async def validate(self, options: Mapping[str, Any]) -> list[str]:
        errors = await super().validate(options)
        src, dest = options.get("sourceRepo"), options.get("destinationRepo")
        if isinstance(src, Mapping):
            src = with_defaults(OPTIONS_SCHEMA["properties"]["sourceRepo"], src)
            errors += repo_errors(src, "sourceRepo.", token=False)
        if isinstance(dest, Mapping):
            dest = with_defaults(OPTIONS_SCHEMA["properties"]["destinationRepo"], dest)
            errors += repo_errors(dest, "destinationRepo.")
        if isinstance(src, Mapping) and isinstance(dest, Mapping):
            errors += _overlap_errors(src, dest)
        variables = options.get("vars")
        if isinstance(variables, Mapping):
            errors += [
                f"vars.{key}: a template cannot refer to {key!r} ([[ .Name ]] takes letters, "
                "digits and _); rename it"
                for key in variables
                if not _FIELD.match(str(key))
            ]
        return errors

    async def create(self, options: Mapping[str, Any]) -> dict[str, Any]:
        o, files = await self._render(options)
        if _on_github(o):
            return await remote.create(o["destinationRepo"], files, o["commitMessage"])
        return await local.create(o["destinationRepo"], files, o["commitMessage"])

    async def update(self, options: Mapping[str, Any]) -> dict[str, Any]:
        o, files = await self._render(options)
        if _on_github(o):
            return await remote.update(o["destinationRepo"], files, o["commitMessage"])
        return await local.update(o["destinationRepo"], files, o["commitMessage"])

    async def read(self, options: Mapping[str, Any]) -> dict[str, Any] | None:
        o, files = await self._render(options)
        if _on_github(o):
            return await remote.read(o["destinationRepo"], files)
        return await local.read(o["destinationRepo"], files)

    async def delete(self, options: Mapping[str, Any]) -> bool:
        o = with_defaults(OPTIONS_SCHEMA, options)
        if _on_github(o):
            return await remote.delete(o["destinationRepo"])
        return await local.delete(o["destinationRepo"])

    async def _render(self, options: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, File]]:
        """The options with defaults applied, and the rendered files (path -> content).

        Read renders too: the files the template produces are the ones this resource owns,
        and comparing their shas needs no copy of what was written before.
        """
        o = with_defaults(OPTIONS_SCHEMA, options)
        src, dest = o["sourceRepo"], o["destinationRepo"]
        same_github = src["scmType"] == dest["scmType"] == "github" and src["apiURL"].rstrip(
            "/"
        ) == dest["apiURL"].rstrip("/")
        template = await source.load(src, fallback_token=dest["token"] if same_github else "")
        return o, render_tree(template, template_vars(o))


def _on_github(o: Mapping[str, Any]) -> bool:
    return bool(o["destinationRepo"]["scmType"] == "github")


def template_vars(o: Mapping[str, Any]) -> dict[str, Any]:
    """DevStream's default variables, overridden by the ones the options give."""
    dest = o["destinationRepo"]
    name = dest["name"] or (local.repo_name(dest) if dest["scmType"] == "local" else "")
    owner = dest["owner"]
    return {"AppName": name, "Repo": {"Name": name, "Owner": owner}, **o["vars"]}


def _overlap_errors(src: Mapping[str, Any], dest: Mapping[str, Any]) -> list[str]:
    if not (src["scmType"] == dest["scmType"] == "local" and src["path"] and dest["path"]):
        return []
    s = os.path.abspath(os.path.expanduser(src["path"]))
    d = os.path.abspath(os.path.expanduser(dest["path"]))
    if s == d or d.startswith(s + os.sep) or s.startswith(d + os.sep):
        return [
            f"destinationRepo.path: {d} overlaps the template {s}; the new repository must "
            "live outside the template and not contain it"
        ]
    return []
