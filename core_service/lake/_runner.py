"""Running pipelines: stages in order, tasks in parallel, subtasks streamed with checkpoints.

The core owns the database: a collector streams raw rows to it, an extractor gets raw
rows from it and streams tool rows back, a converter gets tool rows and streams domain
rows back. Each batch is written together with its checkpoint in one transaction, so a
crash of the plugin or of the core resumes from the last batch without loss or
duplicates. Cancel stops the running subtask at once; what was committed stays.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import json
import logging
import os
import random
import socket
from collections import defaultdict
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, insert, select, update

from core_service.errors import DtmError
from core_service.host import PluginHost
from core_service.lake._connections import ConnectionStore
from core_service.lake._plan import PipelinePlan
from core_service.lake._schema import pipelines, subtask_state, subtasks, tasks
from core_service.lake._store import LakeStore
from core_service.store import Database, SecretBox, canonical, upsert
from plugin_sdk import PluginError
from plugin_sdk._client import InputBatch, PluginInfo, SubtaskStart

log = logging.getLogger("dtm.pipeline")
UTC = datetime.UTC
HEARTBEAT_SECONDS = 0.5  # also how often a cancel asked from elsewhere is noticed
STALE_AFTER = datetime.timedelta(seconds=30)

# Progress events: (kind, pipeline id, task id, subtask, fields)
Progress = Callable[[str, int, int, str, dict[str, Any]], None]


class PipelineError(DtmError):
    pass


class PipelineCancelled(DtmError):
    pass


@dataclass
class TaskRow:
    id: int
    stage: int
    plugin: str
    options: dict[str, Any]
    subtasks: list[str]
    connection_id: int | None
    full_sync: bool
    status: str


def now() -> datetime.datetime:
    return datetime.datetime.now(UTC)


class PipelineRunner:
    """Creates, runs, cancels and reruns pipelines in one database, through one plugin host."""

    def __init__(
        self,
        db: Database,
        host: PluginHost,
        *,
        box: SecretBox | None = None,
        progress: Progress | None = None,
        batch_size: int = 500,
        window: int = 4,
        max_attempts: int = 3,
        task_parallelism: int = 4,
    ) -> None:
        self.db = db
        self.host = host
        self.box = box or SecretBox()
        self.store = LakeStore(db)
        self.connections = ConnectionStore(db, self.box)
        self.progress = progress or (lambda *a: None)
        self.batch_size = batch_size
        self.window = window
        self.max_attempts = max_attempts
        self._task_sem = asyncio.Semaphore(task_parallelism)
        self.owner = f"{socket.gethostname()} pid {os.getpid()}"

    # -- creating -------------------------------------------------------------------------
    async def create(self, plan: PipelinePlan) -> int:
        """Record a pipeline and its tasks; connections are checked now, not mid-run."""
        conn_ids: dict[str, int] = {}
        for stage in plan.stages:
            for task in stage:
                if task.connection and task.connection not in conn_ids:
                    conn_ids[task.connection] = (await self.connections.get(task.connection)).id
        async with self.db.begin() as conn:
            result = await conn.execute(
                insert(pipelines).values(
                    name=plan.name,
                    plan_json=json.dumps(plan.as_dict()),
                    status="pending",
                    cancel_requested=0,
                    message="",
                    created_at=now(),
                    owner="",
                )
            )
            pid = int(result.inserted_primary_key[0])
            for s, stage in enumerate(plan.stages):
                for p, task in enumerate(stage):
                    await conn.execute(
                        insert(tasks).values(
                            pipeline_id=pid,
                            stage=s,
                            position=p,
                            plugin=task.plugin,
                            options_json=json.dumps(task.options),
                            subtasks_json=json.dumps(task.subtasks),
                            connection_id=conn_ids.get(task.connection or ""),
                            full_sync=int(task.full_sync),
                            status="pending",
                            progress=0.0,
                            message="",
                        )
                    )
        return pid

    # -- reading --------------------------------------------------------------------------
    async def recent(self, limit: int = 50) -> list[dict[str, Any]]:
        async with self.db.connect() as conn:
            rows = await conn.execute(
                select(pipelines).order_by(pipelines.c.id.desc()).limit(limit)
            )
            return [self._pipeline_dict(r) for r in rows.mappings()]

    async def get(self, pipeline_id: int) -> dict[str, Any]:
        async with self.db.connect() as conn:
            row = (
                (await conn.execute(select(pipelines).where(pipelines.c.id == pipeline_id)))
                .mappings()
                .first()
            )
            if row is None:
                raise PipelineError(f"no pipeline {pipeline_id}; `dtm pipeline list` shows them")
            out = self._pipeline_dict(row)
            task_rows = (
                (
                    await conn.execute(
                        select(tasks)
                        .where(tasks.c.pipeline_id == pipeline_id)
                        .order_by(tasks.c.stage, tasks.c.position)
                    )
                )
                .mappings()
                .all()
            )
            sub_rows = (
                (
                    await conn.execute(
                        select(subtasks)
                        .where(subtasks.c.task_id.in_([t["id"] for t in task_rows]))
                        .order_by(subtasks.c.task_id, subtasks.c.position)
                    )
                )
                .mappings()
                .all()
            )
        by_task: dict[int, list[dict[str, Any]]] = defaultdict(list)
        for s in sub_rows:
            by_task[s["task_id"]].append(
                {
                    "name": s["name"],
                    "kind": s["kind"],
                    "status": s["status"],
                    "records": s["records"],
                    "current": s["current"],
                    "total": s["total"],
                    "attempts": s["attempts"],
                    "message": s["message"],
                    "resumable": bool(s["checkpoint_json"]) and s["status"] != "done",
                }
            )
        out["tasks"] = [
            {
                "id": t["id"],
                "stage": t["stage"] + 1,
                "plugin": t["plugin"],
                "status": t["status"],
                "progress": t["progress"],
                "message": t["message"],
                "options": json.loads(t["options_json"]),
                "subtasks": by_task[t["id"]],
            }
            for t in task_rows
        ]
        return out

    @staticmethod
    def _pipeline_dict(r: Any) -> dict[str, Any]:
        def iso(v: Any) -> str | None:
            return v.isoformat(timespec="seconds") if v else None

        return {
            "id": r["id"],
            "name": r["name"],
            "status": r["status"],
            "message": r["message"],
            "created_at": iso(r["created_at"]),
            "started_at": iso(r["started_at"]),
            "finished_at": iso(r["finished_at"]),
            "owner": r["owner"],
            "cancel_requested": bool(r["cancel_requested"]),
        }

    # -- control --------------------------------------------------------------------------
    async def request_cancel(self, pipeline_id: int) -> None:
        """Ask the process running the pipeline to stop it (noticed within half a second)."""
        info = await self.get(pipeline_id)
        async with self.db.begin() as conn:
            if info["status"] in ("pending", "running"):
                await conn.execute(
                    update(pipelines)
                    .where(pipelines.c.id == pipeline_id)
                    .values(cancel_requested=1)
                )
            if info["status"] == "pending" or (info["status"] == "running" and self._stale(info)):
                await conn.execute(
                    update(pipelines)
                    .where(pipelines.c.id == pipeline_id)
                    .values(status="cancelled", finished_at=now(), message="cancelled")
                )

    async def prepare_rerun(self, pipeline_id: int, failed_only: bool) -> None:
        """Reset what a rerun runs again: everything, or only what did not finish."""
        info = await self.get(pipeline_id)
        if info["status"] == "running" and not self._stale(info) and info["owner"] != self.owner:
            raise PipelineError(
                f"pipeline {pipeline_id} is running ({info['owner']}); cancel it first"
            )
        async with self.db.begin() as conn:
            await conn.execute(
                update(pipelines)
                .where(pipelines.c.id == pipeline_id)
                .values(status="pending", cancel_requested=0, message="", finished_at=None)
            )
            ids = [t["id"] for t in info["tasks"]]
            if not failed_only:
                await conn.execute(
                    update(subtasks)
                    .where(subtasks.c.task_id.in_(ids))
                    .values(
                        status="pending",
                        checkpoint_json=None,
                        records=0,
                        current=0,
                        total=0,
                        message="",
                    )
                )
                await conn.execute(
                    update(tasks)
                    .where(tasks.c.id.in_(ids))
                    .values(status="pending", message="", progress=0.0)
                )
            else:
                # Unfinished subtasks keep their checkpoint: they resume, not restart.
                await conn.execute(
                    update(tasks)
                    .where(tasks.c.id.in_(ids), tasks.c.status != "done")
                    .values(status="pending", message="")
                )

    def _stale(self, info: dict[str, Any]) -> bool:
        """A 'running' pipeline whose runner is gone (crashed or killed)."""
        owner = info.get("owner") or ""
        host, _, pid = owner.partition(" pid ")
        if host == socket.gethostname() and pid.isdigit():
            try:
                os.kill(int(pid), 0)
            except ProcessLookupError:
                return True
        return False

    async def mark_interrupted(self, pipeline_id: int) -> None:
        async with self.db.begin() as conn:
            await conn.execute(
                update(pipelines)
                .where(pipelines.c.id == pipeline_id)
                .values(
                    status="interrupted",
                    owner="",
                    message="interrupted by a core shutdown; it resumes when a core starts",
                )
            )

    async def resumable(self) -> list[int]:
        """Pipelines a starting core should resume: interrupted by a shutdown, or left
        'running' by a core that died (its process is gone, or its heartbeat stopped)."""
        async with self.db.connect() as conn:
            rows = (
                (
                    await conn.execute(
                        select(
                            pipelines.c.id,
                            pipelines.c.status,
                            pipelines.c.owner,
                            pipelines.c.heartbeat_at,
                        ).where(pipelines.c.status.in_(["running", "interrupted"]))
                    )
                )
                .mappings()
                .all()
            )
        out = []
        for r in rows:
            beat = r["heartbeat_at"]
            if beat is not None and beat.tzinfo is None:
                beat = beat.replace(tzinfo=UTC)
            stale = self._stale(dict(r)) or beat is None or now() - beat > STALE_AFTER
            if r["status"] == "interrupted" or stale:
                out.append(int(r["id"]))
        return out

    # -- running --------------------------------------------------------------------------
    async def run(self, pipeline_id: int, cancel: asyncio.Event | None = None) -> str:
        """Run (or resume) a pipeline to its end; return its final status."""
        cancel = cancel or asyncio.Event()
        await self.get(pipeline_id)  # a missing pipeline: PipelineError naming it
        async with self.db.begin() as conn:
            await conn.execute(
                update(pipelines)
                .where(pipelines.c.id == pipeline_id)
                .values(
                    status="running",
                    # A rerun or resume keeps when the pipeline first started.
                    started_at=func.coalesce(pipelines.c.started_at, now()),
                    owner=self.owner,
                    heartbeat_at=now(),
                    message="",
                )
            )
        self.progress("pipeline", pipeline_id, 0, "", {"status": "running"})
        beat = asyncio.create_task(self._heartbeat(pipeline_id, cancel))
        status, message = "done", ""
        try:
            task_rows = await self._tasks(pipeline_id)
            for stage in sorted({t.stage for t in task_rows}):
                todo = [t for t in task_rows if t.stage == stage and t.status != "done"]
                results = await asyncio.gather(
                    *(self._run_task(pipeline_id, t, cancel) for t in todo),
                    return_exceptions=True,
                )
                failures = [r for r in results if isinstance(r, BaseException)]
                if cancel.is_set():
                    status, message = "cancelled", "cancelled"
                    break
                if failures:
                    status = "failed"
                    message = "; ".join(_describe(f) for f in failures)
                    break
        except BaseException as exc:
            status, message = (
                ("cancelled", "interrupted") if cancel.is_set() else ("failed", _describe(exc))
            )
            raise
        finally:
            beat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await beat
            async with self.db.begin() as conn:
                await conn.execute(
                    update(pipelines)
                    .where(pipelines.c.id == pipeline_id)
                    .values(status=status, finished_at=now(), message=message[:4000])
                )
            self.progress("pipeline", pipeline_id, 0, "", {"status": status, "message": message})
        return status

    async def _heartbeat(self, pipeline_id: int, cancel: asyncio.Event) -> None:
        while True:
            await asyncio.sleep(HEARTBEAT_SECONDS)
            async with self.db.begin() as conn:
                await conn.execute(
                    update(pipelines)
                    .where(pipelines.c.id == pipeline_id)
                    .values(heartbeat_at=now())
                )
                asked = (
                    await conn.execute(
                        select(pipelines.c.cancel_requested).where(pipelines.c.id == pipeline_id)
                    )
                ).scalar()
            if asked:
                cancel.set()

    async def _tasks(self, pipeline_id: int) -> list[TaskRow]:
        async with self.db.connect() as conn:
            rows = (
                (
                    await conn.execute(
                        select(tasks)
                        .where(tasks.c.pipeline_id == pipeline_id)
                        .order_by(tasks.c.stage, tasks.c.position)
                    )
                )
                .mappings()
                .all()
            )
        return [
            TaskRow(
                r["id"],
                r["stage"],
                r["plugin"],
                json.loads(r["options_json"]),
                json.loads(r["subtasks_json"]),
                r["connection_id"],
                bool(r["full_sync"]),
                r["status"],
            )
            for r in rows
        ]

    async def _set_task(self, task_id: int, **values: Any) -> None:
        async with self.db.begin() as conn:
            await conn.execute(update(tasks).where(tasks.c.id == task_id).values(**values))

    async def _run_task(self, pipeline_id: int, task: TaskRow, cancel: asyncio.Event) -> None:
        async with self._task_sem:
            await self._set_task(task.id, status="running", started_at=now(), message="")
            try:
                await self._task_body(pipeline_id, task, cancel)
            except BaseException as exc:
                status = "cancelled" if cancel.is_set() else "failed"
                await self._set_task(
                    task.id, status=status, finished_at=now(), message=_describe(exc)[:4000]
                )
                self.progress(
                    "task", pipeline_id, task.id, "", {"status": status, "message": _describe(exc)}
                )
                raise
            await self._set_task(task.id, status="done", finished_at=now(), progress=1.0)
            self.progress("task", pipeline_id, task.id, "", {"status": "done"})

    async def _task_body(self, pipeline_id: int, task: TaskRow, cancel: asyncio.Event) -> None:
        handle = await self.host.get(task.plugin)
        info = await handle.info()
        if "data" not in info.capabilities:
            raise PipelineError(
                f"plugin {task.plugin} has no data subtasks; it cannot run in a pipeline"
            )
        conn_json: dict[str, Any] = {}
        secrets: dict[str, str] = {}
        if task.connection_id is not None:
            connection = await self.connections.get(task.connection_id)
            conn_json, secrets = connection.for_plugin()
        task_data = await handle.call(
            lambda c: c.prepare_task_data(task.options, conn_json, secrets)
        )
        params = str(
            task_data.get("params")
            or canonical({"ConnectionId": task.connection_id or 0, **task.options})
        )
        scripts = await handle.call(lambda c: c.migration_scripts())
        raw_names = [s["output_tables"][0] for s in info.subtasks if s["kind"] == "collector"]
        await self.store.ensure_plugin_tables(task.plugin, scripts, raw_names)
        chosen = self._choose(info, task)
        await self._ensure_subtask_rows(task.id, chosen)
        for position, sub in enumerate(chosen):
            row = await self._subtask_row(task.id, sub["name"])
            if row["status"] == "done":
                continue
            attempt = 0
            progress_mark = row["checkpoint_json"]
            while True:
                attempt += 1
                try:
                    await self._run_subtask(
                        pipeline_id,
                        task,
                        sub,
                        handle,
                        task_data,
                        params,
                        conn_json,
                        secrets,
                        cancel,
                    )
                    break
                except PluginError as exc:
                    retriable = exc.retriable or getattr(exc, "retriable", False)
                    if not retriable or attempt >= self.max_attempts or cancel.is_set():
                        raise
                except DtmError as exc:
                    if not exc.retriable or attempt >= self.max_attempts or cancel.is_set():
                        raise
                # An attempt that moved the checkpoint made progress: the budget counts
                # failures in a row, so a rolling upgrade of many replicas does not use it up.
                mark = (await self._subtask_row(task.id, sub["name"]))["checkpoint_json"]
                if mark != progress_mark:
                    progress_mark, attempt = mark, 0
                delay = min(5.0, 0.25 * 2**attempt) * (0.8 + 0.4 * random.random())
                log.warning(
                    "subtask %s of task %d failed (attempt %d); resuming from its checkpoint "
                    "in %.1fs",
                    sub["name"],
                    task.id,
                    attempt,
                    delay,
                )
                # Backoff: a channel reconnecting to replicas needs a moment, and retrying
                # at once would spend every attempt within milliseconds.
                await asyncio.sleep(delay)
            await self._set_task(task.id, progress=(position + 1) / len(chosen))

    @staticmethod
    def _choose(info: PluginInfo, task: TaskRow) -> list[dict[str, Any]]:
        known = {s["name"]: s for s in info.subtasks}
        if task.subtasks:
            unknown = [n for n in task.subtasks if n not in known]
            if unknown:
                raise PipelineError(
                    f"plugin {task.plugin} has no subtask(s) {unknown}; it has {sorted(known)}"
                )
            wanted = set(task.subtasks)
            return [s for s in info.subtasks if s["name"] in wanted]
        return [s for s in info.subtasks if s["enabled_by_default"]]

    async def _ensure_subtask_rows(self, task_id: int, chosen: list[dict[str, Any]]) -> None:
        async with self.db.begin() as conn:
            have = set(
                (
                    await conn.execute(select(subtasks.c.name).where(subtasks.c.task_id == task_id))
                ).scalars()
            )
            for i, s in enumerate(chosen):
                if s["name"] not in have:
                    await conn.execute(
                        insert(subtasks).values(
                            task_id=task_id,
                            name=s["name"],
                            position=i,
                            kind=s["kind"],
                            status="pending",
                            records=0,
                            current=0,
                            total=0,
                            attempts=0,
                            message="",
                        )
                    )

    async def _subtask_row(self, task_id: int, name: str) -> dict[str, Any]:
        async with self.db.connect() as conn:
            row = (
                (
                    await conn.execute(
                        select(subtasks).where(
                            subtasks.c.task_id == task_id, subtasks.c.name == name
                        )
                    )
                )
                .mappings()
                .one()
            )
        return dict(row)

    async def _set_subtask(self, task_id: int, name: str, **values: Any) -> None:
        async with self.db.begin() as conn:
            await conn.execute(
                update(subtasks)
                .where(subtasks.c.task_id == task_id, subtasks.c.name == name)
                .values(**values)
            )

    async def _run_subtask(
        self,
        pipeline_id: int,
        task: TaskRow,
        sub: dict[str, Any],
        handle: Any,
        task_data: dict[str, Any],
        params: str,
        conn_json: dict[str, Any],
        secrets: dict[str, str],
        cancel: asyncio.Event,
    ) -> None:
        name = sub["name"]
        row = await self._subtask_row(task.id, name)
        checkpoint = json.loads(row["checkpoint_json"]) if row["checkpoint_json"] else None
        state = {} if task.full_sync else await self._load_state(task.plugin, params, name)
        input_table = sub["input_table"]
        if checkpoint is None and sub["kind"] == "collector":
            # A fresh full collection replaces what an earlier run collected; a collector
            # driven by parent rows asks again for every parent, so it always starts clean.
            if task.full_sync or not state or input_table:
                await self.store.delete_scope(sub["output_tables"][0], params)
        await self._set_subtask(
            task.id,
            name,
            status="running",
            started_at=now(),
            attempts=row["attempts"] + 1,
            message="",
        )
        self.progress("subtask", pipeline_id, task.id, name, {"status": "running"})
        window = asyncio.Semaphore(self.window)
        after = checkpoint.get("after") if isinstance(checkpoint, dict) else None

        async def inputs() -> AsyncIterator[InputBatch]:
            position = after
            while True:
                await window.acquire()
                rows, position = await self.store.read_after(
                    input_table, params, position, self.batch_size
                )
                if not rows:
                    return
                yield InputBatch(input_table, rows, json.dumps({"after": position}))

        start = SubtaskStart(
            subtask=name,
            options=task.options,
            task_data=task_data,
            connection=conn_json,
            secrets=secrets,
            checkpoint=None if input_table else checkpoint,
            state=state,
            full_sync=task.full_sync,
        )

        async def consume() -> dict[str, Any]:
            client = await handle.client()
            pending: dict[str, list[str]] = defaultdict(list)
            records = row["records"]
            last_progress = 0.0
            loop = asyncio.get_running_loop()
            async for ev in client.run_subtask(start, inputs() if input_table else None):
                if ev.kind == "batch":
                    if ev.table:
                        pending[ev.table].extend(ev.rows)
                    if ev.checkpoint:
                        records += await self.store.commit_batch(
                            task.id, name, params, pending, ev.checkpoint, plugin=task.plugin
                        )
                        pending = defaultdict(list)
                        if input_table:
                            window.release()
                        self.progress("records", pipeline_id, task.id, name, {"records": records})
                elif ev.kind == "progress":
                    if loop.time() - last_progress > 0.5 or ev.current == ev.total:
                        last_progress = loop.time()
                        await self._set_subtask(task.id, name, current=ev.current, total=ev.total)
                    self.progress(
                        "progress",
                        pipeline_id,
                        task.id,
                        name,
                        {"current": ev.current, "total": ev.total},
                    )
                else:
                    return dict(ev.state)
            raise PipelineError(f"plugin {task.plugin} ended subtask {name} without `done`")

        consumer = asyncio.create_task(consume())
        stopper = asyncio.create_task(cancel.wait())
        try:
            await asyncio.wait({consumer, stopper}, return_when=asyncio.FIRST_COMPLETED)
        except BaseException:
            # We are being cancelled (a core shutting down): stop the stream with us.
            consumer.cancel()
            with contextlib.suppress(BaseException):
                await consumer
            raise
        finally:
            stopper.cancel()
        if not consumer.done():
            consumer.cancel()  # closes the stream: the plugin's call is cancelled too
            with contextlib.suppress(asyncio.CancelledError, PluginError):
                await consumer
            await self._set_subtask(
                task.id, name, status="cancelled", finished_at=now(), message="cancelled"
            )
            raise PipelineCancelled(f"subtask {name} was cancelled")
        try:
            new_state = consumer.result()
        except BaseException as exc:
            await self._set_subtask(
                task.id, name, status="failed", finished_at=now(), message=_describe(exc)[:4000]
            )
            self.progress(
                "subtask",
                pipeline_id,
                task.id,
                name,
                {"status": "failed", "message": _describe(exc)},
            )
            raise
        if new_state:
            await self._save_state(task.plugin, params, name, new_state)
        await self._set_subtask(task.id, name, status="done", finished_at=now())
        self.progress("subtask", pipeline_id, task.id, name, {"status": "done"})

    async def _load_state(self, plugin: str, params: str, subtask: str) -> dict[str, Any]:
        async with self.db.connect() as conn:
            text = (
                await conn.execute(
                    select(subtask_state.c.state_json).where(
                        subtask_state.c.plugin == plugin,
                        subtask_state.c.params == params,
                        subtask_state.c.subtask == subtask,
                    )
                )
            ).scalar()
        return json.loads(text) if text else {}

    async def _save_state(self, plugin: str, params: str, subtask: str, state: Any) -> None:
        async with self.db.begin() as conn:
            await upsert(
                conn,
                subtask_state,
                [
                    {
                        "plugin": plugin,
                        "params": params,
                        "subtask": subtask,
                        "state_json": json.dumps(state),
                        "updated_at": now(),
                    }
                ],
                ["plugin", "params", "subtask"],
            )


def _describe(exc: BaseException) -> str:
    if isinstance(exc, DtmError | PluginError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"
