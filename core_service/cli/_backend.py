"""Where CLI commands run: in this process (embedded), or on a core service (`--server`).

Both backends return the same plain data, so a command prints the same thing either way.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from core_service.errors import DtmError
from core_service.lake import PipelinePlan

ENV_SERVER = "DTM_SERVER"
ENV_TOKEN = "DTM_API_TOKEN"
Progress = Callable[[str, int, int, str, dict[str, Any]], None]


class RemoteError(DtmError):
    """The core service answered with an error."""


class EmbeddedBackend:
    def __init__(
        self, database: str, plugin_dirs: list[str], reattach: str | None, progress: Progress | None
    ) -> None:
        self.database, self.plugin_dirs, self.reattach = database, plugin_dirs, reattach
        self.progress = progress

    @asynccontextmanager
    async def _runner(self) -> AsyncIterator[Any]:
        from core_service.host import PluginHost
        from core_service.lake import PipelineRunner
        from core_service.store import Database

        async with (
            Database(self.database) as db,
            PluginHost(plugin_dirs=self.plugin_dirs, reattach=self.reattach) as host,
        ):
            yield PipelineRunner(db, host, progress=self.progress)

    async def run_pipeline(
        self, plan: PipelinePlan, started: Callable[[int], None]
    ) -> dict[str, Any]:
        async with self._runner() as runner:
            pipeline_id = await runner.create(plan)
            started(pipeline_id)
            await _with_signals(lambda cancel: runner.run(pipeline_id, cancel), pipeline_id)
            return dict(await runner.get(pipeline_id))

    async def rerun(self, pipeline_id: int, failed_only: bool) -> dict[str, Any]:
        async with self._runner() as runner:
            await runner.prepare_rerun(pipeline_id, failed_only=failed_only)
            await _with_signals(lambda cancel: runner.run(pipeline_id, cancel), pipeline_id)
            return dict(await runner.get(pipeline_id))

    async def recent(self) -> list[dict[str, Any]]:
        async with self._runner() as runner:
            return list(await runner.recent())

    async def get(self, pipeline_id: int) -> dict[str, Any]:
        async with self._runner() as runner:
            return dict(await runner.get(pipeline_id))

    async def cancel(self, pipeline_id: int) -> dict[str, Any]:
        async with self._runner() as runner:
            await runner.request_cancel(pipeline_id)
            return dict(await runner.get(pipeline_id))

    async def add_connection(self, body: dict[str, Any]) -> dict[str, Any]:
        async with self._runner() as runner:
            if body["plugin"] not in runner.host.names():
                runner.host.require(body["plugin"])
            secrets = {k: body.pop(k) for k in ("token", "password") if k in body}
            plugin, name, endpoint = body.pop("plugin"), body.pop("name"), body.pop("endpoint", "")
            made = await runner.connections.add(plugin, name, endpoint, body, secrets)
            return dict(made.public())

    async def connections(self) -> list[dict[str, Any]]:
        async with self._runner() as runner:
            return [c.public() for c in await runner.connections.all()]

    async def remove_connection(self, name: str) -> None:
        async with self._runner() as runner:
            await runner.connections.remove(name)

    async def test_connection(self, name: str) -> tuple[int, Any]:
        async with self._runner() as runner:
            conn = await runner.connections.get(name)
            handle = await runner.host.get(conn.plugin)
            public, secrets = conn.for_plugin()
            resp = await handle.call(
                lambda c: c.handle_api(
                    "POST", "/test-connection", connection=public, secrets=secrets
                )
            )
            return resp.status, resp.body


class RemoteBackend:
    """The same operations over the REST API of a running core."""

    def __init__(self, server: str, progress: Progress | None) -> None:
        self.server = server.rstrip("/")
        self.progress = progress
        token = os.environ.get(ENV_TOKEN, "")
        self.headers = {"Authorization": f"Bearer {token}"} if token else {}

    async def call(self, method: str, path: str, body: Any = None) -> Any:
        import aiohttp

        url = f"{self.server}/api/v1{path}"
        try:
            async with (
                aiohttp.ClientSession(headers=self.headers) as session,
                session.request(method, url, json=body) as resp,
            ):
                data = await resp.json(content_type=None)
        except aiohttp.ClientError as exc:
            raise RemoteError(f"cannot reach the core at {self.server}: {exc}") from exc
        if resp.status >= 400:
            err = (data or {}).get("error", {}) if isinstance(data, dict) else {}
            details = err.get("details")
            extra = ("\n  " + "\n  ".join(map(str, details))) if isinstance(details, list) else ""
            raise RemoteError(f"{err.get('message') or f'HTTP {resp.status}'}{extra}")
        return data

    async def _follow(self, pipeline_id: int) -> dict[str, Any]:
        """Read the pipeline's server-sent events, feeding the same progress display."""
        import aiohttp

        url = f"{self.server}/api/v1/pipelines/{pipeline_id}/events"
        timeout = aiohttp.ClientTimeout(total=None, sock_read=60)
        async with aiohttp.ClientSession(headers=self.headers, timeout=timeout) as session:
            async with session.get(url) as resp:
                name = ""
                async for raw in resp.content:
                    line = raw.decode().rstrip("\n")
                    if line.startswith("event: "):
                        name = line[7:]
                    elif line.startswith("data: ") and name != "snapshot" and self.progress:
                        ev = json.loads(line[6:])
                        self.progress(name, ev["pipeline"], ev["task"], ev["subtask"], ev)
        return dict(await self.call("GET", f"/pipelines/{pipeline_id}"))

    async def run_pipeline(
        self, plan: PipelinePlan, started: Callable[[int], None]
    ) -> dict[str, Any]:
        made = await self.call("POST", "/pipelines", plan.as_dict())
        started(int(made["id"]))
        return dict(
            await _with_signals(
                lambda cancel: self._follow_or_cancel(made["id"], cancel), made["id"]
            )
        )

    async def _follow_or_cancel(self, pipeline_id: int, cancel: asyncio.Event) -> dict[str, Any]:
        follow = asyncio.create_task(self._follow(pipeline_id))
        stop = asyncio.create_task(cancel.wait())
        await asyncio.wait({follow, stop}, return_when=asyncio.FIRST_COMPLETED)
        stop.cancel()
        if cancel.is_set() and not follow.done():
            await self.call("POST", f"/pipelines/{pipeline_id}/cancel")
        return await follow

    async def rerun(self, pipeline_id: int, failed_only: bool) -> dict[str, Any]:
        await self.call("POST", f"/pipelines/{pipeline_id}/rerun", {"failedOnly": failed_only})
        return dict(
            await _with_signals(
                lambda cancel: self._follow_or_cancel(pipeline_id, cancel), pipeline_id
            )
        )

    async def recent(self) -> list[dict[str, Any]]:
        return list(await self.call("GET", "/pipelines"))

    async def get(self, pipeline_id: int) -> dict[str, Any]:
        return dict(await self.call("GET", f"/pipelines/{pipeline_id}"))

    async def cancel(self, pipeline_id: int) -> dict[str, Any]:
        return dict(await self.call("POST", f"/pipelines/{pipeline_id}/cancel"))

    async def add_connection(self, body: dict[str, Any]) -> dict[str, Any]:
        return dict(await self.call("POST", "/connections", body))

    async def connections(self) -> list[dict[str, Any]]:
        return list(await self.call("GET", "/connections"))

    async def remove_connection(self, name: str) -> None:
        await self.call("DELETE", f"/connections/{name}")

    async def test_connection(self, name: str) -> tuple[int, Any]:
        try:
            data = await self.call("POST", f"/connections/{name}/test")
        except RemoteError as exc:
            return 400, {"ok": False, "message": str(exc)}
        return int(data["status"]), data["result"]


async def _with_signals(run: Callable[[asyncio.Event], Any], pipeline_id: int) -> Any:
    from core_service.cli._common import err

    cancel = asyncio.Event()
    loop = asyncio.get_running_loop()

    def on_signal(sig: signal.Signals) -> None:
        if not cancel.is_set():
            err.print(
                f"\n{sig.name}: stopping; what was written stays, "
                f"`dtm pipeline rerun {pipeline_id} --failed-only` resumes"
            )
        cancel.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal, sig)
    try:
        return await run(cancel)
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


def backend(ns: Any, progress: Progress | None = None) -> EmbeddedBackend | RemoteBackend:
    server = getattr(ns, "server", None) or os.environ.get(ENV_SERVER)
    if server:
        return RemoteBackend(server, progress)
    from core_service.cli._lake import database_url

    return EmbeddedBackend(database_url(ns), ns.plugin_dir, ns.reattach, progress)
