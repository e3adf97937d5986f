"""Tool rows into DevLake's domain layer (plugin_sdk.domain), with DevLake's ids and values.

Domain ids are `github:<ToolType>:<connection id>:<GitHub id>` (ctx.domain_id), so a row
converted twice lands on itself, and rows of other tables can point at it before it exists.
Every row carries every column of its domain table: a converter that ran again after an
upstream change must overwrite what it wrote, not leave stale columns behind.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any

from plugin_sdk import Row, SubtaskContext
from plugins.github._options import Settings, seconds_between

# DevLake's issue type from labels (its GitHub scope config's defaults, in spirit).
_ISSUE_TYPES = (
    ("BUG", re.compile(r"(?i)\bbug")),
    ("INCIDENT", re.compile(r"(?i)incident")),
    ("REQUIREMENT", re.compile(r"(?i)feature|enhancement|requirement")),
)
# Actions conclusions in DevLake's result vocabulary; others (skipped, neutral, stale, none
# while running) have no equivalent and stay "".
_RESULTS = {
    "success": "SUCCESS",
    "failure": "FAILURE",
    "timed_out": "FAILURE",
    "startup_failure": "FAILURE",
    "cancelled": "ABORT",
    "action_required": "MANUAL",
}
_STAGING = re.compile(r"(?i)stag")


def _id(ctx: SubtaskContext, tool_type: str, value: Any) -> str | None:
    """A domain id, or None where the tool row has no id to point at."""
    return ctx.domain_id(tool_type, value) if value is not None else None


def repo_id(ctx: SubtaskContext, value: Any) -> str | None:
    return _id(ctx, "GithubRepo", value)


def account_id(ctx: SubtaskContext, value: Any) -> str | None:
    return _id(ctx, "GithubAccount", value)


def repo(row: Mapping[str, Any], ctx: SubtaskContext) -> Iterator[dict[str, Any]]:
    yield {
        "id": repo_id(ctx, row["id"]), "name": row.get("name"), "url": row.get("html_url"),
        "description": row.get("description"), "owner_id": account_id(ctx, row.get("owner_id")),
        "language": row.get("language"), "forked_from": row.get("parent_html_url"),
        "created_date": row.get("created_at"), "updated_date": row.get("updated_at"),
        "deleted": False,
    }  # fmt: skip


def account(row: Mapping[str, Any], ctx: SubtaskContext) -> Iterator[dict[str, Any]]:
    yield {
        "id": account_id(ctx, row["id"]), "email": None, "full_name": row.get("name"),
        "user_name": row.get("login"), "avatar_url": row.get("avatar_url"),
        "organization": None, "created_date": None, "status": 0,
    }  # fmt: skip


def _issue_type(labels: Any) -> tuple[str, str | None]:
    """(DevLake type, the label it came from) for an issue's label names."""
    names = [str(n) for n in labels] if isinstance(labels, list) else []
    for std, pattern in _ISSUE_TYPES:
        for name in names:
            if pattern.search(name):
                return std, name
    return "", None


def issue_status(row: Mapping[str, Any]) -> str:
    """TODO, IN_PROGRESS or DONE. GitHub has only open/closed: an open issue someone is
    assigned to counts as being worked on."""
    if row.get("state") == "closed":
        return "DONE"
    return "IN_PROGRESS" if row.get("assignee_id") is not None else "TODO"


