"""Data-lake subtasks: the @collector, @extractor and @converter decorators and their context.

    class Icla(Plugin):
        tables = [TableSpec("committer", {...}, ("connection_id", "user_name"))]

        @collector(entity="committer")
        async def collect_committers(self, ctx):       # yields raw records
            ...
            yield {"user_name": u, "name": n}

        @extractor(raw="committer", tables=["committer"])
        def extract_committers(self, raw, ctx):         # raw rows -> tool rows
            yield {"connection_id": ctx.connection_id, **raw.data}

        @converter(tool="committer", tables=["accounts"])
        def convert_committers(self, row, ctx):         # tool rows -> domain rows
            yield {"id": ctx.domain_id("IclaCommitter", row["user_name"]), ...}

Each decorator works bare or configured, attaches a frozen SubtaskDef, and fails at
import time with a message that says what is missing.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar, overload

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class SubtaskDef:
    """What a decorator records about one subtask (DevLake's SubTaskMeta)."""

    name: str
    kind: str
    description: str = ""
    enabled_by_default: bool = True
    domain_types: tuple[str, ...] = ()
    dependencies: tuple[str, ...] = ()
    # collector: the raw entity; extractor: the raw entity read; converter: the tool entity read
    input: str = ""
    # extractor: tool entities written; converter: domain tables written
    outputs: tuple[str, ...] = ()
    method: str = ""  # the attribute name on the plugin class
    # collector only: a tool entity whose rows drive it (one call per parent row)
    parents: str = ""

    def resolved(self, plugin: str) -> dict[str, Any]:
        """Metadata with full table names, as GetMetadata reports it."""
        from plugin_sdk._tables import raw_table_name, tool_table_name

        if self.kind == "collector":
            input_table = tool_table_name(plugin, self.parents) if self.parents else ""
            outputs = [raw_table_name(plugin, self.input)]
        elif self.kind == "extractor":
            input_table = raw_table_name(plugin, self.input)
            outputs = [tool_table_name(plugin, o) for o in self.outputs]
        else:
            input_table = tool_table_name(plugin, self.input)
            outputs = list(self.outputs)
        return {
            "name": self.name,
            "description": self.description,
            "kind": self.kind,
            "enabled_by_default": self.enabled_by_default,
            "domain_types": list(self.domain_types),
            "dependencies": list(self.dependencies),
            "input_table": input_table,
            "output_tables": outputs,
        }


_EXAMPLES = {
    "collector": '@collector(entity="issues")',
    "extractor": '@extractor(raw="issues", tables=["issues"])',
    "converter": '@converter(tool="issues", tables=["issues"])',
}
# A bare decorator reads what it needs from the method's name: collect_issues collects
# raw "issues"; extract_issues reads raw "issues" and writes tool "issues".
_PREFIX = {"collector": "collect_", "extractor": "extract_", "converter": "convert_"}


def _decorator(kind: str, fn: F | None, meta: dict[str, Any]) -> Any:
    def wrap(func: F) -> F:
        entity = func.__name__.removeprefix(_PREFIX[kind])
        if func.__name__.startswith(_PREFIX[kind]) and kind != "converter":
            meta["input"] = meta["input"] or entity
            if kind == "extractor":
                meta["outputs"] = meta["outputs"] or (entity,)
        needed = {"input": {"collector": "entity", "extractor": "raw", "converter": "tool"}[kind]}
        if kind != "collector":
            needed["outputs"] = "tables"
        missing = [word for key, word in needed.items() if not meta[key]]
        if missing:
            raise TypeError(
                f"@{kind} on {func.__qualname__} needs {', '.join(missing)}: e.g. {_EXAMPLES[kind]}"
            )
        if kind == "collector" and not inspect.isasyncgenfunction(func):
            raise TypeError(
                f"@collector {func.__qualname__} must be an async generator "
                "(`async def ...` with `yield`)"
            )
        if kind != "collector" and not (
            inspect.isgeneratorfunction(func) or inspect.isasyncgenfunction(func)
        ):
            raise TypeError(f"@{kind} {func.__qualname__} must be a generator yielding rows")
        name = meta.pop("name") or func.__name__
        description = meta.pop("description") or (inspect.getdoc(func) or "").split("\n")[0]
        func.__subtask__ = SubtaskDef(  # type: ignore[attr-defined]
            name=name, kind=kind, description=description, method=func.__name__, **meta
        )
        return func

    return wrap(fn) if fn is not None else wrap


def _meta(
    name: str,
    description: str,
    enabled: bool,
    domain_types: Sequence[str],
    dependencies: Sequence[str],
    input_: str,
    outputs: Sequence[str],
) -> dict[str, Any]:
    return {
        "name": name,
        "description": description,
        "enabled_by_default": enabled,
        "domain_types": tuple(domain_types),
        "dependencies": tuple(dependencies),
        "input": input_,
        "outputs": tuple(outputs),
    }


@overload
def collector(fn: F) -> F: ...
@overload
def collector(
    fn: None = None,
    *,
    entity: str = ...,
    parents: str = ...,
    name: str = ...,
    description: str = ...,
    enabled_by_default: bool = ...,
    domain_types: Sequence[str] = ...,
    dependencies: Sequence[str] = ...,
) -> Callable[[F], F]: ...


def collector(
    fn: F | None = None,
    *,
    entity: str = "",
    parents: str = "",
    name: str = "",
    description: str = "",
    enabled_by_default: bool = True,
    domain_types: Sequence[str] = (),
    dependencies: Sequence[str] = (),
) -> Any:
    """Mark an async generator that yields raw records into `_raw_<plugin>_<entity>`.

    With `parents="pull_requests"` it is called once per row of that tool table, as
    `collect(self, ctx, parent)`: child requests driven by parent rows (the core
    streams the parents in, scoped to the task, and checkpoints per batch of them).
    """
    meta = _meta(name, description, enabled_by_default, domain_types, dependencies, entity, ())
    meta["parents"] = parents
    return _decorator("collector", fn, meta)


@overload
def extractor(fn: F) -> F: ...
@overload
def extractor(
    fn: None = None,
    *,
    raw: str = ...,
    tables: Sequence[str] = ...,
    name: str = ...,
    description: str = ...,
    enabled_by_default: bool = ...,
    domain_types: Sequence[str] = ...,
    dependencies: Sequence[str] = ...,
) -> Callable[[F], F]: ...


def extractor(
    fn: F | None = None,
    *,
    raw: str = "",
    tables: Sequence[str] = (),
    name: str = "",
    description: str = "",
    enabled_by_default: bool = True,
    domain_types: Sequence[str] = (),
    dependencies: Sequence[str] = (),
) -> Any:
    """Mark a generator turning one raw row into tool rows (`_tool_<plugin>_<table>`)."""
    meta = _meta(name, description, enabled_by_default, domain_types, dependencies, raw, tables)
    return _decorator("extractor", fn, meta)


@overload
def converter(fn: F) -> F: ...
@overload
def converter(
    fn: None = None,
    *,
    tool: str = ...,
    tables: Sequence[str] = ...,
    name: str = ...,
    description: str = ...,
    enabled_by_default: bool = ...,
    domain_types: Sequence[str] = ...,
    dependencies: Sequence[str] = ...,
) -> Callable[[F], F]: ...


def converter(
    fn: F | None = None,
    *,
    tool: str = "",
    tables: Sequence[str] = (),
    name: str = "",
    description: str = "",
    enabled_by_default: bool = True,
    domain_types: Sequence[str] = (),
    dependencies: Sequence[str] = (),
) -> Any:
    """Mark a generator turning one tool row into domain rows (tables of plugin_sdk.domain)."""
    meta = _meta(name, description, enabled_by_default, domain_types, dependencies, tool, tables)
    return _decorator("converter", fn, meta)


@dataclass(frozen=True)
class Raw:
    """A raw record a collector yields: the API's data, where it came from, what asked."""

    data: Any
    url: str = ""
    input: Any = None


@dataclass(frozen=True)
class RawRow:
    """A raw row an extractor receives."""

    id: int
    params: str
    data: Any
    url: str
    input: Any
    table: str


@dataclass(frozen=True)
class Row:
    """An output row bound for a named table (a tool entity, or a domain table)."""

    table: str
    data: Mapping[str, Any]


@dataclass
class SubtaskContext:
    """What a subtask sees: options, task data, connection, checkpoint, incremental state."""

    plugin: str
    subtask: str
    options: dict[str, Any]
    task_data: dict[str, Any]
    connection: dict[str, Any]
    checkpoint: Any = None  # the last committed checkpoint when resuming, else None
    state: dict[str, Any] = field(default_factory=dict)  # from the last successful run
    full_sync: bool = False
    params: str = ""  # the raw rows' params: which scope this run collects
    _new_state: dict[str, Any] = field(default_factory=dict)
    _pending_checkpoints: list[tuple[int, Any]] = field(default_factory=list)
    _emitted: int = 0
    _progress: list[tuple[int, int]] = field(default_factory=list)

    @property
    def connection_id(self) -> int:
        return int(self.connection.get("id") or 0)

    def domain_id(self, tool_type: str, *ids: Any) -> str:
        """DevLake's domain id, e.g. github:GithubIssue:1:123456."""
        return ":".join([self.plugin, tool_type, str(self.connection_id), *map(str, ids)])

    def checkpoint_here(self, value: Any) -> None:
        """Everything yielded so far is covered by `value`: a resumed run starts from it."""
        self._pending_checkpoints.append((self._emitted, value))

    def set_state(self, **values: Any) -> None:
        """Incremental state saved when the run succeeds, e.g. set_state(since=...)."""
        self._new_state.update(values)

    def progress(self, current: int, total: int = 0) -> None:
        self._progress.append((current, total))

    def api_client(self, **overrides: Any) -> Any:
        """An ApiClient for this task's connection (endpoint, token, proxy, rate limit)."""
        from plugin_sdk._api_client import ApiClient

        conn = self.connection
        kwargs: dict[str, Any] = {
            "token": conn.get("token") or None,
            "proxy": conn.get("proxy") or None,
        }
        if conn.get("rateLimitPerHour"):
            kwargs["rate_limit_per_hour"] = int(conn["rateLimitPerHour"])
        if conn.get("username") and conn.get("password"):
            kwargs["basic_auth"] = (conn["username"], conn["password"])
        kwargs.update(overrides)
        endpoint = str(conn.get("endpoint") or self.options.get("endpoint") or "")
        return ApiClient(endpoint, **kwargs)


def find_subtasks(cls: type) -> list[SubtaskDef]:
    """The subtasks a plugin class defines, in definition order (bases first)."""
    seen: dict[str, SubtaskDef] = {}
    for klass in reversed(cls.__mro__):
        for attr, value in vars(klass).items():
            definition = getattr(value, "__subtask__", None)
            if isinstance(definition, SubtaskDef):
                seen[attr] = definition
    return list(seen.values())
