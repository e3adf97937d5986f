"""Local git through the real `git` binary: init, commit files to a branch, read what it holds.

Commits are made with `git fast-import` against the branch ref rather than `git add` and
`git commit`: that never touches the person's index or other uncommitted work, works whether
or not the branch is checked out, is one process however many files there are, and refuses
to move a branch that moved underneath it (not a fast-forward). When the branch is checked
out, the paths we committed are then checked out too, so the working copy matches.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import os
import shutil
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from plugin_sdk import InvalidOptions, PermissionDenied, PluginInternalError, PluginUnavailable

# The fixed identity of every commit a plugin makes, so history says who changed what.
AUTHOR_NAME = "dtm"
AUTHOR_EMAIL = "dtm@localhost"
# A key in the repository's own .git/config naming the plugin that created it; Delete only
# removes a directory carrying it, so a wrong `path` can never wipe someone's work.
MANAGED_KEY = "devstream.managedBy"
# Variables that would point git at another repository than the one we name.
_REPO_ENV = (
    "GIT_DIR",
    "GIT_WORK_TREE",
    "GIT_INDEX_FILE",
    "GIT_OBJECT_DIRECTORY",
    "GIT_ALTERNATE_OBJECT_DIRECTORIES",
    "GIT_COMMON_DIR",
    "GIT_NAMESPACE",
    "GIT_PREFIX",
)
# Signing would need the person's keys and agent; hooks are the person's, not ours to run;
# line-ending conversion would make a checked-out file differ from the blob we compare it to;
# globs in a path must stay literal.
_BASE_ARGS = (
    "-c",
    "commit.gpgsign=false",
    "-c",
    "core.hooksPath=/dev/null",
    "-c",
    "core.autocrlf=false",
    "--literal-pathspecs",
)


@dataclass(frozen=True)
class File:
    """The content of one file in a commit, with git's view of its mode."""

    data: bytes
    executable: bool = False

    @property
    def mode(self) -> str:
        return "100755" if self.executable else "100644"

    @functools.cached_property
    def sha(self) -> str:
        return blob_sha(self.data)


# What a plugin means to commit: path -> content.
Files = Mapping[str, File]


@dataclass(frozen=True)
class Tracked:
    """What a branch and the working copy hold for the paths a plugin manages."""

    files: dict[str, str | None]  # git blob sha on the branch, None when absent
    dirty: list[str]  # paths whose working copy differs from the branch (uncommitted edits)
    commit: str | None = None  # the last commit on the branch that touched those paths

    @property
    def present(self) -> bool:
        return any(sha is not None for sha in self.files.values()) or bool(self.dirty)


def blob_sha(data: bytes) -> str:
    """The sha git gives a blob with this content (`git hash-object`), without a process."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data, usedforsecurity=False).hexdigest()


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _REPO_ENV}
    env.update(
        GIT_AUTHOR_NAME=AUTHOR_NAME,
        GIT_AUTHOR_EMAIL=AUTHOR_EMAIL,
        GIT_COMMITTER_NAME=AUTHOR_NAME,
        GIT_COMMITTER_EMAIL=AUTHOR_EMAIL,
        GIT_TERMINAL_PROMPT="0",
        LC_ALL="C",  # stable messages to match and to show
    )
    return env


@dataclass(frozen=True)
class _Result:
    returncode: int
    stdout: bytes
    stderr: str


async def run(cwd: Path, *args: str, input: bytes | None = None, check: bool = True) -> _Result:
    """Run `git args` in `cwd`; with `check`, a failure raises naming the command and stderr."""
    exe = shutil.which("git")
    if exe is None:
        raise PluginUnavailable("the `git` program is not on PATH; install git and retry")
    proc = await asyncio.create_subprocess_exec(
        exe,
        *_BASE_ARGS,
        *args,
        cwd=cwd,
        env=_env(),
        stdin=asyncio.subprocess.PIPE if input is not None else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await proc.communicate(input)
    except BaseException:  # cancelled: leave no git process behind
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        raise
    result = _Result(proc.returncode or 0, out, err.decode(errors="replace").strip())
    if check and result.returncode != 0:
        raise PluginInternalError(
            f"`git {args[0]}` failed in {cwd} (exit {result.returncode}): {result.stderr}"
        )
    return result


def local_path(text: str) -> Path:
    """An option's path made absolute: abspath, not resolve(), so a symlink stays as written."""
    return Path(os.path.abspath(os.path.expanduser(text)))


