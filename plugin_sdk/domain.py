"""The vendor-agnostic domain layer, with Apache DevLake's table and column names.

Converters emit rows for these tables; metrics (DORA's and others) read them. Ids are
DevLake's domain ids: `<plugin>:<ToolType>:<connection id>:<tool id>`, made with
`SubtaskContext.domain_id`.
"""

from __future__ import annotations

from plugin_sdk._tables import TableSpec

_dates = {"created_date": "datetime", "updated_date": "datetime"}

REPOS = TableSpec(
    "repos",
    {
        "id": "string", "name": "string", "url": "string", "description": "text",
        "owner_id": "string", "language": "string", "forked_from": "string",
        "created_date": "datetime", "updated_date": "datetime", "deleted": "bool",
    },
    ("id",),
    "code repositories",
)  # fmt: skip
COMMITS = TableSpec(
    "commits",
    {
        "sha": "string", "additions": "int", "deletions": "int", "dev_eq": "int",
        "message": "text", "author_name": "string", "author_email": "string",
        "authored_date": "datetime", "author_id": "string", "committer_name": "string",
        "committer_email": "string", "committed_date": "datetime", "committer_id": "string",
    },
    ("sha",),
    "commits, shared across repositories",
)  # fmt: skip
REPO_COMMITS = TableSpec(
    "repo_commits", {"repo_id": "string", "commit_sha": "string"}, ("repo_id", "commit_sha"),
    "which repository holds which commit",
)  # fmt: skip
COMMIT_FILES = TableSpec(
    "commit_files",
    {
        "id": "string", "commit_sha": "string", "file_path": "string",
        "additions": "int", "deletions": "int",
    },
    ("id",),
    "files a commit touched, with line counts",
)  # fmt: skip
REFS = TableSpec(
    "refs",
    {
        "id": "string", "repo_id": "string", "name": "string", "commit_sha": "string",
        "is_default": "bool", "ref_type": "string", "created_date": "datetime",
    },
    ("id",),
    "branches and tags",
)  # fmt: skip
ACCOUNTS = TableSpec(
    "accounts",
    {
        "id": "string", "email": "string", "full_name": "string", "user_name": "string",
        "avatar_url": "string", "organization": "string", "created_date": "datetime",
        "status": "int",
    },
    ("id",),
    "people, as each tool knows them",
)  # fmt: skip
ISSUES = TableSpec(
    "issues",
    {
        "id": "string", "url": "string", "issue_key": "string", "title": "text",
        "description": "text", "type": "string", "original_type": "string", "status": "string",
        "original_status": "string", "resolution_date": "datetime", "created_date": "datetime",
        "updated_date": "datetime", "lead_time_minutes": "bigint", "priority": "string",
        "creator_id": "string", "creator_name": "string", "assignee_id": "string",
        "assignee_name": "string", "component": "string",
    },
    ("id",),
    "issues of any tracker",
)  # fmt: skip
PULL_REQUESTS = TableSpec(
    "pull_requests",
    {
        "id": "string", "base_repo_id": "string", "head_repo_id": "string", "status": "string",
        "original_status": "string", "title": "text", "description": "text", "url": "string",
        "author_name": "string", "author_id": "string", "pull_request_key": "bigint",
        "created_date": "datetime", "merged_date": "datetime", "closed_date": "datetime",
        "type": "string", "merge_commit_sha": "string", "head_ref": "string",
        "base_ref": "string", "base_commit_sha": "string", "head_commit_sha": "string",
    },
    ("id",),
    "pull and merge requests",
)  # fmt: skip
PULL_REQUEST_COMMITS = TableSpec(
    "pull_request_commits",
    {
        "commit_sha": "string", "pull_request_id": "string", "commit_author_name": "string",
        "commit_author_email": "string", "commit_authored_date": "datetime",
    },
    ("commit_sha", "pull_request_id"),
    "commits of each pull request",
)  # fmt: skip
CICD_PIPELINES = TableSpec(
    "cicd_pipelines",
    {
        "id": "string", "name": "string", "result": "string", "status": "string",
        "original_status": "string", "original_result": "string", "duration_sec": "float",
        "created_date": "datetime", "finished_date": "datetime", "environment": "string",
        "type": "string", "cicd_scope_id": "string",
    },
    ("id",),
    "CI/CD pipeline runs",
)  # fmt: skip
CICD_DEPLOYMENTS = TableSpec(
    "cicd_deployments",
    {
        "id": "string", "cicd_scope_id": "string", "name": "string", "result": "string",
        "status": "string", "original_status": "string", "original_result": "string",
        "environment": "string", "original_environment": "string", "created_date": "datetime",
        "started_date": "datetime", "finished_date": "datetime", "duration_sec": "float",
    },
    ("id",),
    "deployments, the input of DORA's metrics",
)  # fmt: skip

ALL: tuple[TableSpec, ...] = (
    REPOS, COMMITS, REPO_COMMITS, COMMIT_FILES, REFS, ACCOUNTS, ISSUES, PULL_REQUESTS,
    PULL_REQUEST_COMMITS, CICD_PIPELINES, CICD_DEPLOYMENTS,
)  # fmt: skip
BY_NAME = {t.name: t for t in ALL}
