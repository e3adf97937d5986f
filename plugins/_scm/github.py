"""GitHub's REST API as the SCM plugins use it: repositories, git trees, the contents API.

Blob shas are git's (`plugins._scm.git.blob_sha`), so a file's state read from GitHub and
one computed from the content we mean to write compare directly, without downloading it.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import quote

from plugin_sdk import ApiClient, PluginInternalError, ResourceNotFound
from plugins._scm.git import File, Files

API_HEADERS = {"Accept": "application/vnd.github+json", "X-GitHub-Api-Version": "2022-11-28"}
# Blobs are fetched a few at a time: fast, and polite to the secondary rate limit.
FETCH_CONCURRENCY = 4


def client(api_url: str, token: str) -> ApiClient:
    return ApiClient(api_url, token=token or None, headers=API_HEADERS)


def repo_path(owner: str, name: str) -> str:
    return f"/repos/{quote(owner, safe='')}/{quote(name, safe='')}"


def contents_path(owner: str, name: str, path: str) -> str:
    return f"{repo_path(owner, name)}/contents/{quote(path, safe='/')}"


async def get_repo(api: ApiClient, owner: str, name: str) -> dict[str, Any] | None:
    resp = await api.get_or_none(repo_path(owner, name))
    return None if resp is None else dict(resp.body)


async def login(api: ApiClient) -> str:
    """The login of the user the token belongs to."""
    resp = await api.get("/user")
    return str(resp.body["login"])


async def create_repo(
    api: ApiClient, owner: str, name: str, *, private: bool, description: str = ""
) -> dict[str, Any]:
    """Create `owner/name`: under the token's user when `owner` is that user, else the org."""
    me = await login(api)
    body = {"name": name, "private": private, "description": description, "auto_init": False}
    where = "/user/repos" if owner.lower() == me.lower() else f"/orgs/{quote(owner, safe='')}/repos"
    resp = await api.post(where, json=body)
    return dict(resp.body)


async def delete_repo(api: ApiClient, owner: str, name: str) -> bool:
    resp = await api.request("DELETE", repo_path(owner, name), ok_statuses={404})
    return resp.status != 404


async def branch_blobs(api: ApiClient, owner: str, name: str, ref: str) -> dict[str, str] | None:
    """Every blob of `ref`'s tree, path -> sha; None when the ref (or any commit) is missing."""
    resp = await api.request(
        "GET",
        f"{repo_path(owner, name)}/git/trees/{quote(ref, safe='')}",
        params={"recursive": "1"},
        # 409: "Git Repository is empty", GitHub's answer before the first commit.
        ok_statuses={404, 409},
    )
    if resp.status in (404, 409):
        return None
    if resp.body.get("truncated"):
        raise PluginInternalError(
            f"GitHub truncated the tree of {owner}/{name}@{ref} (over 100,000 entries); "
            "such a repository is too large for this plugin"
        )
    return {e["path"]: e["sha"] for e in resp.body.get("tree", []) if e.get("type") == "blob"}


async def shas_of(
    api: ApiClient, owner: str, name: str, ref: str, paths: Iterable[str]
) -> dict[str, str | None]:
    """The blob sha of each of `paths` on `ref` (None when absent), with one request."""
    blobs = await branch_blobs(api, owner, name, ref) or {}
    return {path: blobs.get(path) for path in sorted(set(paths))}


async def default_branch(api: ApiClient, owner: str, name: str) -> str:
    repo = await get_repo(api, owner, name)
    if repo is None:
        raise ResourceNotFound(f"the GitHub repository {owner}/{name} does not exist")
    return str(repo.get("default_branch") or "main")


async def read_files(api: ApiClient, owner: str, name: str, ref: str = "") -> dict[str, File]:
    """Every file of `owner/name` at `ref` (default: its default branch), with content."""
    ref = ref or await default_branch(api, owner, name)
    resp = await api.get(
        f"{repo_path(owner, name)}/git/trees/{quote(ref, safe='')}", params={"recursive": "1"}
    )
    entries = [e for e in resp.body.get("tree", []) if e.get("type") == "blob"]
    if resp.body.get("truncated"):
        raise PluginInternalError(f"GitHub truncated the tree of {owner}/{name}@{ref}")
    gate = asyncio.Semaphore(FETCH_CONCURRENCY)

    async def fetch(entry: Mapping[str, Any]) -> tuple[str, File]:
        path = str(entry["path"])
        async with gate:
            found = await get_file(api, owner, name, path, ref)
        if found is None:  # deleted between the two requests: the tree is no snapshot
            raise ResourceNotFound(f"{path} vanished from {owner}/{name}@{ref} while read")
        return path, File(found[0], executable=entry.get("mode") == "100755")

    fetched = await asyncio.gather(
        *(fetch(e) for e in entries if e.get("mode") != "120000")  # symlinks: not content
    )
    return dict(sorted(fetched))


