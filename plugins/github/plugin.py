"""The github data plugin: one repository's data from the GitHub REST API into the lake.

Apache DevLake's GitHub plugin, out of process. For the repository named by the `repo`
option it collects, into raw tables `_raw_github_<entity>`:

    repos                 GET /repos/{o}/{r}
    issues                GET /repos/{o}/{r}/issues (since the last run, oldest change first)
    pull_requests         GET /repos/{o}/{r}/pulls (newest change first, down to the last run)
    pull_request_commits  GET /repos/{o}/{r}/pulls/{n}/commits, once per extracted pull request
    commits               GET /repos/{o}/{r}/commits (since the last run)
    runs                  GET /repos/{o}/{r}/actions/runs (pages fetched in parallel)

extracts them into tool tables `_tool_github_<name>` (plugins/github/_tables.py) and
converts those into DevLake's domain tables: repos, accounts, issues, pull_requests,
pull_request_commits, commits, repo_commits, cicd_pipelines and cicd_deployments.

The rows of one repository are scoped by DevLake's raw params,
{"ConnectionId":<id>,"Name":"owner/repo"}, which prepare_task_data puts in the task data.
Subtasks are listed in the order they can run: each depends only on subtasks above it.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator, Mapping
from typing import Any

from plugin_sdk import (
    AlreadyExists,
    ApiClient,
    ApiRequest,
    ApiResponse,
    InvalidOptions,
    Plugin,
    PluginError,
    Raw,
    RawRow,
    ResourceNotFound,
    Row,
    SubtaskContext,
    collector,
    converter,
    extractor,
)
from plugins.github import _convert, _extract
from plugins.github._collect import (
    Pacer,
    clean_url,
    client_for,
    collect_linked,
    collect_numbered,
    items_of,
    linked_pages,
    window,
)
from plugins.github._options import (
    CONNECTION_SCHEMA,
    DEFAULT_DEPLOYMENT,
    DEFAULT_PRODUCTION,
    OPTIONS_SCHEMA,
    Settings,
    option_errors,
    parse_settings,
    parse_time,
    raw_params,
    settings,
)
from plugins.github._tables import ALL as TABLES

log = logging.getLogger("plugins.github")

# DevLake's domain types, which let a blueprint pick the subtasks of the data it wants.
CODE, TICKET, REVIEW, CICD, CROSS = "CODE", "TICKET", "CODEREVIEW", "CICD", "CROSS"
ALL_TYPES = (CODE, TICKET, REVIEW, CICD, CROSS)
# Every extractor that writes `accounts` rows: convert_accounts runs after all of them.
ACCOUNT_SOURCES = ("extract_repo", "extract_issues", "extract_pulls", "extract_commits",
                   "extract_runs")  # fmt: skip

Records = AsyncIterator[Raw]
Rows = Iterator[Row]
Domain = Iterator[dict[str, Any]]


async def _repo_id(ctx: SubtaskContext, api: ApiClient, s: Settings) -> Any:
    """GitHub's id of the repository: from the task data, else asked for (a run without
    the core, whose task data is only the options)."""
    if ctx.task_data.get("repoId") is not None:
        return ctx.task_data["repoId"]
    return (await api.get(s.api_path)).body["id"]


class Github(Plugin):
    name = "github"
    version = "0.1.0"
    description = "GitHub repositories, issues, pull requests, commits and Actions runs."
    connection_schema = CONNECTION_SCHEMA
    options_schema = OPTIONS_SCHEMA
    tables = TABLES

    def __init__(self) -> None:
        self._pacer = Pacer()

    async def validate(self, options: Mapping[str, Any]) -> list[str]:
        return [*await super().validate(options), *option_errors(options)]

    async def prepare_task_data(
        self, options: Mapping[str, Any], connection: Mapping[str, Any]
    ) -> dict[str, Any]:
        """The options with their defaults, DevLake's raw `params`, and the repository's id
        (asked once here rather than by every subtask; it also fails early on a repository
        the token cannot see)."""
        errors = await self.validate(options)
        if errors:
            raise InvalidOptions("invalid options: " + "; ".join(errors))
        s = parse_settings(options)
        async with client_for(connection) as api:
            resp = await api.get_or_none(s.api_path)
        if resp is None:
            raise ResourceNotFound(f"repository {s.repo} not found, or the token cannot see it")
        return {
            "deploymentPattern": DEFAULT_DEPLOYMENT,
            "productionPattern": DEFAULT_PRODUCTION,
            **options,
            "params": raw_params(int(connection.get("id") or 0), s.repo),
            "repoId": resp.body["id"],
        }

    # -- the repository ------------------------------------------------------------------

    @collector(entity="repos", domain_types=ALL_TYPES)
    async def collect_repo(self, ctx: SubtaskContext) -> Records:
        """Collect the repository."""
        s = settings(ctx)
        async with client_for(ctx.connection) as api:
            resp = await api.get(s.api_path)
        yield Raw(resp.body, url=clean_url(resp.url))

    @extractor(raw="repos", tables=["repos", "accounts"], domain_types=ALL_TYPES,
               dependencies=["collect_repo"])  # fmt: skip
    def extract_repo(self, raw: RawRow, ctx: SubtaskContext) -> Rows:
        """Extract the repository and its owner."""
        yield from _extract.repo(raw, ctx)

    # -- issues ------------------------------------------------------------------------

    @collector(entity="issues", domain_types=[TICKET])
    async def collect_issues(self, ctx: SubtaskContext) -> Records:
        """Collect issues; after the first run, only those changed since the last one.

        GitHub lists pull requests among them; extract_issues leaves those out."""
        s = settings(ctx)
        win = window(ctx, s.time_after)
        # Oldest change first: an issue updated while we page moves to the end, not past us.
        params = {"state": "all", "sort": "updated", "direction": "asc", "since": win.since}
        async with client_for(ctx.connection) as api:
            repo = {"repo_id": await _repo_id(ctx, api, s)}
            async for raw in collect_linked(
                ctx, api, f"{s.api_path}/issues", params, win, input=repo
            ):
                yield raw

    @extractor(raw="issues", tables=["issues", "accounts"], domain_types=[TICKET],
               dependencies=["collect_issues"])  # fmt: skip
    def extract_issues(self, raw: RawRow, ctx: SubtaskContext) -> Rows:
        """Extract issues and their people, leaving pull requests out."""
        yield from _extract.issue(raw, ctx)

    # -- pull requests -----------------------------------------------------------------

    @collector(entity="pull_requests", domain_types=[REVIEW])
    async def collect_pulls(self, ctx: SubtaskContext) -> Records:
        """Collect pull requests, down to those unchanged since the last run."""
        s = settings(ctx)
        win = window(ctx, s.time_after)
        # The pulls API has no `since`: newest change first, and stop at the first older one.
        since = parse_time(win.since) if win.since else None

        def older(pull: Any) -> bool:
            return since is not None and parse_time(str(pull["updated_at"])) < since

        params = {"state": "all", "sort": "updated", "direction": "desc"}
        async with client_for(ctx.connection) as api:
            repo = {"repo_id": await _repo_id(ctx, api, s)}
            async for raw in collect_linked(
                ctx, api, f"{s.api_path}/pulls", params, win, input=repo, older=older
            ):
                yield raw

    @extractor(raw="pull_requests", tables=["pull_requests", "accounts"], domain_types=[REVIEW],
               dependencies=["collect_pulls"])  # fmt: skip
    def extract_pulls(self, raw: RawRow, ctx: SubtaskContext) -> Rows:
        """Extract pull requests and their authors."""
        yield from _extract.pull_request(raw, ctx)

    @collector(entity="pull_request_commits", parents="pull_requests", domain_types=[REVIEW],
               dependencies=["extract_pulls"])  # fmt: skip
    async def collect_pull_commits(self, ctx: SubtaskContext, parent: dict[str, Any]) -> Records:
        """Collect the commits of each extracted pull request."""
        s = settings(ctx)
        number = parent["number"]
        path = f"{s.api_path}/pulls/{number}/commits"
        asked = {"repo_id": parent.get("repo_id"), "pull_request_id": parent["id"],
                 "number": number}  # fmt: skip
        await self._pacer.wait(ctx)
        try:
            async with client_for(ctx.connection) as api:
                async for resp in linked_pages(api, path):
                    for item in items_of(resp):
                        yield Raw(item, url=clean_url(resp.url), input=asked)
        except ResourceNotFound:
            # One pull request gone (its repository transferred mid-run...) must not fail
            # the collection of all the others.
            log.warning("pull request %s#%s not found: its commits are skipped", s.repo, number)
        finally:
            self._pacer.used(ctx)

    @extractor(raw="pull_request_commits", tables=["pull_request_commits"],
               domain_types=[REVIEW], dependencies=["collect_pull_commits"])  # fmt: skip
    def extract_pull_commits(self, raw: RawRow, ctx: SubtaskContext) -> Rows:
        """Extract the commits of pull requests."""
        yield from _extract.pull_request_commit(raw, ctx)

    # -- commits -----------------------------------------------------------------------

    @collector(entity="commits", domain_types=[CODE])
    async def collect_commits(self, ctx: SubtaskContext) -> Records:
        """Collect the commits of the default branch, new ones only after the first run."""
        s = settings(ctx)
        win = window(ctx, s.time_after)
        async with client_for(ctx.connection) as api:
            repo = {"repo_id": await _repo_id(ctx, api, s)}
            try:
                async for raw in collect_linked(
                    ctx, api, f"{s.api_path}/commits", {"since": win.since}, win, input=repo
                ):
                    yield raw
            except AlreadyExists as exc:  # GitHub answers 409 for a repository with no commit
                if "empty" not in str(exc).lower():
                    raise
                log.info("repository %s is empty: no commits to collect", s.repo)
                win.save(ctx)

    @extractor(raw="commits", tables=["commits", "accounts"], domain_types=[CODE],
               dependencies=["collect_commits"])  # fmt: skip
    def extract_commits(self, raw: RawRow, ctx: SubtaskContext) -> Rows:
        """Extract commits and the GitHub users behind them."""
        yield from _extract.commit(raw, ctx)

    # -- Actions runs ------------------------------------------------------------------

    @collector(entity="runs", domain_types=[CICD])
    async def collect_runs(self, ctx: SubtaskContext) -> Records:
        """Collect Actions workflow runs, several pages at a time."""
        s = settings(ctx)
        # Not incremental: the API filters runs by creation only, and a run created before
        # the last collection may have finished (changed) since. timeAfter still bounds it.
        win = window(ctx, s.time_after, incremental=False)
        params = {"created": f">={s.time_after}"} if s.time_after else {}
        async with client_for(ctx.connection) as api:
            repo = {"repo_id": await _repo_id(ctx, api, s)}
            async for raw in collect_numbered(
                ctx, api, f"{s.api_path}/actions/runs", params, "workflow_runs", win, input=repo
            ):
                yield raw

    @extractor(raw="runs", tables=["runs", "accounts"], domain_types=[CICD],
               dependencies=["collect_runs"])  # fmt: skip
    def extract_runs(self, raw: RawRow, ctx: SubtaskContext) -> Rows:
        """Extract workflow runs and who started them."""
        yield from _extract.run(raw, ctx)

    # -- the domain layer --------------------------------------------------------------

    @converter(tool="repos", tables=["repos"], domain_types=ALL_TYPES,
               dependencies=["extract_repo"])  # fmt: skip
    def convert_repo(self, row: Mapping[str, Any], ctx: SubtaskContext) -> Domain:
        """Convert the repository into the domain's repos."""
        yield from _convert.repo(row, ctx)

    @converter(tool="accounts", tables=["accounts"], domain_types=[CROSS],
               dependencies=ACCOUNT_SOURCES)  # fmt: skip
    def convert_accounts(self, row: Mapping[str, Any], ctx: SubtaskContext) -> Domain:
        """Convert GitHub users into the domain's accounts."""
        yield from _convert.account(row, ctx)

    @converter(tool="issues", tables=["issues"], domain_types=[TICKET],
               dependencies=["extract_issues"])  # fmt: skip
    def convert_issues(self, row: Mapping[str, Any], ctx: SubtaskContext) -> Domain:
        """Convert issues into the domain's issues (TODO, IN_PROGRESS, DONE)."""
        yield from _convert.issue(row, ctx)

    @converter(tool="pull_requests", tables=["pull_requests"], domain_types=[REVIEW],
               dependencies=["extract_pulls"])  # fmt: skip
    def convert_pulls(self, row: Mapping[str, Any], ctx: SubtaskContext) -> Domain:
        """Convert pull requests into the domain's pull_requests (OPEN, CLOSED, MERGED)."""
        yield from _convert.pull_request(row, ctx)

    @converter(tool="pull_request_commits", tables=["pull_request_commits"],
               domain_types=[REVIEW], dependencies=["extract_pull_commits"])  # fmt: skip
    def convert_pull_commits(self, row: Mapping[str, Any], ctx: SubtaskContext) -> Domain:
        """Convert the commits of pull requests into the domain's pull_request_commits."""
        yield from _convert.pull_request_commit(row, ctx)

    @converter(tool="commits", tables=["commits", "repo_commits"], domain_types=[CODE],
               dependencies=["extract_commits"])  # fmt: skip
    def convert_commits(self, row: Mapping[str, Any], ctx: SubtaskContext) -> Rows:
        """Convert commits into the domain's commits and repo_commits."""
        yield from _convert.commit(row, ctx)

    @converter(tool="runs", tables=["cicd_pipelines"], domain_types=[CICD],
               dependencies=["extract_runs"])  # fmt: skip
    def convert_runs(self, row: Mapping[str, Any], ctx: SubtaskContext) -> Domain:
        """Convert every workflow run into the domain's cicd_pipelines."""
        yield from _convert.pipeline(row, ctx, settings(ctx))

    @converter(tool="runs", tables=["cicd_deployments"], domain_types=[CICD],
               dependencies=["extract_runs"])  # fmt: skip
    def convert_deployments(self, row: Mapping[str, Any], ctx: SubtaskContext) -> Domain:
        """Convert the runs that match deploymentPattern into the domain's cicd_deployments."""
        yield from _convert.deployment(row, ctx, settings(ctx))

    # -- the plugin's REST API -----------------------------------------------------------

    async def handle_api(self, request: ApiRequest) -> ApiResponse:
        """POST /test-connection: does the token work? 200 with the user's login, else 400."""
        if (request.method.upper(), request.path.strip("/")) != ("POST", "test-connection"):
            return ApiResponse(404, {"message": f"no endpoint {request.method} {request.path}"})
        # A connection being created is tested before it is saved: its fields may come in
        # the body; a saved connection's (with its secrets) win.
        body = request.body if isinstance(request.body, Mapping) else {}
        conn = {**body, **(request.connection or {})}
        token = str(conn.get("token") or "")
        if not token:
            return ApiResponse(400, {"ok": False, "message": "the connection has no token"})
        try:
            async with client_for(conn, max_retries=1, timeout=10) as api:
                resp = await api.get("user")
        except PluginError as exc:
            # The SDK masks registered secrets already; replace() holds even if it did not.
            return ApiResponse(400, {"ok": False, "message": str(exc).replace(token, "***")})
        login = resp.body.get("login") if isinstance(resp.body, Mapping) else None
        return ApiResponse(200, {"ok": True, "login": login})
