"""A repository's commits and refs, read from git's output one record at a time.

The commits are those reachable from the repository's branches, tags, remote-tracking
branches and HEAD, oldest first (`--date-order --reverse`: parents before children, and a
stable order for one set of tips). Notes and stash commits are not history, so the tips
are listed here rather than taken from `--all`; listing them once and handing the same
list to every command (`--stdin`) also keeps the count, a resume position and the log
consistent while someone pushes to a repository read in place.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import Any

from plugins.gitextractor._git import GitFailed, Repo

REF_PATTERNS = ("refs/heads", "refs/tags", "refs/remotes")
_RS = "\x1e"  # opens every commit's header, so a header is never mistaken for a file entry
_FIELDS = (
    "sha", "parents", "author_name", "author_email", "authored_date",
    "committer_name", "committer_email", "committed_date", "message",
)  # fmt: skip
_FORMAT = _RS + "%x00".join(("%H", "%P", "%an", "%ae", "%aI", "%cn", "%ce", "%cI", "%B")) + "%x00"
_LOG_ARGS = (
    "log", "-z", "--date-order", "--reverse", f"--format={_FORMAT}", "--numstat",
    "--diff-merges=first-parent", "-M", "--no-ext-diff", "--no-textconv", "--stdin",
)  # fmt: skip
_REF_FORMAT = "%00".join((
    "%(refname)", "%(objecttype)", "%(objectname)", "%(*objecttype)", "%(*objectname)",
    "%(creatordate:iso-strict)", "%(HEAD)", "%(symref)",
))  # fmt: skip


class GitOutputError(Exception):
    """git printed something this parser does not understand."""


async def tips(repo: Repo) -> bytes:
    """The commits history is read from, one per line, as `--stdin` takes them."""
    out = await repo.run("for-each-ref", "--format=%(objectname)", *REF_PATTERNS)
    shas = set(out.split())
    try:  # a detached HEAD may hold commits no ref reaches
        shas.add((await repo.run("rev-parse", "--verify", "--quiet", "HEAD")).strip())
    except GitFailed:
        pass  # an empty repository: HEAD names a branch with no commit yet
    return "".join(f"{sha}\n" for sha in sorted(shas)).encode()


async def count(repo: Repo, tip_list: bytes) -> int:
    if not tip_list:  # git would read HEAD instead of nothing
        return 0
    return int(await repo.run("rev-list", "--count", "--stdin", input=tip_list))


async def position(repo: Repo, tip_list: bytes, sha: str) -> int | None:
    """How many commits come before `sha` in the collection order, `sha` included."""
    if not tip_list:
        return None
    lines = repo.stream("rev-list", "--date-order", "--reverse", "--stdin",
                        sep=b"\n", input=tip_list)  # fmt: skip
    async with aclosing(lines):
        seen = 0
        async for line in lines:
            seen += 1
            if line == sha:
                return seen
    return None


async def commits(
    repo: Repo, tip_list: bytes, *, newest: int | None = None, with_files: bool = True
) -> AsyncIterator[dict[str, Any]]:
    """Every commit, oldest first, with line counts per file and in total.

    Merges are counted against their first parent (what the merge brought into the
    branch), renames are found (-M) and counted under the new path, a binary file counts
    0 lines. `newest=N` yields only the last N commits of that order (a resume).
    """
    if not tip_list or newest == 0:
        return
    args = [*_LOG_ARGS]
    if newest is not None:
        # Limiting happens before --reverse: the newest N, then oldest first among them.
        args.append(f"--max-count={newest}")
    tokens = repo.stream(*args, sep=b"\0", input=tip_list)
    async with aclosing(tokens):
        async for commit in parse_log(tokens, with_files=with_files):
            yield commit


async def parse_log(
    tokens: AsyncIterator[str], *, with_files: bool
) -> AsyncIterator[dict[str, Any]]:
    """Commits from the NUL-separated pieces of `git log -z --format=<_FORMAT> --numstat`.

    A commit is its header (one piece per field, the first opened by _RS), then one piece
    per file: "ADDED\\tDELETED\\tPATH", or for a rename "ADDED\\tDELETED\\t" followed by
    the old and the new path as two pieces of their own. Empty pieces separate parts.
    """
    commit: dict[str, Any] | None = None
    files: dict[str, dict[str, Any]] = {}
    async for token in tokens:
        if token.startswith(_RS):
            if commit is not None:
                yield _finish(commit, files, with_files)
            values = [token[1:]] + [await _next(tokens) for _ in _FIELDS[1:]]
            commit, files = dict(zip(_FIELDS, values, strict=True)), {}
            continue
        entry = token.lstrip("\n")  # git puts a newline between the header and the files
        if not entry:
            continue
        if commit is None:
            raise GitOutputError(f"git log printed {entry[:80]!r} before any commit")
        added, deleted, path = _numstat(entry)
        old = None
        if not path:
            old, path = await _next(tokens), await _next(tokens)
        _count(files, path, old, added, deleted)
    if commit is not None:
        yield _finish(commit, files, with_files)


def _numstat(entry: str) -> tuple[str, str, str]:
    parts = entry.split("\t", 2)
    if len(parts) != 3:
        raise GitOutputError(f"git log printed {entry[:80]!r} where a file's line counts belong")
    return parts[0], parts[1], parts[2]


async def _next(tokens: AsyncIterator[str]) -> str:
    try:
        return await anext(tokens)
    except StopAsyncIteration:
        raise GitOutputError("git log output ended in the middle of a commit") from None


def _count(files: dict[str, dict[str, Any]], path: str, old: str | None, added: str,
           deleted: str) -> None:  # fmt: skip
    # A path can be listed twice in one commit (a file turned into a symlink is shown as
    # a deletion and an addition): one entry per path, its counts summed.
    entry = files.setdefault(
        path, {"path": path, "old_path": None, "additions": 0, "deletions": 0, "binary": False}
    )
    if added == "-":  # numstat's "-\t-": a binary file, whose lines mean nothing
        entry["binary"] = True
    else:
        entry["additions"] += int(added)
        entry["deletions"] += int(deleted)
    if old is not None:
        entry["old_path"] = old


def _finish(commit: dict[str, Any], files: dict[str, dict[str, Any]],
            with_files: bool) -> dict[str, Any]:  # fmt: skip
    commit["parents"] = commit["parents"].split()
    commit["message"] = commit["message"].removesuffix("\n")  # %B ends with one of its own
    commit["additions"] = sum(f["additions"] for f in files.values())
    commit["deletions"] = sum(f["deletions"] for f in files.values())
    if with_files:
        commit["files"] = list(files.values())
    return commit


async def refs(repo: Repo) -> AsyncIterator[dict[str, Any]]:
    """Branches, tags and remote-tracking branches, each with the commit it points to."""
    lines = repo.stream("for-each-ref", f"--format={_REF_FORMAT}", *REF_PATTERNS, sep=b"\n")
    async with aclosing(lines):
        async for line in lines:
            name, kind, sha, peeled_kind, peeled, created, head, symref = line.split("\0")
            if symref:  # refs/remotes/origin/HEAD only names another ref
                continue
            commit: str | None = sha if kind == "commit" else None
            if kind == "tag" and peeled_kind == "commit":
                commit = peeled
            elif kind == "tag" and peeled_kind == "tag":  # a tag of a tag: peel it all
                commit = await _peel(repo, name)
            yield {
                "ref_name": name,
                "object_type": kind,
                "object_sha": sha,
                "commit_sha": commit,
                "created_date": created or None,
                "is_head": head == "*",
            }


async def _peel(repo: Repo, ref: str) -> str | None:
    try:
        return (await repo.run("rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}")).strip()
    except GitFailed:
        return None  # a tag of a tree or a blob


async def default_branch(repo: Repo) -> str | None:
    """The branch HEAD names (a bare clone's HEAD names the remote's default branch)."""
    try:
        return (await repo.run("symbolic-ref", "--quiet", "HEAD")).strip() or None
    except GitFailed:
        return None  # a detached HEAD
