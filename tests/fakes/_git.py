"""A tiny in-memory git: branches, commits holding whole-tree snapshots, blob and tree shas."""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from tests.fakes._server import now_iso

_counter = itertools.count(1)


def blob_sha(content: bytes) -> str:
    """The sha git gives a blob: sha1 of "blob <len>\\0<content>"."""
    return hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()


def encode_files(files: Mapping[str, str | bytes | None]) -> dict[str, bytes | None]:
    """Text as UTF-8 bytes; None (a deletion) kept."""
    return {p: d.encode() if isinstance(d, str) else d for p, d in files.items()}


@dataclass
class Commit:
    sha: str
    message: str
    author_name: str
    author_email: str
    date: str  # ISO 8601, UTC
    parents: list[str]
    files: dict[str, bytes]  # the whole tree at this commit
    extra: dict[str, Any] = field(default_factory=dict)  # what a fake adds (a login...)

    @property
    def tree_sha(self) -> str:
        return tree_sha(self.files, "")


def tree_sha(files: Mapping[str, bytes], prefix: str) -> str:
    entries = sorted(
        f"{path}:{blob_sha(data)}" for path, data in files.items() if path.startswith(prefix)
    )
    return hashlib.sha1(("tree " + prefix + "\n" + "\n".join(entries)).encode()).hexdigest()


class Git:
    """One repository. Commits are never garbage collected, as in a real forge."""

    def __init__(self, default_branch: str = "main") -> None:
        self.default_branch = default_branch
        self.branches: dict[str, str] = {}  # name -> head sha
        self.commits: dict[str, Commit] = {}

    @property
    def empty(self) -> bool:
        return not self.branches

    def resolve(self, ref: str | None) -> Commit | None:
        """A branch name, a full or abbreviated (>= 7) commit sha, or None for the default."""
        ref = ref or self.default_branch
        ref = ref.removeprefix("refs/heads/")
        if ref in self.branches:
            return self.commits[self.branches[ref]]
        if ref in self.commits:
            return self.commits[ref]
        if len(ref) >= 7:
            found = [c for sha, c in self.commits.items() if sha.startswith(ref)]
            if len(found) == 1:
                return found[0]
        return None

    def commit(
        self,
        branch: str,
        changes: Mapping[str, bytes | None],
        message: str,
        *,
        author: tuple[str, str] = ("DevStream Bot", "bot@devstream.invalid"),
        date: str | None = None,
        start: str | None = None,
        **extra: Any,
    ) -> Commit:
        """Commit `changes` (None deletes a path) on `branch`, creating it from `start`."""
        if branch in self.branches:
            parent = self.resolve(branch)
        else:  # a new branch starts from `start`, else from the default branch, else empty
            parent = self.resolve(start) if start is not None else self.resolve(None)
        files = dict(parent.files) if parent else {}
        for path, data in changes.items():
            if data is None:
                files.pop(path, None)
            else:
                files[path] = data
        date = date or now_iso()
        parents = [parent.sha] if parent else []
        seed = f"{parents}\n{message}\n{date}\n{next(_counter)}"
        sha = hashlib.sha1(seed.encode()).hexdigest()
        commit = Commit(sha, message, author[0], author[1], date, parents, files, dict(extra))
        self.commits[sha] = commit
        self.branches[branch] = sha
        return commit

    def log(self, ref: str | None = None) -> list[Commit]:
        """Commits reachable from `ref` by first parents, newest first."""
        out: list[Commit] = []
        commit = self.resolve(ref)
        while commit is not None:
            out.append(commit)
            commit = self.commits[commit.parents[0]] if commit.parents else None
        return out

    def last_commit_for(self, path: str, ref: str | None = None) -> Commit | None:
        """The newest commit on `ref` that changed `path`."""
        history = self.log(ref)
        for commit, older in itertools.zip_longest(history, history[1:]):
            before = older.files.get(path) if older else None
            if commit.files.get(path) != before:
                return commit
        return None

    def tree(self, commit: Commit, *, recursive: bool, path: str = "") -> list[dict[str, Any]]:
        """Entries under `path` as (type, path, sha, size): blobs and the directories above them."""
        prefix = f"{path.strip('/')}/" if path.strip("/") else ""
        entries: dict[str, dict[str, Any]] = {}
        for name, data in sorted(commit.files.items()):
            if not name.startswith(prefix):
                continue
            parts = name[len(prefix) :].split("/")
            for depth in range(1, len(parts)):
                sub = prefix + "/".join(parts[:depth])
                if recursive or depth == 1:
                    sha = tree_sha(commit.files, sub + "/")
                    entries.setdefault(sub, {"type": "tree", "path": sub, "sha": sha})
            if recursive or len(parts) == 1:
                entries[name] = {
                    "type": "blob",
                    "path": name,
                    "sha": blob_sha(data),
                    "size": len(data),
                }
        return [entries[key] for key in sorted(entries)]

    def is_dir(self, commit: Commit, path: str) -> bool:
        prefix = path.strip("/") + "/"
        return any(name.startswith(prefix) for name in commit.files)
