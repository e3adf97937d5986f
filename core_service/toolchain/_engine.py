"""Plan and apply: make reality match the config through each tool's plugin.

A tool's action is decided from its state and a fresh Read:
    no state                       -> create
    Read returns nothing           -> create   (removed outside dtm)
    options differ from the state  -> update   (options changed)
    Read differs from the state    -> update   (drift)
    in state, not in the config    -> delete   (reverse dependency order)
Statuses are compared after both went through `canonical`, with secrets masked the
same way on both sides, so nothing reports drift that is not there.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from core_service.errors import ConfigError, DtmError
from core_service.host import PluginHost
from core_service.store import (
    SECRET_MARKER,
    StateStore,
    ToolState,
    canonical,
    get_path,
    mask_values,
    split_secrets,
)
from core_service.toolchain._config import (
    REF,
    REF_EXPR,
    Config,
    ConfigProblems,
    Problem,
    ToolSpec,
    _walk,
)
from plugin_sdk import PluginError
from plugin_sdk._plugin import secret_paths as schema_secret_paths

log = logging.getLogger("dtm.toolchain")

CREATE, UPDATE, DELETE, NOOP = "create", "update", "delete", "noop"


@dataclass
class Change:
    key: str
    plugin: str
    action: str
    reason: str
    details: list[str] = field(default_factory=list)
    known: bool = True  # False when it depends on outputs only known after apply

    def as_dict(self) -> dict[str, Any]:
        return {
            "tool": self.key,
            "plugin": self.plugin,
            "action": self.action,
            "reason": self.reason,
            "details": self.details,
        }


@dataclass
class Outcome:
    key: str
    action: str
    result: str  # "done", "failed", "skipped", "cancelled"
    message: str = ""


Progress = Callable[[str, str, str], None]  # (event, tool key, text)


class UnknownOutput(Exception):
    """A reference to an output that exists only after a dependency is applied."""


class Toolchain:
    """One config against one state, through one plugin host."""

    def __init__(
        self,
        config: Config,
        host: PluginHost,
        store: StateStore,
        *,
        parallelism: int = 8,
        progress: Progress | None = None,
    ) -> None:
        self.config = config
        self.host = host
        self.store = store
        self.parallelism = max(1, parallelism)
        self.progress = progress or (lambda event, key, text: None)
        self.tools = config.by_key()
        self._schema_secrets: dict[str, list[str]] = {}
        self._sem = asyncio.Semaphore(self.parallelism)
        # Checks change nothing, so they need not wait for apply's bound.
        self._check_sem = asyncio.Semaphore(max(16, self.parallelism))

    # -- checks before anything runs ------------------------------------------------
    async def check(self, state: Mapping[str, ToolState] | None = None) -> None:
        """Plugins exist and accept each tool's options; raise ConfigProblems otherwise."""
        problems: list[Problem] = []
        names = sorted({t.name for t in self.config.tools})
        known = set(self.host.names())
        for name in names:
            if name not in known:
                import difflib

                close = difflib.get_close_matches(name, sorted(known), n=1)
                for tool in self.config.tools:
                    if tool.name == name:
                        problems.append(
                            Problem(
                                tool.where,
                                f"tool {tool.key}: no plugin named {name!r}",
                                f"did you mean {close[0]!r}?"
                                if close
                                else "`dtm plugin list` shows the installed plugins",
                            )
                        )
        if problems:
            raise ConfigProblems(problems)
        await self.host.start_all(names)
        for name in names:
            info = await (await self.host.get(name)).info()
            self._schema_secrets[name] = schema_secret_paths(info.options_schema)
        state = state if state is not None else {}
        results = await asyncio.gather(*(self._validate(tool, state) for tool in self.config.tools))
        for found in results:
            problems.extend(found)
        if problems:
            raise ConfigProblems(problems)

    async def _validate(self, tool: ToolSpec, state: Mapping[str, ToolState]) -> list[Problem]:
        # References not yet known are replaced by a placeholder and their paths
        # excused, so a schema check does not fail on a value that comes later.
        excused: set[str] = set()
        options = self._resolve(tool, state, placeholder=excused)
        handle = await self.host.get(tool.name)
        async with self._check_sem:
            errors = await handle.call(lambda c: c.validate(options))
        out = []
        for err in errors:
            path, sep, message = err.partition(": ")
            path = path if sep and path != "(options)" else ""
            where = tool.where_option(path) if path else (tool.options_where or tool.where)
            if path in excused:
                continue
            out.append(
                Problem(
                    where,
                    f"tool {tool.key}: option " + (f"{path}: {message}" if path else err),
                    f"`dtm show config -p {tool.name}` shows every option with an example",
                )
            )
        return out

    def secret_paths(self, tool: ToolSpec) -> list[str]:
        return sorted({*self._schema_secrets.get(tool.name, []), *tool.secret_paths})

    # -- resolving ${{ tool.instance.outputs.key }} ----------------------------------
    def _resolve(
        self,
        tool: ToolSpec,
        outputs: Mapping[str, Any],
        placeholder: set[str] | None = None,
    ) -> dict[str, Any]:
        """Options with references replaced by outputs (ToolState or dicts by key)."""

        def lookup(m: re.Match[str], path: str) -> Any:
            expr = REF_EXPR.match(m["expr"])
            assert expr is not None  # checked when the config was loaded
            source = outputs.get(f"{expr['tool']}.{expr['instance']}")
            values = source.outputs if isinstance(source, ToolState) else source
            if values is None:
                if placeholder is not None:
                    placeholder.add(path)
                    return "<known after apply>"
                raise UnknownOutput(m.group(0))
            value = get_path(values, expr["key"])
            if value is None:
                raise ConfigError(
                    f"{tool.where_option(path)}: tool {tool.key} refers to {m.group(0)}, but "
                    f"{expr['tool']}.{expr['instance']} has no output {expr['key']!r} "
                    f"(it has: {', '.join(sorted(values)) or 'none'})"
                )
            return value

        def resolve(value: Any, path: str) -> Any:
            if isinstance(value, dict):
                return {k: resolve(v, f"{path}.{k}" if path else k) for k, v in value.items()}
            if isinstance(value, list):
                return [resolve(v, f"{path}.{i}") for i, v in enumerate(value)]
            if isinstance(value, str) and "${{" in value:
                whole = REF.fullmatch(value.strip())
                if whole:  # the whole value is one reference: keep the output's type
                    return lookup(whole, path)
                return REF.sub(lambda m: str(lookup(m, path)), value)
            return value

        return resolve(tool.options, "")  # type: ignore[no-any-return]

    def _split(
        self, tool: ToolSpec, options: Mapping[str, Any]
    ) -> tuple[dict[str, Any], dict[str, str]]:
        """Options for the wire without secrets, and the secrets by dotted path."""
        return split_secrets(options, self.secret_paths(tool), marker=None)

    def _secret_values(self, *states: ToolState | None) -> set[str]:
        values = set(self.config.secret_values)
        for st in states:
            if st is not None:
                values.update(
                    str(get_path(st.options, p))
                    for p in st.secret_paths
                    if get_path(st.options, p) is not None
                )
        return values

    # -- deciding --------------------------------------------------------------------
    async def decide(
        self, tool: ToolSpec, options: dict[str, Any], stored: ToolState | None
    ) -> Change:
        handle = await self.host.get(tool.name)
        # Read with what was applied; with no state yet, with what is asked for, so a
        # resource created by a run that died before saving its state is adopted, not
        # created twice.
        wire, secrets = self._split(tool, stored.options if stored else options)
        async with self._sem:
            current = await handle.call(lambda c: c.read(wire, secrets, instance=tool.key))
        if stored is None:
            if current is None:
                return Change(tool.key, tool.name, CREATE, "not in the state yet")
            return Change(tool.key, tool.name, UPDATE, "exists but not in the state: adopting it")
        if current is None:
            return Change(tool.key, tool.name, CREATE, "the resource was removed outside dtm")
        if self.store.digest(options) != stored.options_digest:
            changed = _changed_paths(stored.options, options, self.secret_paths(tool))
            return Change(tool.key, tool.name, UPDATE, "options changed", changed)
        masked = mask_values(current, self._secret_values(stored))
        if canonical(masked) != canonical(stored.status):
            drifted = _changed_paths(stored.status, masked, [])
            return Change(tool.key, tool.name, UPDATE, "drift: changed outside dtm", drifted)
        return Change(tool.key, tool.name, NOOP, "up to date")

    def order(self) -> list[ToolSpec]:
        """Tools in dependency order (a valid config has no cycle)."""
        done: set[str] = set()
        out: list[ToolSpec] = []
        pending = list(self.config.tools)
        while pending:
            ready = [t for t in pending if all(d in done for d in t.depends_on)]
            if not ready:
                raise ConfigError("dependency cycle among: " + ", ".join(t.key for t in pending))
            for t in ready:
                out.append(t)
                done.add(t.key)
            pending = [t for t in pending if t.key not in done]
        return out

    async def plan(self, state: Mapping[str, ToolState] | None = None) -> list[Change]:
        state = await self.store.load() if state is None else state
        changes: dict[str, Change] = {}
        events = {t.key: asyncio.Event() for t in self.config.tools}

        async def one(tool: ToolSpec) -> None:
            try:
                for dep in tool.depends_on:
                    await events[dep].wait()
                unknown = [
                    d for d in tool.depends_on if changes[d].action != NOOP and _refers_to(tool, d)
                ]
                stored = state.get(tool.key)
                if unknown and stored is not None:
                    changes[tool.key] = Change(
                        tool.key,
                        tool.name,
                        UPDATE,
                        f"may change: it uses outputs of {', '.join(unknown)}, which change",
                        known=False,
                    )
                    return
                outputs = {k: s for k, s in state.items()}
                options = self._resolve(tool, outputs, placeholder=set())
                changes[tool.key] = await self.decide(tool, options, stored)
            finally:
                events[tool.key].set()

        await asyncio.gather(*(one(t) for t in self.config.tools))
        ordered = [changes[t.key] for t in self.order()]
        for key in self.deletion_order(state, keep=set(self.tools)):
            st = state[key]
            ordered.append(Change(key, st.plugin, DELETE, "in the state but not in the config"))
        return ordered

    @staticmethod
    def deletion_order(state: Mapping[str, ToolState], keep: set[str]) -> list[str]:
        """Keys to delete, dependents before what they depend on."""
        doomed = {k for k in state if k not in keep}
        out: list[str] = []
        while doomed:
            # A tool can go once no remaining doomed tool depends on it.
            free = sorted(k for k in doomed if not any(k in state[o].depends_on for o in doomed))
            if not free:
                free = sorted(doomed)  # a cycle in old state: delete anyway
            out.extend(free)
            doomed -= set(free)
        return out

    # -- applying --------------------------------------------------------------------
    async def apply(
        self,
        stop: asyncio.Event | None = None,
        state: Mapping[str, ToolState] | None = None,
    ) -> list[Outcome]:
        """Make reality match the config; state is saved after every change."""
        stop = stop or asyncio.Event()
        state = dict(await self.store.load() if state is None else state)
        outcomes: dict[str, Outcome] = {}
        done = {t.key: asyncio.Event() for t in self.config.tools}
        live_outputs: dict[str, Any] = {k: s for k, s in state.items()}

        async def one(tool: ToolSpec) -> None:
            try:
                for dep in tool.depends_on:
                    await done[dep].wait()
                bad = [d for d in tool.depends_on if outcomes[d].result != "done"]
                if bad:
                    outcomes[tool.key] = Outcome(
                        tool.key, "", "skipped", f"{', '.join(bad)} did not succeed"
                    )
                    self.progress("skipped", tool.key, outcomes[tool.key].message)
                    return
                if stop.is_set():
                    outcomes[tool.key] = Outcome(tool.key, "", "cancelled", "interrupted")
                    return
                outcomes[tool.key] = await self._apply_one(tool, state.get(tool.key), live_outputs)
            except Exception as exc:
                outcomes[tool.key] = Outcome(tool.key, "", "failed", _describe(exc))
                self.progress("failed", tool.key, outcomes[tool.key].message)
            finally:
                done[tool.key].set()

        deletions = self.deletion_order(state, keep=set(self.tools))
        for outcome in await self._delete_keys(deletions, state, stop):
            outcomes[outcome.key] = outcome
        await asyncio.gather(*(one(t) for t in self.config.tools))
        order = [t.key for t in self.order()]
        return [outcomes[k] for k in deletions] + [outcomes[k] for k in order]

    async def _apply_one(
        self, tool: ToolSpec, stored: ToolState | None, live_outputs: dict[str, Any]
    ) -> Outcome:
        options = self._resolve(tool, live_outputs)
        change = await self.decide(tool, options, stored)
        if change.action == NOOP:
            self.progress("noop", tool.key, "up to date")
            return Outcome(tool.key, NOOP, "done")
        handle = await self.host.get(tool.name)
        wire, secrets = self._split(tool, options)
        method = "create" if change.action == CREATE else "update"
        async with self._sem:
            # Announced once it holds a slot, and finished (state saved) before it gives
            # the slot back: the display shows what really runs.
            self.progress("start", tool.key, f"{change.action}: {change.reason}")
            try:
                status = await handle.call(
                    lambda c: getattr(c, method)(wire, secrets, instance=tool.key)
                )
                await self.store.save(
                    key=tool.key,
                    plugin=tool.name,
                    instance_id=tool.instance_id,
                    options=options,
                    secret_paths=[
                        p for p in self.secret_paths(tool) if get_path(options, p) is not None
                    ],
                    status=status,
                    depends_on=tool.depends_on,
                    created_at=stored.updated_at if stored else None,
                )
            except Exception as exc:
                self.progress("failed", tool.key, _describe(exc))
                return Outcome(tool.key, change.action, "failed", _describe(exc))
            live_outputs[tool.key] = status.get("outputs") or {}
            self.progress("done", tool.key, f"{change.action}d ({change.reason})")
        return Outcome(tool.key, change.action, "done", change.reason)

    async def _delete_keys(
        self, keys: list[str], state: Mapping[str, ToolState], stop: asyncio.Event
    ) -> list[Outcome]:
        """Delete in order; a failure stops the deletion of what it depends on."""
        outcomes: list[Outcome] = []
        failed: set[str] = set()
        for key in keys:
            st = state[key]
            blocked = [o for o in failed if key in state[o].depends_on]
            if stop.is_set() or blocked:
                why = "interrupted" if stop.is_set() else f"{', '.join(blocked)} was not deleted"
                outcomes.append(Outcome(key, DELETE, "skipped", why))
                failed.add(key)
                continue
            try:
                await self._delete_one(st)
                outcomes.append(Outcome(key, DELETE, "done", "deleted"))
            except Exception as exc:
                failed.add(key)
                outcomes.append(Outcome(key, DELETE, "failed", _describe(exc)))
                self.progress("failed", key, _describe(exc))
        return outcomes

    async def _delete_one(self, st: ToolState) -> None:
        handle = await self.host.get(st.plugin)
        public, secrets = split_secrets(st.options, st.secret_paths, marker=None)
        async with self._sem:
            self.progress("start", st.key, "delete")
            await handle.call(lambda c: c.delete(public, secrets, instance=st.key))
        await self.store.delete(st.key)
        self.progress("done", st.key, "deleted")

    async def delete(
        self,
        stop: asyncio.Event | None = None,
        only_config: bool = True,
        state: Mapping[str, ToolState] | None = None,
    ) -> list[Outcome]:
        """Delete the config's tools (or every tool in the state), dependents first."""
        stop = stop or asyncio.Event()
        state = await self.store.load() if state is None else state
        keys = [k for k in state if (k in self.tools or not only_config)]
        order = self.deletion_order({k: state[k] for k in keys}, keep=set())
        return await self._delete_keys(order, state, stop)


def _refers_to(tool: ToolSpec, dep: str) -> bool:
    return any(r.tool == dep for r in tool.references)


def _changed_paths(old: Any, new: Any, secret: list[str]) -> list[str]:
    a = dict(_walk(old))
    b = dict(_walk(new))
    out = []
    for path in sorted(set(a) | set(b)):
        if canonical(a.get(path)) != canonical(b.get(path)):
            hidden = any(path == s or path.startswith(s + ".") for s in secret)
            if hidden or a.get(path) == SECRET_MARKER:
                out.append(f"{path}: (secret changed)")
            else:
                out.append(f"{path}: {_short(a.get(path))} -> {_short(b.get(path))}")
    return out


def _short(value: Any) -> str:
    text = canonical(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _describe(exc: BaseException) -> str:
    if isinstance(exc, DtmError | PluginError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"
