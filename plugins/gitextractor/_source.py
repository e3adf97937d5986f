"""Where a repository is read from: a local path in place, or a bare clone of a git URL.

A URL's credentials never reach argv, a message, an id or the clone's own config: an
http(s) URL's user and password are taken out of it and handed to git by a credential
helper that reads them from the environment of that one git process; a password in any
other kind of URL is dropped (ssh and git:// cannot use one), and messages are redacted.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import re
import shutil
import tempfile
import weakref
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlsplit, urlunsplit

from plugin_sdk import InvalidOptions, PluginError, PluginUnavailable, SubtaskContext
from plugins.gitextractor import _git
from plugins.gitextractor._git import GitFailed, Repo

# git's ssh shorthand, user@host:path (a colon before any slash).
_SCP_LIKE = re.compile(r"^(?:[^@/]+@)?[^/:]+:")
# Failures worth retrying: the network, not the URL or the credentials.
_TRANSIENT = (
    "could not resolve host",
    "connection refused",
    "couldn't connect",
    "failed to connect",
    "timed out",
    "connection reset",
    "temporary failure",
)
# A credential helper answering git's `get` from two variables of its own environment.
_HELPER = (
    '!f() { if [ "$1" = get ]; then printf "username=%s\\npassword=%s\\n" '
    '"$GITEXTRACTOR_USERNAME" "$GITEXTRACTOR_PASSWORD"; fi; }; f'
)


@dataclass(frozen=True)
class Target:
    """One task's repository: how to reach it, what to call it, and its raw-data scope."""

    url: str  # a URL with no password nor http(s) user in it, or an absolute local path
    remote: bool
    repo_id: str
    name: str
    skip_commit_files: bool = False
    proxy: str = field(default="", repr=False)
    username: str = field(default="", repr=False)
    password: str = field(default="", repr=False)

    @classmethod
    def from_options(
        cls, options: Mapping[str, Any], connection: Mapping[str, Any], plugin: str
    ) -> Target:
        given = str(options.get("url") or "").strip()
        if not given:
            raise InvalidOptions("url: required: a local path or a git URL", plugin=plugin)
        if given.startswith("-"):
            raise InvalidOptions(f"url: {given!r} is neither a path nor a URL", plugin=plugin)
        url, remote, username, password = _split(given)
        # The domain id format lives in SubtaskContext.domain_id; reuse it, do not restate it.
        ids = SubtaskContext(plugin, "", {}, {}, dict(connection))
        return cls(
            url=url,
            remote=remote,
            repo_id=str(options.get("repoId") or "") or ids.domain_id("GitRepo", url),
            name=str(options.get("name") or "") or _default_name(url),
            skip_commit_files=bool(options.get("skipCommitFiles")),
            proxy=str(options.get("proxy") or ""),
            username=username,
            password=password,
        )

    @property
    def params(self) -> str:
        """DevLake's raw-data params: which repository the raw rows belong to."""
        return json.dumps({"RepoId": self.repo_id}, separators=(",", ":"))

    async def git(self, *args: str, cwd: Path) -> str:
        """Run a git command that talks to the remote, with its credentials and proxy."""
        config: list[tuple[str, str]] = []
        if self.username or self.password:
            # An empty value first empties the helper list: ours is the only one asked.
            config += [("credential.helper", ""), ("credential.helper", _HELPER)]
        if self.proxy:
            config.append(("http.proxy", self.proxy))
        env = {"GITEXTRACTOR_USERNAME": self.username, "GITEXTRACTOR_PASSWORD": self.password}
        return await _git.run(*args, cwd=cwd, config=config, env=env)

    def failure(self, action: str, exc: GitFailed) -> PluginError:
        """The error for a git command that could not reach or read this repository."""
        detail = exc.stderr or f"git exited with {exc.returncode}"
        # A user with no password is a token (https://TOKEN@host/...): hide it too.
        token = "" if self.password else self.username
        for secret in filter(None, (self.password, token, _password_of(self.proxy))):
            detail = detail.replace(secret, "***").replace(quote(secret, safe=""), "***")
        kind = PluginUnavailable if any(m in detail.lower() for m in _TRANSIENT) else InvalidOptions
        return kind(f"cannot {action} {self.url}: {detail}")


def _split(given: str) -> tuple[str, bool, str, str]:
    """(url for git, remote?, http(s) user, password) of an option's `url`."""
    if "://" in given:
        parts = urlsplit(given)
        host = parts.netloc.rpartition("@")[2]
        username, password = unquote(parts.username or ""), unquote(parts.password or "")
        if parts.scheme in ("http", "https"):
            netloc = host  # the user may be a token: it goes to the helper, not the URL
        else:
            # ssh and git:// take the user from the URL and can use no password: drop it.
            netloc = f"{quote(username, safe='')}@{host}" if username else host
            username = password = ""
        return urlunsplit(parts._replace(netloc=netloc)), True, username, password
    if _SCP_LIKE.match(given) and not os.path.exists(given):
        return given, True, "", ""
    return os.path.abspath(os.path.expanduser(given)), False, "", ""