def is_repo(path: Path) -> bool:
    """True when `path` is the top of a working copy (not merely inside another one)."""
    return (path / ".git").exists()


async def init(path: Path, branch: str, managed_by: str) -> None:
    """`git init -b branch path` and mark the repository as created by `managed_by`."""
    path.mkdir(parents=True, exist_ok=True)
    await run(path, "init", "-q", "-b", branch, ".")
    await run(path, "config", MANAGED_KEY, managed_by)


async def owner_of(path: Path) -> str:
    """The plugin that created the repository at `path` ("" when none did)."""
    res = await run(path, "config", "--get", MANAGED_KEY, check=False)
    return res.stdout.decode().strip()


async def remove(path: Path, managed_by: str) -> bool:
    """Delete the working copy at `path` if `managed_by` created it; False when it is gone."""
    if not path.exists():
        return False
    if not is_repo(path):
        raise PermissionDenied(
            f"refusing to delete {path}: it is not a git repository "
            f"(repo-scaffolding only deletes repositories it created)"
        )
    if await owner_of(path) != managed_by:
        raise PermissionDenied(
            f"refusing to delete {path}: it was not created by {managed_by} "
            f"(its .git/config has no `{MANAGED_KEY} = {managed_by}`); remove it by hand"
        )
    await asyncio.to_thread(shutil.rmtree, path)
    return True


async def branch_head(path: Path, branch: str) -> str | None:
    """The commit `branch` points at, or None when it does not exist (yet)."""
    ref = f"refs/heads/{branch}^{{commit}}"
    res = await run(path, "rev-parse", "-q", "--verify", ref, check=False)
    if res.returncode != 0:
        return None
    return res.stdout.decode().strip() or None


async def checked_out(path: Path) -> str | None:
    """The branch the working copy has checked out (None when HEAD is detached)."""
    res = await run(path, "symbolic-ref", "-q", "--short", "HEAD", check=False)
    if res.returncode != 0:
        return None
    return res.stdout.decode().strip() or None


async def tree(path: Path, rev: str) -> dict[str, tuple[str, str]]:
    """Every blob of `rev`'s tree: path -> (mode, sha). Submodules and the like are skipped."""
    res = await run(path, "ls-tree", "-r", "-z", "--full-tree", rev)
    out: dict[str, tuple[str, str]] = {}
    for entry in res.stdout.split(b"\0"):
        if not entry:
            continue
        meta, _, name = entry.partition(b"\t")
        mode, kind, sha = meta.decode().split(" ")
        if kind == "blob":
            out[name.decode(errors="surrogateescape")] = (mode, sha)
    return out


async def files_at(path: Path, rev: str) -> dict[str, File]:
    """The content of every file in `rev` (for a template kept in a local git repository)."""
    found = await run(path, "rev-parse", "-q", "--verify", f"{rev}^{{tree}}", check=False)
    if found.returncode != 0:
        raise InvalidOptions(f"{rev!r} names no commit, branch or tag in {path}")
    entries = await tree(path, rev)
    if not entries:
        return {}
    # One `cat-file --batch` for every blob: a process per file would dominate the time.
    names = list(entries)
    res = await run(
        path, "cat-file", "--batch", input="".join(f"{entries[n][1]}\n" for n in names).encode()
    )
    files: dict[str, File] = {}
    buf, pos = res.stdout, 0
    for name in names:
        header_end = buf.index(b"\n", pos)
        size = int(buf[pos:header_end].split(b" ")[2])
        data = buf[header_end + 1 : header_end + 1 + size]
        pos = header_end + 1 + size + 1  # the content is followed by one newline
        if entries[name][0] == "120000":
            continue  # a symlink's blob is its target, not content a template means to copy
        files[name] = File(data, executable=entries[name][0] == "100755")
    return files


def _quote(name: str) -> bytes:
    """A path as fast-import reads it: C-style quoted when it holds a quote or newline.

    Encoded with surrogateescape, so a name git or the file system gave us as bytes that are
    not UTF-8 goes back out as the same bytes.
    """
    raw = name.encode("utf-8", "surrogateescape")
    if not any(c in raw for c in b'"\\\n') and not raw.startswith(b'"'):
        return raw
    escaped = raw.replace(b"\\", b"\\\\").replace(b'"', b'\\"').replace(b"\n", b"\\n")
    return b'"' + escaped + b'"'


