"""The github plugin's surface: options, task data, test-connection, metadata, a real process."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import pytest

from core_service.host import PluginHost
from plugin_sdk import InvalidOptions, ResourceNotFound
from plugin_sdk._client import PluginClient
from plugin_sdk.testing import serve_in_process
from plugins.github import Github
from tests.fakes import FakeGitHub
from tests.plugins.github.helpers import REPO, connection, task_data

SUBTASKS = [
    ("collect_repo", "collector", "", ["_raw_github_repos"], []),
    ("extract_repo", "extractor", "_raw_github_repos",
     ["_tool_github_repos", "_tool_github_accounts"], ["collect_repo"]),
    ("collect_issues", "collector", "", ["_raw_github_issues"], []),
    ("extract_issues", "extractor", "_raw_github_issues",
     ["_tool_github_issues", "_tool_github_accounts"], ["collect_issues"]),
    ("collect_pulls", "collector", "", ["_raw_github_pull_requests"], []),
    ("extract_pulls", "extractor", "_raw_github_pull_requests",
     ["_tool_github_pull_requests", "_tool_github_accounts"], ["collect_pulls"]),
    ("collect_pull_commits", "collector", "_tool_github_pull_requests",
     ["_raw_github_pull_request_commits"], ["extract_pulls"]),
    ("extract_pull_commits", "extractor", "_raw_github_pull_request_commits",
     ["_tool_github_pull_request_commits"], ["collect_pull_commits"]),
    ("collect_commits", "collector", "", ["_raw_github_commits"], []),
    ("extract_commits", "extractor", "_raw_github_commits",
     ["_tool_github_commits", "_tool_github_accounts"], ["collect_commits"]),
    ("collect_runs", "collector", "", ["_raw_github_runs"], []),
    ("extract_runs", "extractor", "_raw_github_runs",
     ["_tool_github_runs", "_tool_github_accounts"], ["collect_runs"]),
    ("convert_repo", "converter", "_tool_github_repos", ["repos"], ["extract_repo"]),
    ("convert_accounts", "converter", "_tool_github_accounts", ["accounts"],
     ["extract_repo", "extract_issues", "extract_pulls", "extract_commits", "extract_runs"]),
    ("convert_issues", "converter", "_tool_github_issues", ["issues"], ["extract_issues"]),
    ("convert_pulls", "converter", "_tool_github_pull_requests", ["pull_requests"],
     ["extract_pulls"]),
    ("convert_pull_commits", "converter", "_tool_github_pull_request_commits",
     ["pull_request_commits"], ["extract_pull_commits"]),
    ("convert_commits", "converter", "_tool_github_commits", ["commits", "repo_commits"],
     ["extract_commits"]),
    ("convert_runs", "converter", "_tool_github_runs", ["cicd_pipelines"], ["extract_runs"]),
    ("convert_deployments", "converter", "_tool_github_runs", ["cicd_deployments"],
     ["extract_runs"]),
]  # fmt: skip


@pytest.fixture
async def gh() -> AsyncIterator[FakeGitHub]:
    async with FakeGitHub() as fake:
        fake.add_repo(REPO)
        yield fake


@pytest.fixture
async def client() -> AsyncIterator[PluginClient]:
    async with serve_in_process(Github()) as c:
        yield c


async def test_prepare_task_data_gives_params_defaults_and_repo_id(
    gh: FakeGitHub, client: PluginClient
) -> None:
    data = await task_data(client, gh, batchSize=50)
    assert data == {
        "repo": REPO, "batchSize": 50, "deploymentPattern": "(?i)deploy",
        "productionPattern": "(?i)prod", "params": '{"ConnectionId":1,"Name":"octo/lake"}',
        "repoId": gh.repos[REPO].data["id"],
    }  # fmt: skip
    # The token may come as a secret, as the core sends it.
    conn = {k: v for k, v in connection(gh, id=7).items() if k != "token"}
    data = await client.prepare_task_data({"repo": REPO}, conn, secrets={"token": gh.token})
    assert data["params"] == '{"ConnectionId":7,"Name":"octo/lake"}'


async def test_prepare_task_data_refuses_bad_options_and_unknown_repos(
    gh: FakeGitHub, client: PluginClient
) -> None:
    with pytest.raises(InvalidOptions, match="repo: 'octo' does not match"):
        await client.prepare_task_data({"repo": "octo"}, connection(gh))
    with pytest.raises(InvalidOptions, match="deploymentPattern: '\\(' is not a valid regular"):
        await client.prepare_task_data({"repo": REPO, "deploymentPattern": "("}, connection(gh))
    with pytest.raises(InvalidOptions, match="timeAfter: 'yesterday' is not an ISO 8601"):
        await client.prepare_task_data({"repo": REPO, "timeAfter": "yesterday"}, connection(gh))
    with pytest.raises(ResourceNotFound, match="repository octo/nope not found"):
        await client.prepare_task_data({"repo": "octo/nope"}, connection(gh))
    assert await client.validate({"repo": REPO, "timeAfter": "2024-01-01"}) == []
    assert await client.validate({}) == ["(options): 'repo' is a required property"]


async def test_test_connection(
    gh: FakeGitHub, client: PluginClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    ok = await client.handle_api("POST", "/test-connection", connection=connection(gh))
    assert (ok.status, ok.body) == (200, {"ok": True, "login": "octocat"})
    assert gh.requests_to("/user")[-1].headers["Authorization"] == "Bearer ***"

    wrong = "ghp_WrongToken0123456789abcdef"
    bad = await client.handle_api("POST", "/test-connection",
                                  connection=connection(gh, token=wrong))  # fmt: skip
    assert bad.status == 400 and bad.body["ok"] is False
    assert '401 Unauthorized: {"message": "Bad credentials"' in bad.body["message"]
    assert wrong not in bad.body["message"]

    # A connection not saved yet is tested from the request's body.
    body = {"endpoint": gh.url, "token": gh.token}
    assert (await client.handle_api("POST", "/test-connection", body=body)).status == 200
    none = await client.handle_api("POST", "/test-connection", connection={"endpoint": gh.url})
    assert (none.status, none.body) == (
        400,
        {"ok": False, "message": "the connection has no token"},
    )
    assert (await client.handle_api("GET", "/nope")).status == 404
    for record in caplog.records:
        assert wrong not in record.getMessage() and gh.token not in record.getMessage()


async def test_metadata_through_a_real_plugin_process() -> None:
    async with PluginHost(reattach="", health_interval=0) as host:
        handle = await host.get("github")
        info = await handle.info()
    assert (info.name, info.version) == ("github", "0.1.0")
    assert "data" in info.capabilities and "api" in info.capabilities
    got = [(s["name"], s["kind"], s["input_table"], s["output_tables"], s["dependencies"])
           for s in info.subtasks]  # fmt: skip
    assert got == [tuple(s) for s in SUBTASKS]
    tables = {t["name"]: t for t in info.tables}
    assert sorted(tables) == sorted(
        f"_tool_github_{n}" for n in ("repos", "issues", "pull_requests", "pull_request_commits",
                                      "commits", "runs", "accounts")
    )  # fmt: skip
    issues = tables["_tool_github_issues"]
    assert issues["primary_key"] == ["connection_id", "id"]
    assert issues["columns"]["labels"] == "json" and issues["columns"]["closed_at"] == "datetime"
    assert info.connection_schema is not None
    assert info.connection_schema["properties"]["token"]["x-secret"] is True
    assert info.options_schema is not None and info.options_schema["required"] == ["repo"]