def _decode(body: Mapping[str, Any]) -> bytes:
    if body.get("encoding", "base64") != "base64":
        return str(body.get("content", "")).encode()
    return base64.b64decode(str(body.get("content", "")))


async def get_file(
    api: ApiClient, owner: str, name: str, path: str, ref: str
) -> tuple[bytes, str] | None:
    """A file's content and blob sha via the contents API; None when it does not exist."""
    resp = await api.get_or_none(contents_path(owner, name, path), params={"ref": ref})
    if resp is None or not isinstance(resp.body, dict) or resp.body.get("type") != "file":
        return None
    return _decode(resp.body), str(resp.body["sha"])


async def put_file(
    api: ApiClient,
    owner: str,
    name: str,
    path: str,
    *,
    branch: str,
    data: bytes,
    message: str,
    sha: str | None = None,
) -> str:
    """Create or replace one file (pass the current blob `sha` to replace); the commit sha."""
    body: dict[str, Any] = {
        "message": message,
        "content": base64.b64encode(data).decode(),
        "branch": branch,
    }
    if sha:
        body["sha"] = sha
    resp = await api.put(contents_path(owner, name, path), json=body)
    return str(resp.body["commit"]["sha"])


async def delete_file(
    api: ApiClient, owner: str, name: str, path: str, *, branch: str, message: str, sha: str
) -> str:
    resp = await api.request(
        "DELETE",
        contents_path(owner, name, path),
        json={"message": message, "sha": sha, "branch": branch},
    )
    return str(resp.body["commit"]["sha"])


async def last_commit(api: ApiClient, owner: str, name: str, ref: str, paths: Iterable[str]) -> str:
    """The newest commit on `ref` that touched any of `paths` ("" when none did).

    The commits API filters by one path at a time, so each path's last commit is asked for;
    when they differ, the newest is the first of them in the branch's history (dates can tie
    to the second), which is paged through until it turns up.
    """
    candidates: set[str] = set()
    for path in sorted(set(paths)):
        resp = await api.get(
            f"{repo_path(owner, name)}/commits", params={"sha": ref, "path": path, "per_page": 1}
        )
        if resp.body:
            candidates.add(str(resp.body[0]["sha"]))
    if len(candidates) <= 1:
        return next(iter(candidates), "")
    async for page in api.paginate(f"{repo_path(owner, name)}/commits", params={"sha": ref}):
        for commit in page.body:
            if commit["sha"] in candidates:
                return str(commit["sha"])
    raise PluginInternalError(f"the commits of {sorted(paths)} are not on {owner}/{name}@{ref}")


async def put_files(
    api: ApiClient,
    owner: str,
    name: str,
    files: Files,
    *,
    branch: str,
    message: str,
    current: Mapping[str, str | None],
) -> bool:
    """Write each of `files` whose blob sha differs from `current`; True if any was written."""
    # One at a time: each PUT is a commit on the branch, and concurrent ones would race for
    # the branch head (GitHub answers 409).
    wrote = False
    for path in sorted(files):
        file = files[path]
        if current.get(path) == file.sha:
            continue
        await put_file(
            api,
            owner,
            name,
            path,
            branch=branch,
            data=file.data,
            message=message,
            sha=current.get(path),
        )
        wrote = True
    return wrote


async def delete_files(
    api: ApiClient,
    owner: str,
    name: str,
    current: Mapping[str, str | None],
    *,
    branch: str,
    message: str,
) -> bool:
    """Delete each file of `current` that exists (has a sha); True if any was deleted."""
    deleted = False
    for path, sha in sorted(current.items()):
        if sha:
            await delete_file(api, owner, name, path, branch=branch, message=message, sha=sha)
            deleted = True
    return deleted
