"""benchlake: GitHub-shaped issues from raw to tool to domain rows, as a real plugin does.

Its collector is never timed: the bench seeds the raw table directly and times the
extractor and the converter.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Mapping
from typing import Any

from plugin_sdk import (
    Plugin,
    Raw,
    RawRow,
    SubtaskContext,
    TableSpec,
    collector,
    converter,
    extractor,
)

ISSUE_COLUMNS = {
    "connection_id": "bigint", "github_id": "bigint", "number": "int", "title": "text",
    "body": "text", "state": "string", "user_login": "string", "labels": "json",
    "created_at": "datetime", "updated_at": "datetime", "closed_at": "datetime",
}  # fmt: skip
ISSUES = TableSpec("issues", ISSUE_COLUMNS, ("connection_id", "github_id"))


def tool_row(data: Mapping[str, Any], connection_id: int) -> dict[str, Any]:
    return {
        "connection_id": connection_id, "github_id": data["id"], "number": data["number"],
        "title": data["title"], "body": data["body"], "state": data["state"],
        "user_login": data["user"]["login"], "labels": [lb["name"] for lb in data["labels"]],
        "created_at": data["created_at"], "updated_at": data["updated_at"],
        "closed_at": data["closed_at"],
    }  # fmt: skip


def domain_row(row: Mapping[str, Any], domain_id: str) -> dict[str, Any]:
    return {
        "id": domain_id, "issue_key": str(row["number"]), "title": row["title"],
        "description": row["body"], "status": "DONE" if row["state"] == "closed" else "TODO",
        "original_status": row["state"], "created_date": row["created_at"],
        "updated_date": row["updated_at"], "resolution_date": row["closed_at"],
        "creator_name": row["user_login"], "type": "ISSUE",
    }  # fmt: skip


class BenchLake(Plugin):
    name = "benchlake"
    version = "0.1.0"
    tables = [ISSUES]

    @collector(entity="issues")
    async def collect_issues(self, ctx: SubtaskContext) -> AsyncIterator[Raw]:
        for _ in range(0):
            yield Raw({})

    @extractor(raw="issues", tables=["issues"])
    def extract_issues(self, raw: RawRow, ctx: SubtaskContext) -> Iterator[dict[str, Any]]:
        yield tool_row(raw.data, ctx.connection_id)

    @converter(tool="issues", tables=["issues"])
    def convert_issues(
        self, row: Mapping[str, Any], ctx: SubtaskContext
    ) -> Iterator[dict[str, Any]]:
        yield domain_row(row, ctx.domain_id("GithubIssue", row["github_id"]))
