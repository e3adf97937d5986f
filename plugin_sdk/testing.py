"""Helpers for plugin authors: serve a plugin in-process and call it, without the core."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import grpc

from plugin_sdk._client import InputBatch, PluginClient, SubtaskStart
from plugin_sdk._plugin import Plugin
from plugin_sdk._protocol import APP_PROTOCOL_VERSIONS
from plugin_sdk._serve import build_server, set_serving

__all__ = ["PluginClient", "ReplayServer", "SubtaskResult", "run_subtask", "serve_in_process"]


@asynccontextmanager
async def serve_in_process(plugin: Plugin) -> AsyncIterator[PluginClient]:
    """Serve `plugin` on a unix socket in this event loop; yield a connected client.

    The server runs every service a real plugin process offers, so what passes here
    passes through the core too (except the process handshake itself).
    """
    tmp = tempfile.mkdtemp(prefix="dtm-test-")
    path = os.path.join(tmp, "plugin.sock")
    server, health_servicer = await build_server(
        plugin, max(APP_PROTOCOL_VERSIONS), asyncio.Event()
    )
    server.add_insecure_port(f"unix:{path}")
    await server.start()
    await set_serving(health_servicer)
    channel = grpc.aio.insecure_channel(f"unix:{path}")
    client = PluginClient(channel, plugin.name, owns_channel=True)
    try:
        yield client
    finally:
        await client.aclose()
        await server.stop(grace=None)
        shutil.rmtree(tmp, ignore_errors=True)


@dataclass
class SubtaskResult:
    """Everything one subtask run produced, as the core would have received it."""

    rows: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # by table
    checkpoints: list[Any] = field(default_factory=list)
    state: dict[str, Any] = field(default_factory=dict)
    records: int = 0
    progress: list[tuple[int, int]] = field(default_factory=list)


async def run_subtask(
    client: PluginClient,
    subtask: str,
    *,
    options: Mapping[str, Any] | None = None,
    connection: Mapping[str, Any] | None = None,
    task_data: Mapping[str, Any] | None = None,
    inputs: Sequence[Mapping[str, Any]] = (),
    input_table: str = "",
    checkpoint: Any = None,
    state: Mapping[str, Any] | None = None,
    full_sync: bool = False,
    batch_size: int = 100,
) -> SubtaskResult:
    """Run one subtask without the core; `inputs` are raw rows or tool rows to feed it.

    For an extractor, give raw rows as {"id", "params", "data", "url", "input"}.
    """
    rows = [json.dumps(dict(r), default=str) for r in inputs]

    async def batches() -> AsyncIterator[InputBatch]:
        for i in range(0, len(rows), batch_size):
            yield InputBatch(input_table, rows[i : i + batch_size], json.dumps({"after": i}))

    result = SubtaskResult()
    start = SubtaskStart(
        subtask=subtask,
        options=dict(options or {}),
        task_data=dict(task_data or options or {}),
        connection=dict(connection or {}),
        checkpoint=checkpoint,
        state=dict(state or {}),
        full_sync=full_sync,
    )
    async for event in client.run_subtask(start, batches()):
        if event.kind == "batch":
            if event.table:
                table = result.rows.setdefault(event.table, [])
                table.extend(json.loads(r) for r in event.rows)
            if event.checkpoint:
                result.checkpoints.append(json.loads(event.checkpoint))
        elif event.kind == "progress":
            result.progress.append((event.current, event.total))
        else:
            result.state, result.records = event.state, event.records
    return result


class ReplayServer:
    """A real aiohttp server on 127.0.0.1 answering recorded responses, for collectors.

        async with ReplayServer({"GET /repos/o/r/issues": [{"id": 1}]}) as api:
            ... connection={"endpoint": api.url}

    A value is the JSON body (status 200), or {"status": .., "headers": {..}, "body": ..};
    a list of those under one key is answered in turn. Unknown paths answer 404.
    """

    def __init__(self, responses: Mapping[str, Any]) -> None:
        self.responses = {k: list(v) if _is_sequence_of_responses(v) else [v]
                          for k, v in responses.items()}  # fmt: skip
        self.requests: list[str] = []
        self.url = ""
        self._runner: Any = None

    async def __aenter__(self) -> ReplayServer:
        from aiohttp import web

        async def handle(request: web.Request) -> web.StreamResponse:
            key = f"{request.method} {request.path_qs}"
            self.requests.append(key)
            queue = self.responses.get(key) or self.responses.get(
                f"{request.method} {request.path}"
            )
            if not queue:
                return web.json_response({"message": "Not Found"}, status=404)
            answer = queue.pop(0) if len(queue) > 1 else queue[0]
            if isinstance(answer, dict) and "status" in answer and "body" in answer:
                return web.json_response(
                    answer["body"], status=answer["status"], headers=answer.get("headers")
                )
            return web.json_response(answer)

        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", handle)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


def _is_sequence_of_responses(value: Any) -> bool:
    return (
        isinstance(value, list)
        and bool(value)
        and all(isinstance(v, dict) and "status" in v and "body" in v for v in value)
    )
