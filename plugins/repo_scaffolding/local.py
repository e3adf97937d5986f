"""The local destination: a git working copy on this machine, created and committed to.

Create builds the repository in a hidden sibling directory and renames it into place, so a
failure half-way never leaves a half-made repository at `path`. Read reports, for every file
the template renders, its blob sha on the branch and whether the working copy differs
(`dirty`): a hand edit shows as drift whether it was committed or not, while files the
template does not produce (a workflow added by github-actions, the team's own code) do not.
"""

from __future__ import annotations

import secrets
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from plugin_sdk import AlreadyExists, InvalidOptions
from plugins._scm import git
from plugins._scm.git import Files

Options = Mapping[str, Any]

MANAGED_BY = "repo-scaffolding"


def repo_dir(dest: Options) -> Path:
    return git.local_path(str(dest["path"]))


def repo_name(dest: Options) -> str:
    return str(dest.get("name") or repo_dir(dest).name)


async def create(dest: Options, files: Files, message: str) -> dict[str, Any]:
    path = repo_dir(dest)
    branch = str(dest["branch"])
    if path.exists():
        if git.is_repo(path) and await git.owner_of(path) == MANAGED_BY:
            # Ours already (a Create retried after the state was lost): converge instead.
            return await update(dest, files, message)
        if not path.is_dir() or any(path.iterdir()):
            raise AlreadyExists(
                f"destinationRepo.path: {path} already exists and is not an empty directory; "
                "choose another path or move it away"
            )
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.parent / f".{path.name}.dtm-{secrets.token_hex(4)}"
    try:
        await git.init(staging, branch, MANAGED_BY)
        await git.commit(staging, branch, files, message)
        if path.exists():
            path.rmdir()  # the empty directory checked above
        staging.rename(path)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return await status(dest, files)


async def update(dest: Options, files: Files, message: str) -> dict[str, Any]:
    path = repo_dir(dest)
    if not path.exists():
        return await create(dest, files, message)
    if not git.is_repo(path):
        raise InvalidOptions(f"destinationRepo.path: {path} exists but is not a git repository")
    await git.commit(path, str(dest["branch"]), files, message)
    return await status(dest, files)


async def read(dest: Options, files: Files) -> dict[str, Any] | None:
    if not git.is_repo(repo_dir(dest)):
        return None
    return await status(dest, files)


async def delete(dest: Mapping[str, Any]) -> bool:
    return await git.remove(repo_dir(dest), MANAGED_BY)


async def status(dest: Options, files: Files) -> dict[str, Any]:
    path = repo_dir(dest)
    branch = str(dest["branch"])
    state = await git.tracked(path, branch, files)
    url = path.as_uri()
    return {
        "scmType": "local",
        "branch": branch,
        "files": state.files,
        "dirty": state.dirty,
        "outputs": {
            "repoURL": url,
            "cloneURL": url,
            "owner": str(dest.get("owner") or ""),
            "name": repo_name(dest),
            "branch": branch,
            "path": str(path),
        },
    }
