"""The REST API end to end: a real aiohttp server, real plugin processes, SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from core_service.api import ROUTES, Core, document, make_app
from plugin_sdk.testing import ReplayServer
from tests.conftest import FIXTURE_PLUGINS

TOKEN = "api-token-for-tests-0123456789"


async def client_for(db_url: str, token: str = "") -> TestClient[Any, Any]:
    core = Core(db_url, plugin_dirs=[str(FIXTURE_PLUGINS)])
    client = TestClient(TestServer(make_app(core, token)))
    await client.start_server()
    return client


@pytest.fixture
async def api(db_url: str) -> AsyncIterator[TestClient[Any, Any]]:
    client = await client_for(db_url)
    yield client
    await client.close()


async def sse_events(client: TestClient[Any, Any], path: str) -> list[tuple[str, Any]]:
    events = []
    async with client.get(path) as resp:
        assert resp.headers["Content-Type"].startswith("text/event-stream")
        name = ""
        async for raw in resp.content:
            line = raw.decode().rstrip("\n")
            if line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: "):
                events.append((name, json.loads(line[6:])))
    return events


async def test_health_ready_and_metrics(api: TestClient[Any, Any]) -> None:
    assert (await (await api.get("/healthz")).json()) == {"status": "ok"}
    ready = await api.get("/readyz")
    assert ready.status == 200 and (await ready.json())["checks"]["database"] == "ok"
    await api.get("/api/v1/plugins/localfile")
    text = await (await api.get("/metrics")).text()
    assert 'dtm_plugin_calls_total{plugin="localfile",outcome="ok"}' in text
    assert "dtm_plugin_call_seconds_bucket" in text
    assert (
        'dtm_http_requests_total{method="GET",route="/api/v1/plugins/{name}",status="200"}' in text
    )


async def test_plugins_metadata_health_restart_and_own_endpoints(
    api: TestClient[Any, Any],
) -> None:
    listed = {p["name"]: p for p in await (await api.get("/api/v1/plugins")).json()}
    assert {"localfile", "icla", "testkit", "lakekit"} <= set(listed)
    meta = await (await api.get("/api/v1/plugins/icla")).json()
    assert meta["capabilities"] == ["api", "data"]
    assert [s["name"] for s in meta["subtasks"]] == [
        "collect_committer",
        "extract_committer",
        "convert_committer",
    ]
    health = await (await api.get("/api/v1/plugins/icla/health")).json()
    assert health["serving"] is True
    restarted = await (await api.post("/api/v1/plugins/icla/restart")).json()
    assert restarted["pid"] != health["pid"] and restarted["alive"]
    missing = await api.get("/api/v1/plugins/nope")
    assert (
        missing.status == 404
        and "no plugin named 'nope'" in (await missing.json())["error"]["message"]
    )
    own = await api.post("/api/v1/plugins/icla/unknown-endpoint", json={})
    assert own.status == 404  # the plugin's own answer, proxied over gRPC


async def test_connections_keep_secrets_write_only(api: TestClient[Any, Any]) -> None:
    body = {
        "plugin": "icla",
        "name": "apache",
        "endpoint": "http://127.0.0.1:9/",
        "token": "t0ps3cr3t-x",
    }
    made = await api.post("/api/v1/connections", json=body)
    assert made.status == 201
    shown = await made.json()
    assert shown["secrets"] == ["token"] and "t0ps3cr3t-x" not in json.dumps(shown)
    again = await api.post("/api/v1/connections", json=body)
    assert again.status == 409
    got = await (await api.get("/api/v1/connections/apache")).json()
    assert "t0ps3cr3t-x" not in json.dumps(got)
    tested = await api.post("/api/v1/connections/apache/test")
    assert tested.status == 400  # nothing listens on port 9: a clear answer, not a 500
    assert (await tested.json())["result"]["ok"] is False
    assert (await api.delete("/api/v1/connections/apache")).status == 200
    assert (await api.get("/api/v1/connections/apache")).status == 404


async def test_pipeline_with_live_progress_cancel_and_rerun(api: TestClient[Any, Any]) -> None:
    body = {"icla": "x"}
    async with ReplayServer({"GET /public/icla-info.json": {
        "last_updated": "x", "committers": {f"u{i}": f"U {i}" for i in range(700)}}}) as up:  # fmt: skip
        await api.post(
            "/api/v1/connections", json={"plugin": "icla", "name": "asf", "endpoint": up.url + "/"}
        )
        made = await api.post(
            "/api/v1/pipelines",
            json={"name": "icla", "plan": [[{"plugin": "icla", "connection": "asf"}]]},
        )
        assert made.status == 201, await made.text()
        pid = (await made.json())["id"]
        events = await sse_events(api, f"/api/v1/pipelines/{pid}/events")
    del body
    kinds = [name for name, _ in events]
    assert kinds[0] == "snapshot" and kinds[-1] == "snapshot"
    assert any(name == "records" for name in kinds)
    final = events[-1][1]
    assert final["status"] == "done"
    assert [s["records"] for s in final["tasks"][0]["subtasks"]] == [700, 700, 700]
    metrics = await (await api.get("/metrics")).text()
    assert 'dtm_records_written_total{plugin="icla",table="accounts"}' in metrics

    slow = await api.post(
        "/api/v1/pipelines",
        json={"plan": [[{"plugin": "lakekit", "options": {"count": 5000, "delay": 0.002}}]]},
    )
    slow_id = (await slow.json())["id"]
    await asyncio.sleep(0.5)
    cancelled = await api.post(f"/api/v1/pipelines/{slow_id}/cancel")
    assert cancelled.status == 202
    for _ in range(50):
        state = await (await api.get(f"/api/v1/pipelines/{slow_id}")).json()
        if state["status"] == "cancelled":
            break
        await asyncio.sleep(0.1)
    assert state["status"] == "cancelled"
    rerun = await api.post(f"/api/v1/pipelines/{slow_id}/rerun", json={"failedOnly": True})
    assert rerun.status == 202
    busy = await api.post(f"/api/v1/pipelines/{slow_id}/rerun", json={})
    assert busy.status == 409
    await api.post(f"/api/v1/pipelines/{slow_id}/cancel")
    listed = await (await api.get("/api/v1/pipelines")).json()
    assert {p["id"] for p in listed} >= {pid, slow_id}


async def test_bad_requests_get_4xx_json_never_500(api: TestClient[Any, Any]) -> None:
    cases = [
        ("POST", "/api/v1/pipelines", "{not json", 400, "not valid JSON"),
        ("POST", "/api/v1/pipelines", json.dumps({"plan": []}), 400, "not valid"),
        (
            "POST",
            "/api/v1/pipelines",
            json.dumps({"plan": [[{"plugin": "nope"}]]}),
            404,
            "no plugin named 'nope'",
        ),
        (
            "POST",
            "/api/v1/pipelines",
            json.dumps({"plan": [[{"plugin": "icla", "connection": "missing"}]]}),
            404,
            "no connection 'missing'",
        ),
        ("GET", "/api/v1/pipelines/abc", None, 400, "must be a whole number"),
        ("GET", "/api/v1/pipelines/999", None, 404, "no pipeline 999"),
        (
            "POST",
            "/api/v1/connections",
            json.dumps({"plugin": "icla"}),
            400,
            "'name' is a required property",
        ),
        (
            "POST",
            "/api/v1/toolchain/plan",
            json.dumps({"config": "tools: [oops"}),
            400,
            "not valid YAML",
        ),
        (
            "POST",
            "/api/v1/toolchain/plan",
            json.dumps({"config": "tools:\n- name: localfle\n  instanceID: a\n"}),
            400,
            "no plugin named 'localfle'",
        ),
        ("DELETE", "/api/v1/pipelines", None, 405, ""),
        ("GET", "/api/v1/nowhere", None, 404, ""),
    ]
    for method, path, data, status, words in cases:
        resp = await api.request(
            method, path, data=data, headers={"Content-Type": "application/json"}
        )
        body = await resp.json()
        assert resp.status == status, (path, body)
        assert words in json.dumps(body), (path, body)
        assert set(body) == {"error"} and {"code", "message"} <= set(body["error"])


async def test_toolchain_plan_apply_status_delete(
    api: TestClient[Any, Any], tmp_path: Path
) -> None:
    config = f"tools:\n- name: localfile\n  instanceID: a\n  options: {{path: {tmp_path}/a.txt, content: via api}}\n"
    plan = await (await api.post("/api/v1/toolchain/plan", json={"config": config})).json()
    assert plan["pending"] == 1 and plan["changes"][0]["action"] == "create"
    applied = await (await api.post("/api/v1/toolchain/apply", json={"config": config})).json()
    assert applied["ok"] and (tmp_path / "a.txt").read_text() == "via api"
    status = await (await api.get("/api/v1/toolchain/status")).json()
    assert [s["tool"] for s in status] == ["localfile.a"]
    assert (await (await api.post("/api/v1/toolchain/plan", json={"config": config})).json())[
        "pending"
    ] == 0
    deleted = await (await api.post("/api/v1/toolchain/delete", json={"config": config})).json()
    assert deleted["ok"] and not (tmp_path / "a.txt").exists()


async def test_auth_is_required_when_a_token_is_set(db_url: str) -> None:
    client = await client_for(db_url, token=TOKEN)
    try:
        assert (await client.get("/api/v1/plugins")).status == 401
        wrong = await client.get("/api/v1/plugins", headers={"Authorization": "Bearer nope"})
        assert wrong.status == 401 and (await wrong.json())["error"]["code"] == "unauthorized"
        ok = await client.get("/api/v1/plugins", headers={"Authorization": f"Bearer {TOKEN}"})
        assert ok.status == 200
        for public in ("/healthz", "/readyz", "/metrics", "/api/v1/openapi.json"):
            assert (await client.get(public)).status == 200, public
    finally:
        await client.close()


async def test_pipelines_started_through_the_api_resume_after_a_restart(db_url: str) -> None:
    client = await client_for(db_url)
    made = await client.post(
        "/api/v1/pipelines",
        json={
            "plan": [
                [
                    {
                        "plugin": "lakekit",
                        "options": {"count": 3000, "delay": 0.001, "checkpointEvery": 5},
                    }
                ]
            ]
        },
    )
    pid = (await made.json())["id"]
    for _ in range(100):
        state = await (await client.get(f"/api/v1/pipelines/{pid}")).json()
        subs = state["tasks"][0]["subtasks"]
        if subs and subs[0]["records"] > 50:
            break
        await asyncio.sleep(0.05)
    await client.close()  # the service stops in the middle
    async with await client_for(db_url) as restarted:
        for _ in range(200):
            state = await (await restarted.get(f"/api/v1/pipelines/{pid}")).json()
            if state["status"] in ("done", "failed"):
                break
            await asyncio.sleep(0.1)
        assert state["status"] == "done", state
        assert [s["records"] for s in state["tasks"][0]["subtasks"]] == [3000, 3000, 3000]


def test_openapi_document_matches_the_routes() -> None:
    doc = document(ROUTES)
    app = make_app(Core("sqlite+aiosqlite:///:memory:"), "")
    served = set()
    for resource in app.router.resources():
        for route in resource:
            if route.method != "HEAD":
                path = re.sub(r"\{(\w+):[^}]+\}", r"{\1}", resource.canonical)
                served.add((route.method.lower(), path))
    documented = {(m, p) for p, ops in doc["paths"].items() for m in ops}
    assert served == documented
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            assert op["summary"] and op["responses"], (method, path)
    from openapi_spec_validator import validate

    validate(doc)


def test_web_app_key_is_typed() -> None:
    assert isinstance(make_app(Core("sqlite+aiosqlite:///:memory:")), web.Application)
