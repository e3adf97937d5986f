"""The gitextractor plugin: a git repository's commits, files and refs into the domain layer.

DevLake's gitextractor, out of process and without libgit2: the real `git` binary is
run as a subprocess and its output parsed while it streams, so a repository of any size
is read in constant memory. Collectors write one raw row per repository, commit and ref;
extractors turn those into `_tool_gitextractor_*` rows keyed by the repository id;
converters write the domain tables `repos`, `commits`, `repo_commits`, `commit_files`,
`refs` and `accounts`.
"""

from __future__ import annotations

import datetime
import hashlib
import os
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from plugin_sdk import (
    ApiRequest,
    ApiResponse,
    InvalidOptions,
    Plugin,
    PluginError,
    Raw,
    RawRow,
    Row,
    SubtaskContext,
    TableSpec,
    collector,
    converter,
    extractor,
)
from plugins.gitextractor import _history
from plugins.gitextractor._git import GitFailed, Repo
from plugins.gitextractor._history import GitOutputError
from plugins.gitextractor._source import Clones, Target, count_refs

DEFAULT_BATCH_SIZE = 500  # the SDK's default too: a checkpoint per batch of commits
CODE, CROSS = ["CODE"], ["CROSS"]


def _tool(name: str, columns: dict[str, str], key: tuple[str, ...], about: str) -> TableSpec:
    return TableSpec(name, {"repo_id": "string", **columns}, ("repo_id", *key), about)


TOOL_TABLES = [
    _tool("repos", {"name": "string", "url": "text", "default_branch": "string"}, (),
          "the repository read"),
    _tool("commits", {
        "sha": "string", "parents": "json", "message": "text",
        "author_name": "string", "author_email": "string", "authored_date": "datetime",
        "committer_name": "string", "committer_email": "string", "committed_date": "datetime",
        "additions": "int", "deletions": "int",
    }, ("sha",), "one row per commit; line counts summed over its files"),
    # Keyed by a hash of (commit, path): a path can be longer than a key column may be.
    _tool("commit_files", {
        "id": "string", "commit_sha": "string", "file_path": "text", "old_path": "text",
        "additions": "int", "deletions": "int", "binary": "bool",
    }, ("id",), "files a commit changed; a rename under its new path, with the old one"),
    _tool("refs", {
        "ref_name": "string", "name": "string", "ref_type": "string", "commit_sha": "string",
        "object_sha": "string", "is_default": "bool", "created_date": "datetime",
    }, ("ref_name",), "branches and tags with the commit each points to"),
]  # fmt: skip