def issue(row: Mapping[str, Any], ctx: SubtaskContext) -> Iterator[dict[str, Any]]:
    std_type, label = _issue_type(row.get("labels"))
    closed = row.get("state") == "closed"
    lead = seconds_between(row.get("created_at"), row.get("closed_at")) if closed else None
    yield {
        "id": _id(ctx, "GithubIssue", row["id"]), "url": row.get("html_url"),
        "issue_key": str(row.get("number")), "title": row.get("title"),
        "description": row.get("body"), "type": std_type, "original_type": label,
        "status": issue_status(row), "original_status": row.get("state"),
        "resolution_date": row.get("closed_at") if closed else None,
        "created_date": row.get("created_at"), "updated_date": row.get("updated_at"),
        "lead_time_minutes": int(lead // 60) if lead is not None else None,
        "priority": None, "creator_id": account_id(ctx, row.get("user_id")),
        "creator_name": row.get("user_login"),
        "assignee_id": account_id(ctx, row.get("assignee_id")),
        "assignee_name": row.get("assignee_login"), "component": None,
    }  # fmt: skip


def pr_status(row: Mapping[str, Any]) -> str:
    if row.get("merged_at"):
        return "MERGED"
    return "CLOSED" if row.get("state") == "closed" else "OPEN"


def pull_request(row: Mapping[str, Any], ctx: SubtaskContext) -> Iterator[dict[str, Any]]:
    yield {
        "id": _id(ctx, "GithubPullRequest", row["id"]),
        "base_repo_id": repo_id(ctx, row.get("base_repo_id")),
        "head_repo_id": repo_id(ctx, row.get("head_repo_id")),
        "status": pr_status(row), "original_status": row.get("state"),
        "title": row.get("title"), "description": row.get("body"), "url": row.get("html_url"),
        "author_name": row.get("author_login"),
        "author_id": account_id(ctx, row.get("author_id")),
        "pull_request_key": row.get("number"), "created_date": row.get("created_at"),
        "merged_date": row.get("merged_at"), "closed_date": row.get("closed_at"),
        "type": None, "merge_commit_sha": row.get("merge_commit_sha"),
        "head_ref": row.get("head_ref"), "base_ref": row.get("base_ref"),
        "base_commit_sha": row.get("base_sha"), "head_commit_sha": row.get("head_sha"),
    }  # fmt: skip


def pull_request_commit(row: Mapping[str, Any], ctx: SubtaskContext) -> Iterator[dict[str, Any]]:
    yield {
        "commit_sha": row["commit_sha"],
        "pull_request_id": _id(ctx, "GithubPullRequest", row.get("pull_request_id")),
        "commit_author_name": row.get("author_name"),
        "commit_author_email": row.get("author_email"),
        "commit_authored_date": row.get("authored_date"),
    }


def commit(row: Mapping[str, Any], ctx: SubtaskContext) -> Iterator[Row]:
    # DevLake's GitHub commits name people by email (as gitextractor does), so a commit
    # counts for the same author whichever plugin collected it.
    yield Row("commits", {
        "sha": row["sha"], "additions": None, "deletions": None, "dev_eq": None,
        "message": row.get("message"), "author_name": row.get("author_name"),
        "author_email": row.get("author_email"), "authored_date": row.get("authored_date"),
        "author_id": row.get("author_email"), "committer_name": row.get("committer_name"),
        "committer_email": row.get("committer_email"),
        "committed_date": row.get("committed_date"), "committer_id": row.get("committer_email"),
    })  # fmt: skip
    yield Row("repo_commits", {"repo_id": repo_id(ctx, row.get("repo_id")),
                               "commit_sha": row["sha"]})  # fmt: skip


def run_result(row: Mapping[str, Any]) -> str:
    return _RESULTS.get(str(row.get("conclusion") or ""), "")


def run_status(row: Mapping[str, Any]) -> str:
    return "DONE" if row.get("status") == "completed" else "IN_PROGRESS"


def _run_times(row: Mapping[str, Any]) -> tuple[str | None, str | None, float | None]:
    """(started, finished, duration in seconds): a run is over when its status is completed,
    and its last update is then when it ended; a re-run starts at run_started_at."""
    started = row.get("run_started_at") or row.get("created_at")
    if run_status(row) != "DONE":
        return started, None, None
    finished = row.get("updated_at")
    duration = seconds_between(started, finished)
    return started, finished, max(duration, 0.0) if duration is not None else None


def is_deployment(row: Mapping[str, Any], s: Settings) -> bool:
    return bool(s.deployment.search(str(row.get("name") or "")))


def environment(row: Mapping[str, Any], s: Settings) -> str:
    """PRODUCTION when the run's name or branch matches productionPattern; else STAGING when
    either mentions staging; else TESTING (deployed, but not where users are)."""
    texts = [str(row.get("name") or ""), str(row.get("head_branch") or "")]
    if any(s.production.search(t) for t in texts):
        return "PRODUCTION"
    if any(_STAGING.search(t) for t in texts):
        return "STAGING"
    return "TESTING"


def pipeline(row: Mapping[str, Any], ctx: SubtaskContext, s: Settings) -> Iterator[dict[str, Any]]:
    _, finished, duration = _run_times(row)
    deployment = is_deployment(row, s)
    yield {
        "id": _id(ctx, "GithubRun", row["id"]), "name": row.get("name"),
        "result": run_result(row), "status": run_status(row),
        "original_status": row.get("status"), "original_result": row.get("conclusion"),
        "duration_sec": duration, "created_date": row.get("created_at"),
        "finished_date": finished, "environment": environment(row, s) if deployment else None,
        "type": "DEPLOYMENT" if deployment else None,
        "cicd_scope_id": repo_id(ctx, row.get("repo_id")),
    }  # fmt: skip


def deployment(
    row: Mapping[str, Any], ctx: SubtaskContext, s: Settings
) -> Iterator[dict[str, Any]]:
    if not is_deployment(row, s):
        return
    started, finished, duration = _run_times(row)
    yield {
        "id": _id(ctx, "GithubRun", row["id"]),
        "cicd_scope_id": repo_id(ctx, row.get("repo_id")), "name": row.get("name"),
        "result": run_result(row), "status": run_status(row),
        "original_status": row.get("status"), "original_result": row.get("conclusion"),
        "environment": environment(row, s),
        # GitHub runs name no environment: the branch is what the environment came from.
        "original_environment": row.get("head_branch"),
        "created_date": row.get("created_at"), "started_date": started,
        "finished_date": finished, "duration_sec": duration,
    }  # fmt: skip