def _fast_import_stream(
    branch: str, parent: str | None, changes: Mapping[str, File | None], message: str
) -> bytes:
    now = int(time.time())
    who = f"{AUTHOR_NAME} <{AUTHOR_EMAIL}> {now} +0000"
    msg = message.encode()
    parts = [
        f"commit refs/heads/{branch}\nauthor {who}\ncommitter {who}\n".encode(),
        b"data %d\n%s\n" % (len(msg), msg),
    ]
    if parent:
        parts.append(f"from {parent}\n".encode())
    for name in sorted(changes):
        file = changes[name]
        if file is None:
            parts.append(b"D %s\n" % _quote(name))
        else:
            parts.append(b"M %s inline %s\n" % (file.mode.encode(), _quote(name)))
            parts.append(b"data %d\n%s\n" % (len(file.data), file.data))
    parts.append(b"done\n")
    return b"".join(parts)


async def commit(
    path: Path, branch: str, changes: Mapping[str, File | None], message: str
) -> str | None:
    """Commit `changes` (None deletes) on `branch`; the new commit, or None if nothing changed.

    When `branch` is checked out, the working copy of every path in `changes` is made to
    match too, even if the branch already held the content: an uncommitted hand edit of a
    managed file is drift that Update must undo.
    """
    head = await branch_head(path, branch)
    current = await tree(path, head) if head else {}
    effective = {
        name: file
        for name, file in changes.items()
        if (file is None and name in current)
        or (file is not None and current.get(name) != (file.mode, file.sha))
    }
    new_head: str | None = None
    if effective:
        stream = _fast_import_stream(branch, head, effective, message)
        await run(path, "fast-import", "--quiet", "--done", "--date-format=raw", input=stream)
        new_head = await branch_head(path, branch)
    if await checked_out(path) == branch:
        stale = {
            name: file
            for name, file in changes.items()
            if name in effective or _working_sha(path / name) != (file.sha if file else None)
        }
        await _sync_working_copy(path, stale)
    return new_head


async def _sync_working_copy(path: Path, changed: Mapping[str, File | None]) -> None:
    # The branch moved under the index: bring exactly these paths along (index and working
    # copy), leaving any other uncommitted work of the person alone.
    written = [name for name, file in changed.items() if file is not None]
    removed = [name for name, file in changed.items() if file is None]
    nul = ("--pathspec-from-file=-", "--pathspec-file-nul")
    if written:
        await run(path, "checkout", "-q", "HEAD", *nul, input=_nul_joined(written))
    if removed:
        await run(
            path,
            "rm",
            "-q",
            "--cached",
            "--ignore-unmatch",
            *nul,
            input=_nul_joined(removed),
        )
        for name in removed:
            (path / name).unlink(missing_ok=True)


def _nul_joined(names: Iterable[str]) -> bytes:
    return b"\0".join(name.encode("utf-8", "surrogateescape") for name in names)


def _working_sha(path: Path) -> str | None:
    try:
        return blob_sha(path.read_bytes())
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        return None


async def tracked(
    path: Path, branch: str, names: Iterable[str], *, with_commit: bool = False
) -> Tracked:
    """The state of `names` on `branch`, and which differ in the working copy.

    The working copy is compared only when it has `branch` checked out: another branch's
    files are not edits of ours.
    """
    names = sorted(set(names))
    head = await branch_head(path, branch)
    current = await tree(path, head) if head else {}
    files = {name: current[name][1] if name in current else None for name in names}
    dirty: list[str] = []
    if await checked_out(path) == branch:
        dirty = [name for name in names if _working_sha(path / name) != files[name]]
    last: str | None = None
    if with_commit and head and any(files.values()):
        res = await run(path, "log", "-1", "--format=%H", head, "--", *names)
        last = res.stdout.decode().strip() or None
    return Tracked(files=files, dirty=dirty, commit=last)


def check_branch_name(branch: str) -> str | None:
    """Why `branch` is not a usable branch name, or None (a cheap subset of check-ref-format)."""
    bad = (
        not branch
        or branch.startswith(("-", "/", "."))
        or branch.endswith(("/", ".", ".lock"))
        or ".." in branch
        or "//" in branch
        or "@{" in branch
        or any(c in branch for c in " ~^:?*[\\\x7f")
        or any(ord(c) < 32 for c in branch)
    )
    return f"{branch!r} is not a valid git branch name" if bad else None


def require_repo(path: Path, what: str) -> None:
    if not is_repo(path):
        raise InvalidOptions(
            f"{what}: {path} is not a git repository; create it first "
            "(for instance with the repo-scaffolding plugin)"
        )
