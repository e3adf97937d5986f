"""Loading the template repository: a local directory, a local git repository, or GitHub."""

from __future__ import annotations

import os
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from plugin_sdk import InvalidOptions
from plugins._scm import git, github
from plugins._scm.git import File


async def load(source: Mapping[str, Any], fallback_token: str = "") -> dict[str, File]:
    """Every file of the template, by its path relative to the template's root."""
    if source.get("scmType") == "github":
        token = str(source.get("token") or fallback_token)
        async with github.client(str(source["apiURL"]), token) as api:
            return await github.read_files(
                api, str(source["owner"]), str(source["name"]), str(source.get("ref") or "")
            )
    path = git.local_path(str(source["path"]))
    ref = str(source.get("ref") or "")
    if ref:
        if not git.is_repo(path):
            raise InvalidOptions(f"sourceRepo.ref: {path} is not a git repository to read {ref!r}")
        return await git.files_at(path, ref)
    if not path.is_dir():
        raise InvalidOptions(f"sourceRepo.path: {path} is not a directory")
    return read_directory(path)


def read_directory(root: Path) -> dict[str, File]:
    """The files under `root`, `.git` left out; symlinked directories are not followed."""
    files: dict[str, File] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        # Sorted in place so the walk (and any error it reports) is the same every time.
        dirnames[:] = sorted(d for d in dirnames if d != ".git")
        for filename in sorted(filenames):
            full = Path(dirpath, filename)
            try:
                data = full.read_bytes()
                mode = full.stat().st_mode
            except (FileNotFoundError, IsADirectoryError):
                continue  # a dangling symlink, or a symlink to a directory: nothing to copy
            name = full.relative_to(root).as_posix()
            files[name] = File(data, executable=bool(mode & stat.S_IXUSR))
    if not files:
        raise InvalidOptions(f"sourceRepo.path: the template {root} holds no files")
    return files
