"""Client-side adapter: plain Python in and out of a DevStreamPlugin over a gRPC channel.

The core's plugin host and `plugin_sdk.testing` both call plugins through this class;
it is the one place where a gRPC status becomes a PluginError.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import grpc

from plugin_sdk._errors import PluginError, PluginInternalError, error_from_status
from plugin_sdk._json import dumps_sorted, loads
from plugin_sdk._plugin import ApiResponse
from plugin_sdk._proto import plugin_pb2 as pb
from plugin_sdk._proto import plugin_pb2_grpc as pb_grpc


@dataclass(frozen=True)
class PluginInfo:
    """What GetMetadata says about a running plugin."""

    name: str
    version: str
    description: str = ""
    root_package_path: str = ""
    capabilities: tuple[str, ...] = ()
    options_schema: dict[str, Any] | None = None
    connection_schema: dict[str, Any] | None = None
    subtasks: tuple[dict[str, Any], ...] = ()
    tables: tuple[dict[str, Any], ...] = ()
    protocol_version: int = 0
    implemented: tuple[str, ...] = field(default_factory=tuple)

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "description": self.description,
            "root_package_path": self.root_package_path,
            "capabilities": list(self.capabilities),
            "protocol_version": self.protocol_version,
            "implemented": list(self.implemented),
            "options_schema": self.options_schema,
            "connection_schema": self.connection_schema,
            "subtasks": list(self.subtasks),
            "tables": list(self.tables),
        }


@dataclass(frozen=True)
class SubtaskStart:
    subtask: str
    options: Mapping[str, Any] = field(default_factory=dict)
    task_data: Mapping[str, Any] = field(default_factory=dict)
    connection: Mapping[str, Any] = field(default_factory=dict)
    secrets: Mapping[str, str] = field(default_factory=dict)
    checkpoint: Any = None
    state: Mapping[str, Any] = field(default_factory=dict)
    full_sync: bool = False


@dataclass(frozen=True)
class InputBatch:
    table: str
    rows: list[str]  # one JSON object per row
    checkpoint: str  # JSON: where the input stands once this batch is done


@dataclass(frozen=True)
class SubtaskEvent:
    kind: str  # "batch", "progress" or "done"
    table: str = ""
    rows: list[str] = field(default_factory=list)
    checkpoint: str = ""
    current: int = 0
    total: int = 0
    state: dict[str, Any] = field(default_factory=dict)
    records: int = 0


def _dumps(value: Any) -> str:
    return dumps_sorted(value)


def _loads(text: str) -> Any:
    return loads(text) if text else None


class PluginClient:
    """Calls one plugin over `channel`. It does not own the channel unless told to."""

    def __init__(
        self,
        channel: grpc.aio.Channel,
        name: str,
        *,
        timeout: float | None = 60.0,
        owns_channel: bool = False,
    ) -> None:
        self.name = name
        self.timeout = timeout
        self._channel = channel
        self._owns_channel = owns_channel
        self._stub = pb_grpc.DevStreamPluginStub(channel)
        self._controller = pb_grpc.GRPCControllerStub(channel)

    async def _unary(self, method: Any, request: Any, timeout: float | None = None) -> Any:
        try:
            return await method(request, timeout=timeout or self.timeout)
        except grpc.aio.AioRpcError as exc:
            raise self.convert(exc) from exc

    def convert(self, exc: grpc.aio.AioRpcError) -> PluginError:
        """The one conversion of a gRPC failure into the PluginError tree."""
        err = error_from_status(
            exc.code(), exc.details() or "", exc.trailing_metadata(), plugin=self.name
        )
        if exc.code() == grpc.StatusCode.UNAVAILABLE and not err.details:
            err.message = f"is unavailable: {exc.details()}"
        return err

    async def metadata(self) -> PluginInfo:
        m = await self._unary(self._stub.GetMetadata, pb.GetMetadataRequest())
        return PluginInfo(
            name=m.name,
            version=m.version,
            description=m.description,
            root_package_path=m.root_package_path,
            capabilities=tuple(m.capabilities),
            options_schema=_loads(m.options_schema_json),
            connection_schema=_loads(m.connection_schema_json),
            subtasks=tuple(
                {
                    "name": s.name,
                    "description": s.description,
                    "kind": s.kind,
                    "enabled_by_default": s.enabled_by_default,
                    "domain_types": list(s.domain_types),
                    "dependencies": list(s.dependencies),
                    "input_table": s.input_table,
                    "output_tables": list(s.output_tables),
                }
                for s in m.subtasks
            ),
            tables=tuple({"name": t.name, **(_loads(t.schema_json) or {})} for t in m.tables),
            protocol_version=m.protocol_version,
            implemented=tuple(m.implemented),
        )

    async def init(self, config: Mapping[str, Any] | None = None) -> None:
        await self._unary(self._stub.Init, pb.InitRequest(config_json=_dumps(dict(config or {}))))

    async def validate(self, options: Mapping[str, Any]) -> list[str]:
        resp = await self._unary(
            self._stub.Validate, pb.ValidateRequest(options_json=_dumps(options))
        )
        return list(resp.errors)

    def _resource(
        self, options: Mapping[str, Any], secrets: Mapping[str, str] | None, instance: str
    ) -> pb.ResourceRequest:
        return pb.ResourceRequest(
            options_json=_dumps(options), secrets=dict(secrets or {}), instance=instance
        )

    def _status(self, text: str, call: str) -> dict[str, Any]:
        value = _loads(text)
        if not isinstance(value, dict):
            raise PluginInternalError(
                f"{call} returned {type(value).__name__}, not a JSON object", plugin=self.name
            )
        return value

    async def create(
        self,
        options: Mapping[str, Any],
        secrets: Mapping[str, str] | None = None,
        *,
        instance: str = "",
    ) -> dict[str, Any]:
        resp = await self._unary(self._stub.Create, self._resource(options, secrets, instance))
        return self._status(resp.status_json, "Create")

    async def read(
        self,
        options: Mapping[str, Any],
        secrets: Mapping[str, str] | None = None,
        *,
        instance: str = "",
    ) -> dict[str, Any] | None:
        resp = await self._unary(self._stub.Read, self._resource(options, secrets, instance))
        if not resp.status_json or resp.status_json == "null":
            return None
        return self._status(resp.status_json, "Read")

    async def update(
        self,
        options: Mapping[str, Any],
        secrets: Mapping[str, str] | None = None,
        *,
        instance: str = "",
    ) -> dict[str, Any]:
        resp = await self._unary(self._stub.Update, self._resource(options, secrets, instance))
        return self._status(resp.status_json, "Update")

    async def delete(
        self,
        options: Mapping[str, Any],
        secrets: Mapping[str, str] | None = None,
        *,
        instance: str = "",
    ) -> bool:
        resp = await self._unary(self._stub.Delete, self._resource(options, secrets, instance))
        return bool(resp.deleted)

    async def handle_api(
        self,
        method: str,
        path: str,
        *,
        query: Mapping[str, str] | None = None,
        body: Any = None,
        connection: Mapping[str, Any] | None = None,
        secrets: Mapping[str, str] | None = None,
    ) -> ApiResponse:
        resp = await self._unary(
            self._stub.HandleApi,
            pb.ApiRequest(
                method=method,
                path=path,
                query=dict(query or {}),
                body_json="" if body is None else _dumps(body),
                connection_json="" if connection is None else _dumps(connection),
                secrets=dict(secrets or {}),
            ),
        )
        return ApiResponse(status=resp.status, body=_loads(resp.body_json))

    async def call(self, method: str, options: Mapping[str, Any]) -> Any:
        """Call a resource method by its wire name ("Create", "Read", ...)."""
        handlers = {
            "Create": self.create,
            "Read": self.read,
            "Update": self.update,
            "Delete": self.delete,
        }
        if method == "Validate":
            return await self.validate(options)
        if method == "GetMetadata":
            return (await self.metadata()).as_dict()
        if method not in handlers:
            raise ValueError(
                f"unknown method {method!r}: choose one of Create, Read, Update, Delete, "
                "Validate, GetMetadata"
            )
        return await handlers[method](options)

    async def prepare_task_data(
        self,
        options: Mapping[str, Any],
        connection: Mapping[str, Any] | None = None,
        secrets: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        resp = await self._unary(
            self._stub.PrepareTaskData,
            pb.PrepareTaskDataRequest(
                options_json=_dumps(options),
                connection_json=_dumps(dict(connection or {})),
                secrets=dict(secrets or {}),
            ),
        )
        return self._status(resp.task_data_json, "PrepareTaskData")

    async def migration_scripts(self) -> list[dict[str, Any]]:
        resp = await self._unary(self._stub.MigrationScripts, pb.MigrationScriptsRequest())
        return [
            {"version": m.version, "name": m.name, "operations": _loads(m.operations_json) or []}
            for m in resp.scripts
        ]

    async def run_subtask(
        self,
        start: SubtaskStart,
        inputs: AsyncIterator[InputBatch] | None = None,
    ) -> AsyncIterator[SubtaskEvent]:
        """Stream one subtask: send its start and input batches, yield what comes back.

        Leaving the loop early (or being cancelled) cancels the call in the plugin.
        """

        async def requests() -> AsyncIterator[pb.SubtaskInput]:
            yield pb.SubtaskInput(
                start=pb.SubtaskStart(
                    subtask=start.subtask,
                    options_json=_dumps(start.options),
                    task_data_json=_dumps(start.task_data),
                    connection_json=_dumps(start.connection),
                    secrets=dict(start.secrets),
                    checkpoint_json="" if start.checkpoint is None else _dumps(start.checkpoint),
                    state_json=_dumps(start.state),
                    full_sync=start.full_sync,
                )
            )
            if inputs is not None:
                async for batch in inputs:
                    yield pb.SubtaskInput(
                        batch=pb.RecordBatch(
                            table=batch.table,
                            rows_json=batch.rows,
                            checkpoint_json=batch.checkpoint,
                        )
                    )
            yield pb.SubtaskInput(end_of_input=True)

        call = self._stub.RunSubtask(requests(), timeout=None)
        try:
            async for message in call:
                kind = message.WhichOneof("kind")
                if kind == "batch":
                    b = message.batch
                    yield SubtaskEvent("batch", table=b.table, rows=list(b.rows_json),
                                       checkpoint=b.checkpoint_json)  # fmt: skip
                elif kind == "progress":
                    yield SubtaskEvent("progress", current=message.progress.current,
                                       total=message.progress.total)  # fmt: skip
                else:
                    d = message.done
                    yield SubtaskEvent("done", state=_loads(d.state_json) or {}, records=d.records)
        except grpc.aio.AioRpcError as exc:
            raise self.convert(exc) from exc
        finally:
            if not call.done():
                call.cancel()

    async def health(self, timeout: float = 5.0) -> bool:
        """True when the plugin's health service reports `plugin` SERVING."""
        from grpc_health.v1 import health_pb2, health_pb2_grpc

        from plugin_sdk._protocol import HEALTH_SERVICE

        stub = health_pb2_grpc.HealthStub(self._channel)
        try:
            resp = await stub.Check(
                health_pb2.HealthCheckRequest(service=HEALTH_SERVICE), timeout=timeout
            )
        except grpc.aio.AioRpcError:
            return False
        return bool(resp.status == health_pb2.HealthCheckResponse.SERVING)

    async def shutdown(self, timeout: float = 2.0) -> None:
        await self._unary(self._controller.Shutdown, pb.ShutdownRequest(), timeout=timeout)

    async def aclose(self) -> None:
        if self._owns_channel:
            await self._channel.close(None)

    async def __aenter__(self) -> PluginClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
