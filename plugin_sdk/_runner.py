"""Running one subtask inside the plugin: batches out, checkpoints, progress, resume.

Checkpoints. Every output batch a collector sends carries a checkpoint, so the core can
commit the batch and the checkpoint together and a resumed run neither loses nor
repeats a record. The checkpoint is {"user": V, "skip": N}: V is the last value the
collector gave `ctx.checkpoint_here(V)` (None if it never did), and N counts the
records yielded since. On resume the collector sees ctx.checkpoint == V and the SDK
drops the first N records it yields again.

Extractors and converters get input batches from the core; after each input batch
the SDK sends the output rows and then a marker batch carrying the input's checkpoint.
"""

from __future__ import annotations

import inspect
from collections import defaultdict
from collections.abc import AsyncIterator, Iterable, Mapping
from typing import Any

import orjson

from plugin_sdk._errors import InvalidOptions, PluginInternalError
from plugin_sdk._json import dumps as _dumps
from plugin_sdk._json import loads
from plugin_sdk._subtasks import Raw, RawRow, Row, SubtaskContext, SubtaskDef
from plugin_sdk._tables import LINEAGE_COLUMNS, raw_table_name, tool_table_name

DEFAULT_BATCH = 500


class Output:
    """What a subtask run produces, as plain Python (the servicer wraps it in protobuf)."""

    __slots__ = ("checkpoint", "current", "kind", "records", "rows", "state", "table", "total")

    def __init__(self, kind: str, **kw: Any) -> None:
        self.kind = kind  # "batch", "progress", "done"
        self.table: str = kw.get("table", "")
        self.rows: list[str] = kw.get("rows", [])
        self.checkpoint: str = kw.get("checkpoint", "")
        self.current: int = kw.get("current", 0)
        self.total: int = kw.get("total", 0)
        self.state: str = kw.get("state", "")
        self.records: int = kw.get("records", 0)


async def run_collector(
    plugin: Any, sub: SubtaskDef, ctx: SubtaskContext, batch_size: int = DEFAULT_BATCH
) -> AsyncIterator[Output]:
    table = raw_table_name(plugin.name, sub.input)
    resume = ctx.checkpoint if isinstance(ctx.checkpoint, dict) else {}
    ctx.checkpoint = resume.get("user")
    skip = int(resume.get("skip") or 0)
    user_checkpoint, since_checkpoint, total = ctx.checkpoint, 0, 0
    buffer: list[str] = []

    def flush(rows: list[str], checkpoint: Any, after: int) -> Output:
        return Output("batch", table=table, rows=rows,
                      checkpoint=_dumps({"user": checkpoint, "skip": after}))  # fmt: skip

    gen = getattr(plugin, sub.method)(ctx)
    async for item in gen:
        # Checkpoints taken before this record cover what was yielded up to then.
        for at, value in ctx._pending_checkpoints:
            keep = max(0, len(buffer) - (ctx._emitted - at))
            yield flush(buffer[:keep], value, 0)
            buffer = buffer[keep:]
            user_checkpoint, since_checkpoint = value, len(buffer)
        ctx._pending_checkpoints.clear()
        ctx._emitted += 1
        if skip:
            skip -= 1  # already committed by the run this one resumes
            since_checkpoint += 1
            continue
        record = item if isinstance(item, Raw) else Raw(item)
        buffer.append(_dumps({"data": record.data, "url": record.url, "input": record.input}))
        since_checkpoint += 1
        total += 1
        if len(buffer) >= batch_size:
            yield flush(buffer, user_checkpoint, since_checkpoint)
            buffer = []
        if ctx._progress:
            yield _progress(ctx)
    for at, value in ctx._pending_checkpoints:
        keep = max(0, len(buffer) - (ctx._emitted - at))
        yield flush(buffer[:keep], value, 0)
        buffer = buffer[keep:]
        user_checkpoint, since_checkpoint = value, len(buffer)
    ctx._pending_checkpoints.clear()
    yield flush(buffer, user_checkpoint, since_checkpoint)
    if ctx._progress:
        yield _progress(ctx)
    yield Output("done", state=_dumps(ctx._new_state) if ctx._new_state else "", records=total)


