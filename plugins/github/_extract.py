"""Raw GitHub JSON into tool rows: one function per raw table, each yielding `Row`s.

Users come embedded in issues, pull requests, commits and runs; each extractor also
emits them as `accounts` rows (keyed by GitHub's user id, so the same person met twice
is one row), which is cheaper than a request per user and sees everyone who acted.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from plugin_sdk import RawRow, Row, SubtaskContext


def _get(data: Any, *path: str) -> Any:
    """data[path[0]][path[1]]..., or None where a level is missing or null."""
    for key in path:
        if not isinstance(data, Mapping):
            return None
        data = data.get(key)
    return data


def _label_names(data: Mapping[str, Any]) -> list[str]:
    return [str(label.get("name")) for label in data.get("labels") or []
            if isinstance(label, Mapping)]  # fmt: skip


def repo_id_of(raw: RawRow, ctx: SubtaskContext) -> Any:
    """The repository a raw row belongs to: collectors record it as the row's input."""
    return _get(raw.input, "repo_id") or ctx.task_data.get("repoId")


def accounts(ctx: SubtaskContext, *users: Any) -> Iterator[Row]:
    """`accounts` rows for embedded user objects, once each (a deleted user is null)."""
    seen: set[Any] = set()
    for user in users:
        if isinstance(user, Mapping) and user.get("id") is not None and user["id"] not in seen:
            seen.add(user["id"])
            yield Row("accounts", {
                "connection_id": ctx.connection_id, "id": user["id"],
                "login": user.get("login"), "name": user.get("name"),
                "avatar_url": user.get("avatar_url"), "html_url": user.get("html_url"),
                "type": user.get("type"),
            })  # fmt: skip


def repo(raw: RawRow, ctx: SubtaskContext) -> Iterator[Row]:
    d = raw.data
    yield Row("repos", {
        "connection_id": ctx.connection_id, "id": d["id"], "name": d.get("full_name"),
        "owner_id": _get(d, "owner", "id"), "owner_login": _get(d, "owner", "login"),
        "description": d.get("description"), "html_url": d.get("html_url"),
        "language": d.get("language"), "default_branch": d.get("default_branch"),
        "private": bool(d.get("private")), "parent_full_name": _get(d, "parent", "full_name"),
        "parent_html_url": _get(d, "parent", "html_url"), "created_at": d.get("created_at"),
        "updated_at": d.get("updated_at"), "pushed_at": d.get("pushed_at"),
    })  # fmt: skip
    yield from accounts(ctx, d.get("owner"))


def issue(raw: RawRow, ctx: SubtaskContext) -> Iterator[Row]:
    d = raw.data
    if "pull_request" in d:
        return  # GitHub lists pull requests among issues; they come from the pulls API
    yield Row("issues", {
        "connection_id": ctx.connection_id, "id": d["id"], "repo_id": repo_id_of(raw, ctx),
        "number": d.get("number"), "title": d.get("title"), "body": d.get("body"),
        "state": d.get("state"), "state_reason": d.get("state_reason"),
        "labels": _label_names(d), "html_url": d.get("html_url"),
        "user_id": _get(d, "user", "id"), "user_login": _get(d, "user", "login"),
        "assignee_id": _get(d, "assignee", "id"),
        "assignee_login": _get(d, "assignee", "login"), "comments": d.get("comments"),
        "created_at": d.get("created_at"), "updated_at": d.get("updated_at"),
        "closed_at": d.get("closed_at"),
    })  # fmt: skip
    yield from accounts(ctx, d.get("user"), d.get("assignee"), *(d.get("assignees") or ()))


def pull_request(raw: RawRow, ctx: SubtaskContext) -> Iterator[Row]:
    d = raw.data
    yield Row("pull_requests", {
        "connection_id": ctx.connection_id, "id": d["id"],
        "repo_id": _get(d, "base", "repo", "id") or repo_id_of(raw, ctx),
        "number": d.get("number"), "state": d.get("state"), "title": d.get("title"),
        "body": d.get("body"), "html_url": d.get("html_url"), "draft": bool(d.get("draft")),
        "labels": _label_names(d), "author_id": _get(d, "user", "id"),
        "author_login": _get(d, "user", "login"), "merged_at": d.get("merged_at"),
        "merge_commit_sha": d.get("merge_commit_sha"), "head_ref": _get(d, "head", "ref"),
        "base_ref": _get(d, "base", "ref"), "head_sha": _get(d, "head", "sha"),
        "base_sha": _get(d, "base", "sha"),
        # A fork deleted since the pull request was opened leaves head.repo null.
        "head_repo_id": _get(d, "head", "repo", "id"),
        "base_repo_id": _get(d, "base", "repo", "id") or repo_id_of(raw, ctx),
        "created_at": d.get("created_at"), "updated_at": d.get("updated_at"),
        "closed_at": d.get("closed_at"),
    })  # fmt: skip
    yield from accounts(ctx, d.get("user"))


def pull_request_commit(raw: RawRow, ctx: SubtaskContext) -> Iterator[Row]:
    d = raw.data
    yield Row("pull_request_commits", {
        "connection_id": ctx.connection_id,
        "pull_request_id": _get(raw.input, "pull_request_id"), "commit_sha": d["sha"],
        "pull_request_number": _get(raw.input, "number"),
        "message": _get(d, "commit", "message"),
        "author_name": _get(d, "commit", "author", "name"),
        "author_email": _get(d, "commit", "author", "email"),
        "authored_date": _get(d, "commit", "author", "date"),
    })  # fmt: skip


def commit(raw: RawRow, ctx: SubtaskContext) -> Iterator[Row]:
    d = raw.data
    git = d.get("commit") or {}
    yield Row("commits", {
        "connection_id": ctx.connection_id, "repo_id": repo_id_of(raw, ctx), "sha": d["sha"],
        "message": git.get("message"), "author_name": _get(git, "author", "name"),
        "author_email": _get(git, "author", "email"),
        "authored_date": _get(git, "author", "date"),
        # The GitHub users behind the emails, when GitHub could match them.
        "author_id": _get(d, "author", "id"), "author_login": _get(d, "author", "login"),
        "committer_name": _get(git, "committer", "name"),
        "committer_email": _get(git, "committer", "email"),
        "committed_date": _get(git, "committer", "date"),
        "committer_id": _get(d, "committer", "id"),
        "committer_login": _get(d, "committer", "login"), "html_url": d.get("html_url"),
    })  # fmt: skip
    yield from accounts(ctx, d.get("author"), d.get("committer"))


def run(raw: RawRow, ctx: SubtaskContext) -> Iterator[Row]:
    d = raw.data
    yield Row("runs", {
        "connection_id": ctx.connection_id, "id": d["id"],
        "repo_id": _get(d, "repository", "id") or repo_id_of(raw, ctx), "name": d.get("name"),
        "head_branch": d.get("head_branch"), "head_sha": d.get("head_sha"),
        "status": d.get("status"), "conclusion": d.get("conclusion"), "event": d.get("event"),
        "run_number": d.get("run_number"), "run_attempt": d.get("run_attempt"),
        "workflow_id": d.get("workflow_id"), "html_url": d.get("html_url"),
        "created_at": d.get("created_at"), "updated_at": d.get("updated_at"),
        "run_started_at": d.get("run_started_at"),
    })  # fmt: skip
    yield from accounts(ctx, d.get("actor"), d.get("triggering_actor"))
