"""The github plugin's tool tables (`_tool_github_<name>`), after DevLake's GitHub models.

Every table is keyed with `connection_id` first: two connections may point at two GitHub
servers (github.com and an Enterprise host) whose ids collide. Times are kept as GitHub
prints them (ISO 8601, UTC); ids are GitHub's numeric ids, so a row survives a rename.
"""

from __future__ import annotations

from plugin_sdk import TableSpec

REPOS = TableSpec(
    "repos",
    {
        "connection_id": "bigint", "id": "bigint", "name": "string", "owner_id": "bigint",
        "owner_login": "string", "description": "text", "html_url": "string",
        "language": "string", "default_branch": "string", "private": "bool",
        "parent_full_name": "string", "parent_html_url": "string",
        "created_at": "datetime", "updated_at": "datetime", "pushed_at": "datetime",
    },
    ("connection_id", "id"),
    "repositories (one per collected scope)",
)  # fmt: skip
ISSUES = TableSpec(
    "issues",
    {
        "connection_id": "bigint", "id": "bigint", "repo_id": "bigint", "number": "int",
        "title": "text", "body": "text", "state": "string", "state_reason": "string",
        "labels": "json", "html_url": "string", "user_id": "bigint", "user_login": "string",
        "assignee_id": "bigint", "assignee_login": "string", "comments": "int",
        "created_at": "datetime", "updated_at": "datetime", "closed_at": "datetime",
    },
    ("connection_id", "id"),
    "issues (pull requests, which GitHub lists among issues, left out)",
)  # fmt: skip
PULL_REQUESTS = TableSpec(
    "pull_requests",
    {
        "connection_id": "bigint", "id": "bigint", "repo_id": "bigint", "number": "int",
        "state": "string", "title": "text", "body": "text", "html_url": "string",
        "draft": "bool", "labels": "json", "author_id": "bigint", "author_login": "string",
        "merged_at": "datetime", "merge_commit_sha": "string", "head_ref": "string",
        "base_ref": "string", "head_sha": "string", "base_sha": "string",
        "head_repo_id": "bigint", "base_repo_id": "bigint", "created_at": "datetime",
        "updated_at": "datetime", "closed_at": "datetime",
    },
    ("connection_id", "id"),
    "pull requests",
)  # fmt: skip
PULL_REQUEST_COMMITS = TableSpec(
    "pull_request_commits",
    {
        "connection_id": "bigint", "pull_request_id": "bigint", "commit_sha": "string",
        "pull_request_number": "int", "message": "text", "author_name": "string",
        "author_email": "string", "authored_date": "datetime",
    },
    ("connection_id", "pull_request_id", "commit_sha"),
    "the commits of each pull request (GitHub lists at most 250 per pull request)",
)  # fmt: skip
COMMITS = TableSpec(
    "commits",
    {
        "connection_id": "bigint", "repo_id": "bigint", "sha": "string", "message": "text",
        "author_name": "string", "author_email": "string", "authored_date": "datetime",
        "author_id": "bigint", "author_login": "string", "committer_name": "string",
        "committer_email": "string", "committed_date": "datetime", "committer_id": "bigint",
        "committer_login": "string", "html_url": "string",
    },
    ("connection_id", "repo_id", "sha"),
    "commits of the default branch, per repository",
)  # fmt: skip
RUNS = TableSpec(
    "runs",
    {
        "connection_id": "bigint", "id": "bigint", "repo_id": "bigint", "name": "string",
        "head_branch": "string", "head_sha": "string", "status": "string",
        "conclusion": "string", "event": "string", "run_number": "int",
        "run_attempt": "int", "workflow_id": "bigint", "html_url": "string",
        "created_at": "datetime", "updated_at": "datetime", "run_started_at": "datetime",
    },
    ("connection_id", "id"),
    "GitHub Actions workflow runs",
)  # fmt: skip
ACCOUNTS = TableSpec(
    "accounts",
    {
        "connection_id": "bigint", "id": "bigint", "login": "string", "name": "string",
        "avatar_url": "string", "html_url": "string", "type": "string",
    },
    ("connection_id", "id"),
    "users met in repositories, issues, pull requests, commits and runs",
)  # fmt: skip

ALL: tuple[TableSpec, ...] = (
    REPOS, ISSUES, PULL_REQUESTS, PULL_REQUEST_COMMITS, COMMITS, RUNS, ACCOUNTS,
)  # fmt: skip
