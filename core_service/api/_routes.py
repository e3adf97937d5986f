"""The REST API's routes, each with its request schema: the OpenAPI document is made from
this table, so the document and the routes cannot disagree."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from core_service import metrics
from core_service.api._errors import ApiError
from core_service.api._service import Core
from core_service.lake import parse_plan
from core_service.toolchain import NOOP

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
CORE = web.AppKey("core", Core)

NAME = {"type": "string", "minLength": 1, "maxLength": 200, "pattern": "^[A-Za-z0-9_.-]+$"}
CONNECTION_BODY = {
    "type": "object",
    "additionalProperties": False,
    "required": ["plugin", "name"],
    "properties": {
        "plugin": NAME,
        "name": NAME,
        "endpoint": {"type": "string", "maxLength": 2000},
        "token": {"type": "string", "maxLength": 10000, "writeOnly": True},
        "password": {"type": "string", "maxLength": 10000, "writeOnly": True},
        "username": {"type": "string", "maxLength": 200},
        "proxy": {"type": "string", "maxLength": 2000},
        "rateLimitPerHour": {"type": "integer", "minimum": 1, "maximum": 10_000_000},
    },
}
TASK = {
    "type": "object",
    "additionalProperties": False,
    "required": ["plugin"],
    "properties": {
        "plugin": NAME,
        "options": {"type": "object"},
        "subtasks": {"type": "array", "items": NAME},
        "connection": {"type": ["string", "integer", "null"]},
        "fullSync": {"type": "boolean"},
    },
}
PIPELINE_BODY = {
    "type": "object",
    "additionalProperties": False,
    "required": ["plan"],
    "properties": {
        "name": {"type": "string", "maxLength": 200},
        "plan": {
            "type": "array",
            "minItems": 1,
            "maxItems": 50,
            "items": {"type": "array", "minItems": 1, "maxItems": 50, "items": TASK},
        },
    },
}
RERUN_BODY = {
    "type": "object",
    "additionalProperties": False,
    "properties": {"failedOnly": {"type": "boolean"}},
}
TOOLCHAIN_BODY = {
    "type": "object",
    "additionalProperties": False,
    "required": ["config"],
    "properties": {
        "config": {
            "type": "string",
            "minLength": 1,
            "maxLength": 1_000_000,
            "description": "the toolchain config, as YAML text",
        },
    },
}
API_CALL_BODY = {"description": "passed to the plugin's own endpoint as JSON"}


@dataclass(frozen=True)
class Route:
    method: str
    path: str  # aiohttp syntax, below /api/v1 unless absolute
    handler: Handler
    summary: str
    body: dict[str, Any] | None = None
    tags: tuple[str, ...] = ()
    public: bool = False  # no token needed (probes, metrics, the document itself)
    responses: dict[int, str] = field(default_factory=dict)
    produces: str = "application/json"


async def _json_body(request: web.Request, schema: dict[str, Any] | None) -> Any:
    if schema is None:
        return None
    if not request.can_read_body:
        if schema.get("required"):
            raise ApiError(400, "bad_request", "a JSON body is required")
        return {}
    try:
        body = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ApiError(400, "bad_request", f"the body is not valid JSON: {exc}") from exc
    if "type" not in schema:
        return body
    import jsonschema

    errors = sorted(
        jsonschema.Draft202012Validator(schema).iter_errors(body), key=lambda e: list(e.path)
    )
    if errors:
        details = [
            f"{'.'.join(map(str, e.absolute_path)) or '(body)'}: {e.message}" for e in errors[:20]
        ]
        raise ApiError(400, "bad_request", "the request body is not valid", details)
    return body


def _int(request: web.Request, key: str) -> int:
    raw = request.match_info[key]
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 12:
        raise ApiError(400, "bad_request", f"{key} must be a whole number, got {raw!r}")
    return int(raw)


def _core(request: web.Request) -> Core:
    return request.app[CORE]


# -- handlers ----------------------------------------------------------------------------------
async def healthz(request: web.Request) -> web.StreamResponse:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.StreamResponse:
    ready, checks = await _core(request).readiness()
    return web.json_response({"ready": ready, "checks": checks}, status=200 if ready else 503)


async def metrics_text(request: web.Request) -> web.StreamResponse:
    return web.Response(
        text=metrics.render(),
        content_type="text/plain",
        charset="utf-8",
        headers={"X-Prometheus-Format": "0.0.4"},
    )


async def list_plugins(request: web.Request) -> web.StreamResponse:
    core = _core(request)
    handles = core.host.handles()
    out = []
    for name in core.host.names():
        m = core.host.manifests.get(name)
        row: dict[str, Any] = m.as_dict() if m else {"name": name}
        row.pop("command", None)
        row["mode"] = (
            "remote"
            if name in core.host.remotes
            else "reattached"
            if name in core.host.reattach
            else "managed"
        )
        row["running"] = handles[name].status() if name in handles else None
        out.append(row)
    return web.json_response(out)


async def get_plugin(request: web.Request) -> web.StreamResponse:
    core = _core(request)
    name = request.match_info["name"]
    core.host.require(name)
    info = await (await core.host.get(name)).info()
    return web.json_response(info.as_dict())


async def plugin_health(request: web.Request) -> web.StreamResponse:
    core = _core(request)
    name = request.match_info["name"]
    core.host.require(name)
    handle = await core.host.get(name)
    serving = await handle.health()
    return web.json_response(
        {"name": name, "serving": serving, **handle.status()}, status=200 if serving else 503
    )


async def restart_plugin(request: web.Request) -> web.StreamResponse:
    core = _core(request)
    name = request.match_info["name"]
    core.host.require(name)
    if name in core.host.remotes or name in core.host.reattach:
        raise ApiError(
            409,
            "not_managed",
            f"plugin {name} is not started by this core; "
            "restart it where it runs (e.g. kubectl rollout restart)",
        )
    handle = await core.host.restart(name)
    return web.json_response(handle.status())


async def plugin_api(request: web.Request) -> web.StreamResponse:
    core = _core(request)
    name = request.match_info["name"]
    core.host.require(name)
    body = await _json_body(request, API_CALL_BODY) if request.can_read_body else None
    connection, secrets = None, None
    if request.query.get("connection"):
        conn = await core.runner.connections.get(request.query["connection"])
        connection, secrets = conn.for_plugin()
    handle = await core.host.get(name)
    path = "/" + request.match_info["path"]
    query = {k: v for k, v in request.query.items() if k != "connection"}
    resp = await handle.call(
        lambda c: c.handle_api(
            request.method, path, query=query, body=body, connection=connection, secrets=secrets
        )
    )
    status = resp.status if 100 <= resp.status <= 599 else 502
    return web.json_response(resp.body, status=status)


async def list_connections(request: web.Request) -> web.StreamResponse:
    conns = await _core(request).runner.connections.all()
    return web.json_response([c.public() for c in conns])


async def add_connection(request: web.Request) -> web.StreamResponse:
    core = _core(request)
    body = await _json_body(request, CONNECTION_BODY)
    core.host.require(body["plugin"])
    secrets = {k: body.pop(k) for k in ("token", "password") if k in body}
    plugin, name, endpoint = body.pop("plugin"), body.pop("name"), body.pop("endpoint", "")
    made = await core.runner.connections.add(plugin, name, endpoint, body, secrets)
    return web.json_response(made.public(), status=201)


async def get_connection(request: web.Request) -> web.StreamResponse:
    conn = await _core(request).runner.connections.get(request.match_info["name"])
    return web.json_response(conn.public())


async def delete_connection(request: web.Request) -> web.StreamResponse:
    await _core(request).runner.connections.remove(request.match_info["name"])
    return web.json_response({"deleted": request.match_info["name"]})


async def test_connection(request: web.Request) -> web.StreamResponse:
    core = _core(request)
    conn = await core.runner.connections.get(request.match_info["name"])
    handle = await core.host.get(conn.plugin)
    public, secrets = conn.for_plugin()
    resp = await handle.call(
        lambda c: c.handle_api("POST", "/test-connection", connection=public, secrets=secrets)
    )
    return web.json_response(
        {"status": resp.status, "result": resp.body}, status=200 if resp.status < 400 else 400
    )


async def list_pipelines(request: web.Request) -> web.StreamResponse:
    return web.json_response(await _core(request).runner.recent())


async def create_pipeline(request: web.Request) -> web.StreamResponse:
    core = _core(request)
    body = await _json_body(request, PIPELINE_BODY)
    plan = parse_plan(body, "the request body")
    pipeline_id = await core.create_pipeline(plan)
    return web.json_response(await core.runner.get(pipeline_id), status=201)


async def get_pipeline(request: web.Request) -> web.StreamResponse:
    return web.json_response(await _core(request).runner.get(_int(request, "id")))


async def cancel_pipeline(request: web.Request) -> web.StreamResponse:
    core = _core(request)
    pipeline_id = _int(request, "id")
    await core.cancel_pipeline(pipeline_id)
    return web.json_response(await core.runner.get(pipeline_id), status=202)


async def rerun_pipeline(request: web.Request) -> web.StreamResponse:
    core = _core(request)
    pipeline_id = _int(request, "id")
    body = await _json_body(request, RERUN_BODY) or {}
    await core.rerun_pipeline(pipeline_id, bool(body.get("failedOnly")))
    return web.json_response(await core.runner.get(pipeline_id), status=202)


async def pipeline_events(request: web.Request) -> web.StreamResponse:
    """Server-sent events: a snapshot, then progress, until the pipeline ends."""
    core = _core(request)
    pipeline_id = _int(request, "id")
    snapshot = await core.runner.get(pipeline_id)
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-cache",
        }
    )
    await response.prepare(request)
    queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    core.subscribers[pipeline_id].append(queue)
    try:
        await response.write(_sse("snapshot", snapshot))
        if pipeline_id in core.running:
            while True:
                try:
                    event = await asyncio.wait_for(queue.get(), 15)
                except TimeoutError:
                    await response.write(b": keep-alive\n\n")
                    continue
                await response.write(_sse(event["kind"], event))
                if event["kind"] == "pipeline" and event.get("status") != "running":
                    break
            await response.write(_sse("snapshot", await core.runner.get(pipeline_id)))
    finally:
        core.subscribers[pipeline_id].remove(queue)
    await response.write_eof()
    return response


def _sse(event: str, data: Any) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data, default=str)}\n\n".encode()


async def _toolchain_call(request: web.Request, action: str) -> web.StreamResponse:
    core = _core(request)
    body = await _json_body(request, TOOLCHAIN_BODY)
    config = core.load_toolchain_config(body["config"])
    tc = await core.toolchain(config)
    state = await tc.store.load()
    await tc.check(state)
    if action == "plan":
        changes = await tc.plan(state)
        return web.json_response(
            {
                "changes": [c.as_dict() for c in changes],
                "pending": sum(c.action != NOOP for c in changes),
            }
        )
    async with core.locked(config, f"dtm API {action}"):
        if action == "apply":
            outcomes = await tc.apply(state=state)
        else:
            outcomes = await tc.delete()
    rows = [
        {"tool": o.key, "action": o.action, "result": o.result, "message": o.message}
        for o in outcomes
    ]
    ok = all(o.result == "done" for o in outcomes)
    return web.json_response({"outcomes": rows, "ok": ok}, status=200 if ok else 207)


async def toolchain_plan(request: web.Request) -> web.StreamResponse:
    return await _toolchain_call(request, "plan")


async def toolchain_apply(request: web.Request) -> web.StreamResponse:
    return await _toolchain_call(request, "apply")


async def toolchain_delete(request: web.Request) -> web.StreamResponse:
    return await _toolchain_call(request, "delete")


async def toolchain_status(request: web.Request) -> web.StreamResponse:
    core = _core(request)
    namespace = request.query.get("namespace", "default")
    from core_service.store import StateStore

    state = await StateStore(core.db, namespace, core.box).load()
    return web.json_response(
        [
            {
                "tool": s.key,
                "plugin": s.plugin,
                "outputs": s.outputs,
                "applied_at": s.updated_at.isoformat() if s.updated_at else None,
                "depends_on": s.depends_on,
            }
            for s in state.values()
        ]
    )


async def openapi(request: web.Request) -> web.StreamResponse:
    from core_service.api._openapi import document

    return web.json_response(document(ROUTES))


ROUTES: list[Route] = [
    Route("GET", "/healthz", healthz, "Liveness", tags=("health",), public=True),
    Route(
        "GET",
        "/readyz",
        readyz,
        "Readiness: database and plugins",
        tags=("health",),
        public=True,
        responses={503: "not ready"},
    ),
    Route(
        "GET",
        "/metrics",
        metrics_text,
        "Prometheus metrics",
        tags=("health",),
        public=True,
        produces="text/plain",
    ),
    Route("GET", "/openapi.json", openapi, "This document", tags=("meta",), public=True),
    Route("GET", "/plugins", list_plugins, "Installed and remote plugins", tags=("plugins",)),
    Route("GET", "/plugins/{name}", get_plugin, "A plugin's metadata", tags=("plugins",)),
    Route(
        "GET",
        "/plugins/{name}/health",
        plugin_health,
        "A plugin's health",
        tags=("plugins",),
        responses={503: "not serving"},
    ),
    Route(
        "POST",
        "/plugins/{name}/restart",
        restart_plugin,
        "Restart a plugin process",
        tags=("plugins",),
    ),
    Route(
        "GET",
        "/connections",
        list_connections,
        "Connections (secrets by name only)",
        tags=("connections",),
    ),
    Route(
        "POST",
        "/connections",
        add_connection,
        "Add a connection (secrets write-only)",
        CONNECTION_BODY,
        tags=("connections",),
        responses={201: "created", 409: "a connection with that name exists"},
    ),
    Route("GET", "/connections/{name}", get_connection, "One connection", tags=("connections",)),
    Route(
        "DELETE",
        "/connections/{name}",
        delete_connection,
        "Remove a connection",
        tags=("connections",),
    ),
    Route(
        "POST",
        "/connections/{name}/test",
        test_connection,
        "Test a connection",
        tags=("connections",),
    ),
    Route("GET", "/pipelines", list_pipelines, "Recent pipelines", tags=("pipelines",)),
    Route(
        "POST",
        "/pipelines",
        create_pipeline,
        "Create and start a pipeline",
        PIPELINE_BODY,
        tags=("pipelines",),
        responses={201: "created and started", 409: "a connection or plugin conflict"},
    ),
    Route(
        "GET",
        "/pipelines/{id}",
        get_pipeline,
        "A pipeline with its tasks and subtasks",
        tags=("pipelines",),
    ),
    Route(
        "POST",
        "/pipelines/{id}/cancel",
        cancel_pipeline,
        "Cancel a pipeline",
        tags=("pipelines",),
        responses={202: "cancel requested"},
    ),
    Route(
        "POST",
        "/pipelines/{id}/rerun",
        rerun_pipeline,
        "Run again, or only what failed",
        RERUN_BODY,
        tags=("pipelines",),
        responses={202: "started", 409: "the pipeline is running"},
    ),
    Route(
        "GET",
        "/pipelines/{id}/events",
        pipeline_events,
        "Live progress (server-sent events)",
        tags=("pipelines",),
        produces="text/event-stream",
    ),
    Route(
        "POST",
        "/toolchain/plan",
        toolchain_plan,
        "What apply would change",
        TOOLCHAIN_BODY,
        tags=("toolchain",),
    ),
    Route(
        "POST",
        "/toolchain/apply",
        toolchain_apply,
        "Make reality match the config",
        TOOLCHAIN_BODY,
        tags=("toolchain",),
        responses={207: "some tools failed", 409: "the state is locked by another apply"},
    ),
    Route(
        "POST",
        "/toolchain/delete",
        toolchain_delete,
        "Delete the config's tools",
        TOOLCHAIN_BODY,
        tags=("toolchain",),
        responses={207: "some tools failed", 409: "the state is locked by another apply"},
    ),
    Route(
        "GET",
        "/toolchain/status",
        toolchain_status,
        "Stored state of a namespace",
        tags=("toolchain",),
    ),
    # Last: everything else below a plugin is the plugin's own endpoints.
    *(
        Route(
            m,
            "/plugins/{name}/{path:(?!health$|restart$).+}",
            plugin_api,
            "The plugin's own endpoint",
            API_CALL_BODY if m in ("POST", "PUT", "PATCH") else None,
            tags=("plugins",),
        )
        for m in ("GET", "POST", "PUT", "PATCH", "DELETE")
    ),
]