async def run_transform(
    plugin: Any,
    sub: SubtaskDef,
    ctx: SubtaskContext,
    batches: AsyncIterator[tuple[str, list[str], str]],
) -> AsyncIterator[Output]:
    """Extractor, converter or parent-driven collector: for each input batch, rows out,
    then the input's checkpoint."""
    extractor = sub.kind == "extractor"
    if sub.kind == "collector":
        async for child in _run_child_collector(plugin, sub, ctx, batches):
            yield child
        return
    if extractor:
        allowed = {o: tool_table_name(plugin.name, o) for o in sub.outputs}
    else:
        allowed = {o: o for o in sub.outputs}
    default = next(iter(allowed.values()))
    func = getattr(plugin, sub.method)
    is_async = inspect.isasyncgenfunction(func)
    total = 0
    async for table, rows, checkpoint in batches:
        out: dict[str, list[str]] = defaultdict(list)
        for text in rows:
            record = loads(text)
            if extractor:
                data = record.get("data")
                arg: Any = RawRow(
                    id=int(record["id"]), params=str(record.get("params", "")),
                    data=loads(data) if isinstance(data, str) else data,
                    url=str(record.get("url") or ""),
                    input=_maybe_json(record.get("input")), table=table,
                )  # fmt: skip
                lineage = {
                    "_raw_data_params": arg.params, "_raw_data_table": table,
                    "_raw_data_id": arg.id, "_raw_data_remark": "",
                }  # fmt: skip
            else:
                arg = record
                lineage = {k: record.get(k) for k in LINEAGE_COLUMNS}
            produced: Iterable[Any]
            if is_async:
                produced = [r async for r in func(arg, ctx)]
            else:
                produced = func(arg, ctx)
            for item in produced:
                name, data = _target(item, allowed, default, sub)
                full = {**lineage, **data}
                out[name].append(_dumps(full))
                total += 1
        for name, produced_rows in out.items():
            yield Output("batch", table=name, rows=produced_rows)
        yield Output("batch", table="", rows=[], checkpoint=checkpoint or _dumps(None))
        if ctx._progress:
            yield _progress(ctx)
    yield Output("done", state=_dumps(ctx._new_state) if ctx._new_state else "", records=total)


async def _run_child_collector(
    plugin: Any,
    sub: SubtaskDef,
    ctx: SubtaskContext,
    batches: AsyncIterator[tuple[str, list[str], str]],
) -> AsyncIterator[Output]:
    table = raw_table_name(plugin.name, sub.input)
    func = getattr(plugin, sub.method)
    total = 0
    async for _, rows, checkpoint in batches:
        out: list[str] = []
        for text in rows:
            parent = loads(text)
            async for item in func(ctx, parent):
                record = item if isinstance(item, Raw) else Raw(item)
                out.append(_dumps({"data": record.data, "url": record.url,
                                   "input": record.input}))  # fmt: skip
        total += len(out)
        yield Output("batch", table=table, rows=out, checkpoint=checkpoint or _dumps(None))
        if ctx._progress:
            yield _progress(ctx)
    yield Output("done", state=_dumps(ctx._new_state) if ctx._new_state else "", records=total)


def _progress(ctx: SubtaskContext) -> Output:
    """The latest progress the subtask reported; earlier ones are superseded."""
    current, total = ctx._progress[-1]
    ctx._progress.clear()
    return Output("progress", current=current, total=total)


def _maybe_json(value: Any) -> Any:
    if isinstance(value, str) and value[:1] in "{[":
        try:
            return loads(value)
        except orjson.JSONDecodeError:
            return value
    return value


def _target(
    item: Any, allowed: Mapping[str, str], default: str, sub: SubtaskDef
) -> tuple[str, Mapping[str, Any]]:
    if isinstance(item, Row):
        if item.table in allowed:
            return allowed[item.table], item.data
        if item.table in allowed.values():
            return item.table, item.data
        raise InvalidOptions(
            f"{sub.kind} {sub.name} yielded a row for table {item.table!r}, which it does not "
            f"declare in tables={list(allowed)}"
        )
    if isinstance(item, Mapping):
        if len(allowed) > 1:
            raise InvalidOptions(
                f"{sub.kind} {sub.name} writes several tables {list(allowed)}: yield "
                "Row(table, data) to say which"
            )
        return default, item
    raise PluginInternalError(
        f"{sub.kind} {sub.name} yielded {type(item).__name__}; yield a dict or Row(table, data)"
    )
