"""The icla plugin: the second source document's worked example, out of process.

It reads the Apache ICLA list (`public/icla-info.json`: `last_updated` and a
`committers` map of user name to full name) into `_raw_icla_committer` (one raw row per
committer, not one row holding the whole map, so collection streams and resumes),
extracts `_tool_icla_committer`, and converts that into the domain table `accounts`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Mapping
from typing import Any

from plugin_sdk import (
    ApiRequest,
    ApiResponse,
    Plugin,
    PluginError,
    Raw,
    RawRow,
    SubtaskContext,
    TableSpec,
    collector,
    converter,
    extractor,
)

DEFAULT_ENDPOINT = "https://people.apache.org/"
ICLA_PATH = "public/icla-info.json"


class Icla(Plugin):
    name = "icla"
    version = "0.1.0"
    description = "Apache ICLA committers into the domain layer's accounts."
    connection_schema = {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "endpoint": {"type": "string", "default": DEFAULT_ENDPOINT,
                         "description": "base URL serving public/icla-info.json"},
            "proxy": {"type": "string", "description": "HTTP proxy for this connection"},
            "rateLimitPerHour": {"type": "integer", "minimum": 1},
        },
    }  # fmt: skip
    options_schema = {
        "type": "object",
        "properties": {"path": {"type": "string", "default": ICLA_PATH}},
    }
    tables = [
        TableSpec(
            "committer",
            {"connection_id": "bigint", "user_name": "string", "name": "string"},
            ("connection_id", "user_name"),
            "one row per committer who signed the ICLA",
        )
    ]

    @collector(entity="committer", domain_types=["CROSS"])
    async def collect_committer(self, ctx: SubtaskContext) -> AsyncIterator[Raw]:
        """Collect the committers listed in the ICLA file."""
        async with ctx.api_client() as api:
            resp = await api.get(ctx.options.get("path") or ICLA_PATH)
        body = resp.body if isinstance(resp.body, Mapping) else {}
        committers = body.get("committers")
        if not isinstance(committers, Mapping):
            raise PluginError(f"{resp.url} holds no `committers` map", plugin=self.name)
        total = len(committers)
        for done, (user, full_name) in enumerate(sorted(committers.items()), start=1):
            yield Raw({"user_name": user, "name": full_name}, url=resp.url,
                      input={"last_updated": body.get("last_updated")})  # fmt: skip
            if done % 1000 == 0 or done == total:
                ctx.progress(done, total)

    @extractor(raw="committer", tables=["committer"], domain_types=["CROSS"])
    def extract_committer(self, raw: RawRow, ctx: SubtaskContext) -> Iterator[dict[str, Any]]:
        """Extract committers from the raw rows."""
        yield {
            "connection_id": ctx.connection_id,
            "user_name": raw.data["user_name"],
            "name": raw.data["name"],
        }

    @converter(tool="committer", tables=["accounts"], domain_types=["CROSS"])
    def convert_committer(
        self, row: Mapping[str, Any], ctx: SubtaskContext
    ) -> Iterator[dict[str, Any]]:
        """Convert committers into domain accounts."""
        yield {
            "id": ctx.domain_id("IclaCommitter", row["user_name"]),
            "user_name": row["user_name"],
            "full_name": row["name"],
            "email": f"{row['user_name']}@apache.org",
            "organization": "Apache Software Foundation",
            "status": 1,
        }

    async def handle_api(self, request: ApiRequest) -> ApiResponse:
        """POST /test-connection: can the endpoint be reached and does it serve the list?"""
        if (request.method, request.path.strip("/")) != ("POST", "test-connection"):
            return ApiResponse(404, {"message": f"no endpoint {request.method} {request.path}"})
        from plugin_sdk import ApiClient

        conn = dict(request.connection or {})
        endpoint = str(conn.get("endpoint") or DEFAULT_ENDPOINT)
        try:
            async with ApiClient(endpoint, max_retries=1, timeout=10) as api:
                resp = await api.get(ICLA_PATH)
        except PluginError as exc:
            return ApiResponse(400, {"ok": False, "message": str(exc)})
        count = len((resp.body or {}).get("committers") or {})
        return ApiResponse(200, {"ok": True, "message": f"{count} committers listed"})
