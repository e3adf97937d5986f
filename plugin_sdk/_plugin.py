"""The Plugin base class an author subclasses, writing only the methods it supports."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from plugin_sdk._errors import InvalidOptions
from plugin_sdk._subtasks import SubtaskDef, find_subtasks
from plugin_sdk._tables import TableSpec, tool_table_name

# The resource calls a plugin may implement, by wire name and method name.
RESOURCE_METHODS: dict[str, str] = {
    "Create": "create",
    "Read": "read",
    "Update": "update",
    "Delete": "delete",
}


@dataclass(frozen=True)
class ApiRequest:
    """A call to one of the plugin's own REST endpoints, proxied by the core."""

    method: str
    path: str
    query: Mapping[str, str] = field(default_factory=dict)
    body: Any = None
    connection: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class ApiResponse:
    status: int = 200
    body: Any = None


class Plugin:
    """Base class of every plugin.

    Set `name` and `version`, describe options with a JSON Schema in `options_schema`
    (mark secret options with `"x-secret": true`), then override what the plugin
    supports. The others answer UNIMPLEMENTED naming the plugin.

    Resource methods follow DevStream's interface: `create`, `read` and `update`
    return the resource status (a JSON-able dict whose "outputs" key holds values
    other tools may reference); `read` returns None when the resource does not
    exist; `delete` returns whether it deleted something.
    """

    name: ClassVar[str] = ""
    version: ClassVar[str] = "0.0.0"
    description: ClassVar[str] = ""
    root_package_path: ClassVar[str] = ""
    options_schema: ClassVar[Mapping[str, Any] | None] = None
    connection_schema: ClassVar[Mapping[str, Any] | None] = None
    # Tool tables of a data plugin; a short name "issues" becomes _tool_<plugin>_issues.
    tables: ClassVar[Sequence[TableSpec]] = ()

    async def init(self, config: Mapping[str, Any]) -> None:
        """Called once after the handshake with the core's plugin settings."""

    async def validate(self, options: Mapping[str, Any]) -> list[str]:
        """Return what is wrong with the options (empty when they are fine).

        The default checks `options_schema`; override to add checks a schema cannot
        express, calling `super().validate(options)` first.
        """
        if not self.options_schema:
            return []
        return schema_errors(self.options_schema, options)

    async def create(self, options: Mapping[str, Any]) -> dict[str, Any]:
        raise NotImplementedError

    async def read(self, options: Mapping[str, Any]) -> dict[str, Any] | None:
        raise NotImplementedError

    async def update(self, options: Mapping[str, Any]) -> dict[str, Any]:
        raise NotImplementedError

    async def delete(self, options: Mapping[str, Any]) -> bool:
        raise NotImplementedError

    async def handle_api(self, request: ApiRequest) -> ApiResponse:
        raise NotImplementedError

    async def prepare_task_data(
        self, options: Mapping[str, Any], connection: Mapping[str, Any]
    ) -> dict[str, Any]:
        """Turn a task's options into what its subtasks need (DevLake's PrepareTaskData).

        Return a dict; its "params" key, when given, scopes the raw rows of this task
        (default: the connection id and the options).
        """
        return dict(options)

    @classmethod
    def subtasks(cls) -> list[SubtaskDef]:
        return find_subtasks(cls)

    @classmethod
    def tool_tables(cls) -> list[TableSpec]:
        """The declared tool tables with their full names."""
        out = []
        for spec in cls.tables:
            if not spec.name.startswith("_tool_"):
                spec = dataclasses.replace(spec, name=tool_table_name(cls.name, spec.name))
            out.append(spec)
        return out

    @classmethod
    def implemented(cls) -> list[str]:
        """Wire names of the calls this plugin class overrides."""
        names = ["GetMetadata", "Init", "Validate"]
        for wire, attr in (*RESOURCE_METHODS.items(), ("HandleApi", "handle_api")):
            if getattr(cls, attr) is not getattr(Plugin, attr):
                names.append(wire)
        if cls.subtasks():
            names += ["PrepareTaskData", "RunSubtask", "MigrationScripts"]
        return names

    @classmethod
    def capabilities(cls) -> list[str]:
        implemented = cls.implemented()
        caps = []
        if any(wire in implemented for wire in RESOURCE_METHODS):
            caps.append("resource")
        if "HandleApi" in implemented:
            caps.append("api")
        if cls.subtasks():
            caps.append("data")
        return caps


_validators: dict[int, tuple[Mapping[str, Any], Any]] = {}


def _validator(schema: Mapping[str, Any]) -> Any:
    """One compiled validator per schema object: building one costs more than validating."""
    cached = _validators.get(id(schema))
    if cached is None or cached[0] is not schema:
        import jsonschema  # imported on use: it costs start-up time most calls do not need

        cached = _validators[id(schema)] = (schema, jsonschema.Draft202012Validator(schema))
    return cached[1]


def schema_errors(schema: Mapping[str, Any], options: Mapping[str, Any]) -> list[str]:
    """Validate options against a JSON Schema; each error names the option's path."""
    validator = _validator(schema)
    errors = []
    for err in sorted(validator.iter_errors(options), key=lambda e: list(e.absolute_path)):
        where = ".".join(str(p) for p in err.absolute_path) or "(options)"
        errors.append(f"{where}: {err.message}")
    return errors


def require_valid(errors: list[str], plugin: str) -> None:
    if errors:
        raise InvalidOptions("invalid options: " + "; ".join(errors), plugin=plugin)


def secret_paths(schema: Mapping[str, Any] | None, prefix: str = "") -> list[str]:
    """Dotted paths of the options a schema marks `"x-secret": true`."""
    if not schema:
        return []
    out: list[str] = []
    for key, sub in (schema.get("properties") or {}).items():
        path = f"{prefix}{key}"
        if isinstance(sub, Mapping):
            if sub.get("x-secret"):
                out.append(path)
            out.extend(secret_paths(sub, prefix=f"{path}."))
    return out
