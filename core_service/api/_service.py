"""The core as a service: one database, one plugin host, pipelines that survive restarts."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import tempfile
from collections import defaultdict
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sqlalchemy import text

from core_service.host import PluginHost, RemoteTLS
from core_service.host._handles import ManagedPlugin
from core_service.lake import PipelinePlan, PipelineRunner
from core_service.store import Database, SecretBox, StateLock, StateStore
from core_service.toolchain import Config, Toolchain, load_config

log = logging.getLogger("dtm.service")


def remote_tls_from_env(environ: Mapping[str, str] = os.environ) -> RemoteTLS | None:
    ca, cert, key = (environ.get(f"DTM_REMOTE_TLS_{k}") for k in ("CA", "CERT", "KEY"))
    if not (ca and cert and key):
        return None
    return RemoteTLS(Path(ca), Path(cert), Path(key), environ.get("DTM_REMOTE_TLS_SERVER_NAME", ""))


class Core:
    """What the API's handlers use; owns its database, plugin host and pipeline tasks."""

    def __init__(
        self,
        database_url: str,
        *,
        plugin_dirs: list[str] | None = None,
        remotes: Mapping[str, str] | None = None,
    ) -> None:
        self.database_url = database_url
        self.db = Database(database_url)
        self.box = SecretBox()
        self.host = PluginHost(
            plugin_dirs=plugin_dirs or [], remotes=remotes, remote_tls=remote_tls_from_env()
        )
        self.runner = PipelineRunner(self.db, self.host, box=self.box, progress=self._progress)
        self.running: dict[int, asyncio.Task[str]] = {}
        self.cancels: dict[int, asyncio.Event] = {}
        self.subscribers: dict[int, list[asyncio.Queue[dict[str, Any]]]] = defaultdict(list)

    async def start(self) -> None:
        await self.db.migrate()
        for pipeline_id in await self.runner.resumable():
            log.warning("resuming pipeline %d left unfinished by a previous core", pipeline_id)
            await self.runner.prepare_rerun(pipeline_id, failed_only=True)
            self.launch(pipeline_id)

    async def stop(self) -> None:
        """Stop serving: running pipelines are interrupted, not cancelled, and resume on start.

        What each committed stays, with its checkpoint; the pipeline is marked pending so
        the next core (this one restarted, or another replica) picks it up.
        """
        interrupted = list(self.running)
        for task in list(self.running.values()):
            task.cancel()
        for task in list(self.running.values()):
            with contextlib.suppress(BaseException):
                await task
        for pipeline_id in interrupted:
            await self.runner.mark_interrupted(pipeline_id)
        await self.host.aclose()
        await self.db.aclose()

    # -- pipelines ---------------------------------------------------------------------------
    def launch(self, pipeline_id: int) -> None:
        cancel = self.cancels[pipeline_id] = asyncio.Event()
        task = asyncio.create_task(self.runner.run(pipeline_id, cancel))
        self.running[pipeline_id] = task

        def done(t: asyncio.Task[str]) -> None:
            self.running.pop(pipeline_id, None)
            self.cancels.pop(pipeline_id, None)
            if not t.cancelled() and t.exception():
                log.error("pipeline %d failed: %s", pipeline_id, t.exception())

        task.add_done_callback(done)

    async def create_pipeline(self, plan: PipelinePlan) -> int:
        for stage in plan.stages:
            for task in stage:
                self.host.require(task.plugin)
        pipeline_id = await self.runner.create(plan)
        self.launch(pipeline_id)
        return pipeline_id

    async def cancel_pipeline(self, pipeline_id: int) -> None:
        await self.runner.request_cancel(pipeline_id)
        if pipeline_id in self.cancels:
            self.cancels[pipeline_id].set()

    async def rerun_pipeline(self, pipeline_id: int, failed_only: bool) -> None:
        if pipeline_id in self.running:
            from core_service.lake import PipelineError

            raise PipelineError(f"pipeline {pipeline_id} is running; cancel it first")
        await self.runner.prepare_rerun(pipeline_id, failed_only)
        self.launch(pipeline_id)

    def _progress(self, kind: str, pipeline: int, task: int, sub: str, f: dict[str, Any]) -> None:
        event = {"kind": kind, "pipeline": pipeline, "task": task, "subtask": sub, **f}
        for queue in self.subscribers.get(pipeline, []):
            if queue.qsize() < 1000:  # a slow reader loses progress ticks, not the end
                queue.put_nowait(event)

    # -- toolchain ---------------------------------------------------------------------------
    def load_toolchain_config(self, text_: str) -> Config:
        with tempfile.TemporaryDirectory(prefix="dtm-api-") as d:
            path = Path(d) / "config.yaml"
            path.write_text(text_)
            config = load_config(path)
        return config

    async def toolchain(self, config: Config) -> Toolchain:
        store = StateStore(self.db, config.state.namespace, self.box)
        return Toolchain(config, self.host, store)

    @contextlib.asynccontextmanager
    async def locked(self, config: Config, purpose: str) -> Any:
        lock = StateLock(self.db, config.state.namespace, purpose=purpose)
        await lock.acquire()
        try:
            yield
        finally:
            await lock.release()

    # -- health ------------------------------------------------------------------------------
    async def readiness(self) -> tuple[bool, dict[str, Any]]:
        checks: dict[str, Any] = {}
        try:
            async with self.db.connect() as conn:
                await conn.execute(text("SELECT 1"))
            checks["database"] = "ok"
        except Exception as exc:
            checks["database"] = f"unreachable: {type(exc).__name__}"

        async def remote(name: str) -> tuple[str, str]:
            handle = await self.host.get(name)
            serving = await handle.health(timeout=3.0)
            return f"plugin:{name}", "ok" if serving else "not serving"

        # At once, not one after another: a probe has a deadline.
        checks.update(await asyncio.gather(*(remote(n) for n in sorted(self.host.remotes))))
        for name, handle in self.host.handles().items():
            if isinstance(handle, ManagedPlugin):
                checks[f"plugin:{name}"] = "ok" if handle.status()["alive"] else "restarting"
        ready = all(v == "ok" for v in checks.values())
        return ready, checks
