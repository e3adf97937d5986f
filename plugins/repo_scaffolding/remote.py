"""The GitHub destination: create the repository, then put each rendered file through the
contents API.

Create is all or nothing: when a file cannot be written after the repository was made, the
repository is deleted again, so a retried Create does not meet a half-filled repository it
must refuse. Read takes the branch's whole tree in one request and compares blob shas, so a
file changed on GitHub (by a commit or the web editor) shows as drift.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from plugin_sdk import AlreadyExists, ApiClient, ResourceNotFound
from plugins._scm import github
from plugins._scm.git import Files

Options = Mapping[str, Any]


def _names(dest: Mapping[str, Any]) -> tuple[str, str]:
    return str(dest["owner"]), str(dest["name"])


async def create(dest: Options, files: Files, message: str) -> dict[str, Any]:
    owner, name = _names(dest)
    async with github.client(str(dest["apiURL"]), str(dest["token"])) as api:
        if await github.get_repo(api, owner, name) is not None:
            raise AlreadyExists(
                f"the GitHub repository {owner}/{name} already exists; choose another "
                "destinationRepo.name or delete that repository"
            )
        branch = str(dest["branch"])
        repo = await github.create_repo(api, owner, name, private=bool(dest["private"]))
        try:
            await github.put_files(
                api, owner, name, files, branch=branch, message=message, current={}
            )
            if repo.get("default_branch") != branch:
                # The branch we filled is the repository's, whatever the account's default.
                await api.patch(github.repo_path(owner, name), json={"default_branch": branch})
        except BaseException:
            await github.delete_repo(api, owner, name)
            raise
        return await _status(api, dest, files)


async def update(dest: Options, files: Files, message: str) -> dict[str, Any]:
    owner, name = _names(dest)
    async with github.client(str(dest["apiURL"]), str(dest["token"])) as api:
        repo = await github.get_repo(api, owner, name)
        if repo is None:
            return await create(dest, files, message)
        if bool(repo.get("private")) != bool(dest["private"]):
            await api.patch(github.repo_path(owner, name), json={"private": bool(dest["private"])})
        branch = str(dest["branch"])
        current = await github.shas_of(api, owner, name, branch, files)
        await github.put_files(
            api, owner, name, files, branch=branch, message=message, current=current
        )
        return await _status(api, dest, files)


async def read(dest: Options, files: Files) -> dict[str, Any] | None:
    async with github.client(str(dest["apiURL"]), str(dest["token"])) as api:
        if await github.get_repo(api, *_names(dest)) is None:
            return None
        return await _status(api, dest, files)


async def delete(dest: Mapping[str, Any]) -> bool:
    async with github.client(str(dest["apiURL"]), str(dest["token"])) as api:
        return await github.delete_repo(api, *_names(dest))


async def _status(api: ApiClient, dest: Options, files: Files) -> dict[str, Any]:
    owner, name = _names(dest)
    repo = await github.get_repo(api, owner, name)
    if repo is None:
        raise ResourceNotFound(f"the GitHub repository {owner}/{name} vanished while written")
    branch = str(dest["branch"])
    return {
        "scmType": "github",
        "branch": branch,
        "private": bool(repo.get("private")),
        "files": await github.shas_of(api, owner, name, branch, files),
        "outputs": {
            "repoURL": str(repo.get("html_url") or ""),
            "cloneURL": str(repo.get("clone_url") or ""),
            "owner": str((repo.get("owner") or {}).get("login") or owner),
            "name": str(repo.get("name") or name),
            "branch": branch,
        },
    }