class GitExtractor(Plugin):
    name = "gitextractor"
    version = "0.1.0"
    description = "A git repository's commits, files and refs into the domain layer, via git."
    root_package_path = "plugins.gitextractor"
    options_schema = {
        "type": "object",
        "additionalProperties": False,
        "required": ["url"],
        "properties": {
            "url": {"type": "string", "minLength": 1, "description":
                    "a local repository (read in place) or a git URL: https://, http://, "
                    "ssh://, git://, file:// or user@host:path (cloned)"},
            "repoId": {"type": "string", "default": "", "description":
                       "the domain repo id; empty: gitextractor:GitRepo:<connection>:<url>"},
            "name": {"type": "string", "default": "",
                     "description": "the repository's name; empty: the URL's last part"},
            "proxy": {"type": "string", "default": "",
                      "description": "an HTTP proxy for http(s) URLs"},
            "skipCommitFiles": {"type": "boolean", "default": False, "description":
                                "write no commit_files rows (commits keep their line counts)"},
            "batchSize": {"type": "integer", "minimum": 1, "default": DEFAULT_BATCH_SIZE,
                          "description": "records per batch, and commits per checkpoint"},
        },
    }  # fmt: skip
    tables = TOOL_TABLES

    def __init__(self) -> None:
        self._clones = Clones()

    # -- the task ------------------------------------------------------------------------
    async def prepare_task_data(
        self, options: Mapping[str, Any], connection: Mapping[str, Any]
    ) -> dict[str, Any]:
        """Resolve the repository (cloning or refreshing a remote one) and the raw params."""
        errors = await self.validate(options)
        if errors:
            raise InvalidOptions("invalid options: " + "; ".join(errors), plugin=self.name)
        target = Target.from_options(options, connection, self.name)
        repo = await self._clones.repo(target, refresh=True)
        return {
            **options,
            "repoId": target.repo_id,
            "name": target.name,
            "params": target.params,
            "path": str(repo.git_dir),
        }

    def _target(self, ctx: SubtaskContext) -> Target:
        return Target.from_options({**ctx.options, **ctx.task_data}, ctx.connection, self.name)

    async def _open(self, ctx: SubtaskContext) -> tuple[Target, Repo]:
        target = self._target(ctx)
        path = ctx.task_data.get("path")
        if isinstance(path, str) and path and os.path.isdir(path):
            return target, Repo(Path(path))
        # Another replica prepared the task, or this process restarted: clone again.
        return target, await self._clones.repo(target, refresh=False)

    # -- collectors ----------------------------------------------------------------------
    @collector(entity="repos", domain_types=CODE)
    async def collect_repos(self, ctx: SubtaskContext) -> AsyncIterator[Raw]:
        """Collect the repository itself: its id, name, URL and default branch."""
        target, repo = await self._open(ctx)
        with _reading(target):
            head = await _history.default_branch(repo)
        yield Raw({"repo_id": target.repo_id, "name": target.name, "url": target.url,
                   "default_branch": head}, url=target.url)  # fmt: skip

    @collector(entity="commits", domain_types=CODE)
    async def collect_commits(self, ctx: SubtaskContext) -> AsyncIterator[Raw]:
        """Collect every commit, oldest first, with its per-file line counts.

        Every batchSize commits it checkpoints {"sha": the last commit yielded}. A resumed
        run finds that commit's place with `git rev-list` (no diffs computed, so cheap) and
        has `git log` diff only the commits after it; the SDK then drops the records the
        interrupted run committed after the checkpoint (its skip count). The position is
        looked up by sha rather than trusted as a number because the resumed run may read
        a refreshed clone: new commits are found, and a rewritten history is an error
        rather than silently shifted rows.
        """
        target, repo = await self._open(ctx)
        every = int(ctx.options.get("batchSize") or DEFAULT_BATCH_SIZE)
        resume = ctx.checkpoint.get("sha") if isinstance(ctx.checkpoint, Mapping) else None
        with _reading(target):
            tips = await _history.tips(repo)
            total = await _history.count(repo, tips)
            done, newest = 0, None
            if resume:
                found = await _history.position(repo, tips, str(resume))
                if found is None:
                    raise PluginError(
                        f"cannot resume reading {target.url}: commit {resume}, where the "
                        "interrupted run stopped, is no longer in its history (rewritten?); "
                        "rerun the task from the start",
                        plugin=self.name,
                    )
                done, newest = found, total - found
            ctx.progress(done, total)
            commits = _history.commits(
                repo, tips, newest=newest, with_files=not target.skip_commit_files
            )
            async for commit in commits:
                yield Raw(commit, url=target.url)
                done += 1
                if done % every == 0:
                    ctx.checkpoint_here({"sha": commit["sha"]})
                    ctx.progress(done, total)
            ctx.progress(done, total)

    @collector(entity="refs", domain_types=CODE)
    async def collect_refs(self, ctx: SubtaskContext) -> AsyncIterator[Raw]:
        """Collect branches and tags with the commit each points to (`git for-each-ref`)."""
        target, repo = await self._open(ctx)
        with _reading(target):
            async for ref in _history.refs(repo):
                yield Raw(ref, url=target.url)

    # -- extractors ----------------------------------------------------------------------
    def _repo_id(self, ctx: SubtaskContext) -> str:
        return str(ctx.task_data.get("repoId") or self._target(ctx).repo_id)

    @extractor(raw="repos", tables=["repos"], domain_types=CODE, dependencies=["collect_repos"])
    def extract_repos(self, raw: RawRow, ctx: SubtaskContext) -> Iterator[dict[str, Any]]:
        """Extract the repository."""
        data, head = raw.data, raw.data["default_branch"]
        yield {"repo_id": data["repo_id"], "name": data["name"], "url": data["url"],
               "default_branch": _ref_kind(head)[1] if head else None}  # fmt: skip

    @extractor(raw="commits", tables=["commits", "commit_files"], domain_types=CODE,
               dependencies=["collect_commits"])  # fmt: skip
    def extract_commits(self, raw: RawRow, ctx: SubtaskContext) -> Iterator[Row]:
        """Extract commits and the files each changed."""
        repo_id, c = self._repo_id(ctx), raw.data
        yield Row("commits", {
            "repo_id": repo_id, "sha": c["sha"], "parents": c["parents"],
            "message": c["message"], "author_name": c["author_name"],
            "author_email": c["author_email"], "authored_date": _utc(c["authored_date"]),
            "committer_name": c["committer_name"], "committer_email": c["committer_email"],
            "committed_date": _utc(c["committed_date"]),
            "additions": c["additions"], "deletions": c["deletions"],
        })  # fmt: skip
        for f in c.get("files") or ():  # absent when collected with skipCommitFiles
            yield Row("commit_files", {
                "repo_id": repo_id, "id": _file_id(c["sha"], f["path"]), "commit_sha": c["sha"],
                "file_path": f["path"], "old_path": f["old_path"],
                "additions": f["additions"], "deletions": f["deletions"], "binary": f["binary"],
            })  # fmt: skip

    @extractor(raw="refs", tables=["refs"], domain_types=CODE, dependencies=["collect_refs"])
    def extract_refs(self, raw: RawRow, ctx: SubtaskContext) -> Iterator[dict[str, Any]]:
        """Extract branches and tags."""
        r = raw.data
        kind, short = _ref_kind(r["ref_name"])
        yield {
            "repo_id": self._repo_id(ctx), "ref_name": r["ref_name"], "name": short,
            "ref_type": kind, "commit_sha": r["commit_sha"], "object_sha": r["object_sha"],
            "is_default": r["is_head"], "created_date": _utc(r["created_date"]),
        }  # fmt: skip

    # -- converters ----------------------------------------------------------------------
    @converter(tool="repos", tables=["repos"], domain_types=CODE, dependencies=["extract_repos"])
    def convert_repos(
        self, row: Mapping[str, Any], ctx: SubtaskContext
    ) -> Iterator[dict[str, Any]]:
        """Convert the repository into the domain's repos."""
        yield {"id": row["repo_id"], "name": row["name"], "url": row["url"], "deleted": False}

    @converter(tool="commits", tables=["commits", "repo_commits", "accounts"],
               domain_types=[*CODE, *CROSS], dependencies=["extract_commits"])  # fmt: skip
    def convert_commits(self, row: Mapping[str, Any], ctx: SubtaskContext) -> Iterator[Row]:
        """Convert commits into commits, repo_commits and the accounts of their authors."""
        author = ctx.domain_id("GitAccount", row["author_email"])
        committer = ctx.domain_id("GitAccount", row["committer_email"])
        yield Row("commits", {
            "sha": row["sha"], "additions": row["additions"], "deletions": row["deletions"],
            "dev_eq": 0, "message": row["message"],
            "author_name": row["author_name"], "author_email": row["author_email"],
            "authored_date": row["authored_date"], "author_id": author,
            "committer_name": row["committer_name"], "committer_email": row["committer_email"],
            "committed_date": row["committed_date"], "committer_id": committer,
        })  # fmt: skip
        yield Row("repo_commits", {"repo_id": row["repo_id"], "commit_sha": row["sha"]})
        # One account per email. The same account comes with many commits: the core keeps
        # one row per key in a batch and upserts across batches.
        yield Row("accounts", {"id": author, "email": row["author_email"],
                               "full_name": row["author_name"]})  # fmt: skip
        if committer != author:
            yield Row("accounts", {"id": committer, "email": row["committer_email"],
                                   "full_name": row["committer_name"]})  # fmt: skip

    @converter(tool="commit_files", tables=["commit_files"], domain_types=CODE,
               dependencies=["extract_commits"])  # fmt: skip
    def convert_commit_files(
        self, row: Mapping[str, Any], ctx: SubtaskContext
    ) -> Iterator[dict[str, Any]]:
        """Convert the files of commits into commit_files."""
        yield {"id": row["id"], "commit_sha": row["commit_sha"], "file_path": row["file_path"],
               "additions": row["additions"], "deletions": row["deletions"]}  # fmt: skip

    @converter(tool="refs", tables=["refs"], domain_types=CODE, dependencies=["extract_refs"])
    def convert_refs(self, row: Mapping[str, Any], ctx: SubtaskContext) -> Iterator[dict[str, Any]]:
        """Convert branches and tags into refs."""
        yield {
            "id": f"{row['repo_id']}:{row['ref_name']}", "repo_id": row["repo_id"],
            "name": row["name"], "commit_sha": row["commit_sha"],
            "is_default": bool(row["is_default"]), "ref_type": row["ref_type"],
            "created_date": row["created_date"],
        }  # fmt: skip

    # -- the plugin's API ----------------------------------------------------------------
    async def handle_api(self, request: ApiRequest) -> ApiResponse:
        """POST /test-connection {"url": ..., "proxy"?: ...}: can git list its refs?"""
        if (request.method, request.path.strip("/")) != ("POST", "test-connection"):
            return ApiResponse(404, {"message": f"no endpoint {request.method} {request.path}"})
        body = request.body if isinstance(request.body, Mapping) else {}
        if not str(body.get("url") or "").strip():
            return ApiResponse(400, {"ok": False, "message": "the body needs a `url`"})
        try:
            target = Target.from_options(body, request.connection or {}, self.name)
            refs = await count_refs(target)
        except PluginError as exc:
            return ApiResponse(400, {"ok": False, "message": exc.message})
        return ApiResponse(
            200, {"ok": True, "refs": refs, "message": f"{refs} refs at {target.url}"}
        )


@contextmanager
def _reading(target: Target) -> Iterator[None]:
    """git failing mid-read becomes an error naming the repository."""
    try:
        yield
    except (GitFailed, GitOutputError) as exc:
        raise PluginError(f"cannot read {target.url}: {exc}") from exc


def _utc(value: str | None) -> str | None:
    """An ISO 8601 date with an offset, in UTC (git gives each in its author's zone)."""
    if not value:
        return None
    return datetime.datetime.fromisoformat(value).astimezone(datetime.UTC).isoformat()


def _file_id(sha: str, path: str) -> str:
    """commit_files' id: a hash of "<sha>:<path>", as a path may be too long for a key."""
    return hashlib.sha256(f"{sha}:{path}".encode()).hexdigest()


_REF_PREFIXES = (("refs/heads/", "BRANCH"), ("refs/tags/", "TAG"), ("refs/remotes/", "BRANCH"))


def _ref_kind(ref: str) -> tuple[str, str]:
    """(ref_type, short name): refs/tags/v1 is TAG v1; refs/remotes/origin/x is BRANCH origin/x."""
    for prefix, kind in _REF_PREFIXES:
        if ref.startswith(prefix):
            return kind, ref.removeprefix(prefix)
    return "BRANCH", ref