def _password_of(url: str) -> str:
    return unquote(urlsplit(url).password or "") if "://" in url else ""


def _default_name(url: str) -> str:
    if "://" in url:
        path = urlsplit(url).path
    elif _SCP_LIKE.match(url) and not url.startswith("/"):
        path = url.split(":", 1)[1]
    else:
        path = url
    parts = [p for p in path.split("/") if p]
    if parts and parts[-1] == ".git":  # the .git directory of a working copy
        parts.pop()
    return parts[-1].removesuffix(".git") if parts else url


class Clones:
    """Bare clones made by this process: one per repository, refreshed by a fetch when a
    new task asks for it, removed when the plugin goes away.

    Fetching into the clone a running task reads is safe (git updates refs atomically and
    adds packs beside the old ones); deleting and re-cloning it would not be. A plugin
    killed outright leaves its clone directory behind in the temporary directory.
    """

    def __init__(self) -> None:
        self._root: Path | None = None
        self._paths: dict[str, Path] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    def _dir(self) -> Path:
        if self._root is None:
            self._root = Path(tempfile.mkdtemp(prefix="dtm-gitextractor-"))
            weakref.finalize(self, shutil.rmtree, self._root, True)
        return self._root

    async def repo(self, target: Target, *, refresh: bool) -> Repo:
        """The git directory to read: the local one, or this process's clone of the URL."""
        if not target.remote:
            return await _local(target)
        lock = self._locks.setdefault(target.url, asyncio.Lock())
        async with lock:  # one clone or fetch of a repository at a time
            path = self._paths.get(target.url)
            if path is not None and path.is_dir():
                if refresh:
                    await _fetch(target, path)
            else:
                path = self._paths[target.url] = await _clone(target, self._dir())
        return Repo(path)


async def _local(target: Target) -> Repo:
    path = Path(target.url)
    if not path.is_dir():
        raise InvalidOptions(
            f"url: {path} is not a directory (a local repository is read in place; "
            "a remote one needs a URL such as https://..., ssh://... or file://...)"
        )
    try:
        # The ceiling keeps git from reading a repository that merely contains `path`.
        out = await _git.run(
            "rev-parse",
            "--absolute-git-dir",
            cwd=path,
            env={"GIT_CEILING_DIRECTORIES": str(path.parent)},
        )
    except GitFailed as exc:
        raise InvalidOptions(f"url: {path} is not a git repository: {exc.stderr}") from exc
    return Repo(Path(out.strip()))


async def _clone(target: Target, root: Path) -> Path:
    # Not a partial clone (--filter=blob:none): line counts read every changed blob, and a
    # partial clone fetches those lazily, one round trip per commit.
    dest = root / hashlib.sha256(target.url.encode()).hexdigest()[:16]
    partial = dest.with_name(dest.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    try:
        await target.git("clone", "--bare", "--quiet", "--", target.url, str(partial), cwd=root)
        # A bare clone keeps no fetch refspec: give it one, so refreshing is a plain fetch.
        for spec in ("+refs/heads/*:refs/heads/*", "+refs/tags/*:refs/tags/*"):
            await _git.run(
                f"--git-dir={partial}", "config", "--add", "remote.origin.fetch", spec, cwd=root
            )
    except GitFailed as exc:
        shutil.rmtree(partial, ignore_errors=True)
        raise target.failure("clone", exc) from exc
    shutil.rmtree(dest, ignore_errors=True)  # a clone removed from under us, half gone
    partial.rename(dest)
    return dest


async def _fetch(target: Target, path: Path) -> None:
    git_dir = f"--git-dir={path}"
    try:
        await target.git(git_dir, "fetch", "--prune", "--quiet", "origin", cwd=path)
        head = await target.git(git_dir, "ls-remote", "--symref", "origin", "HEAD", cwd=path)
    except GitFailed as exc:
        raise target.failure("fetch", exc) from exc
    # The remote's default branch may have changed since the clone: follow it.
    first = head.split("\n", 1)[0]
    if first.startswith("ref: "):
        await _git.run(git_dir, "symbolic-ref", "HEAD", first[5:].split("\t")[0], cwd=path)


async def count_refs(target: Target) -> int:
    """How many refs `git ls-remote` lists for the target (peeled tag entries not counted)."""
    try:
        # Run outside any repository, where a URL like `origin` names no remote.
        out = await target.git("ls-remote", "--", target.url, cwd=Path(tempfile.gettempdir()))
    except GitFailed as exc:
        raise target.failure("reach", exc) from exc
    return sum(1 for line in out.splitlines() if line and not line.endswith("^{}"))
