"""Server-side adapter: turns DevStreamPlugin requests into calls on the author's Plugin."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any, TypeVar

import grpc

from plugin_sdk._errors import (
    InvalidOptions,
    PluginError,
    PluginInternalError,
    Unimplemented,
    error_metadata,
)
from plugin_sdk._json import dumps_sorted
from plugin_sdk._json import loads as _loads
from plugin_sdk._plugin import ApiRequest, Plugin, require_valid
from plugin_sdk._proto import plugin_pb2 as pb
from plugin_sdk._proto import plugin_pb2_grpc as pb_grpc
from plugin_sdk._serve import register_secret

log = logging.getLogger("plugin_sdk.servicer")
T = TypeVar("T")


def loads_object(text: str, what: str) -> dict[str, Any]:
    """Parse a JSON object field of a request; an empty field is an empty object."""
    if not text:
        return {}
    try:
        value = _loads(text)
    except ValueError as exc:
        raise InvalidOptions(f"{what} is not valid JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise InvalidOptions(f"{what} must be a JSON object, got {type(value).__name__}")
    return value


def merge_secrets(options: dict[str, Any], secrets: Mapping[str, str]) -> dict[str, Any]:
    """Put secret values (keyed by dotted option path) back into the options."""
    for path, value in secrets.items():
        register_secret(value)
        node = options
        *parents, leaf = path.split(".")
        for part in parents:
            child = node.get(part)
            if not isinstance(child, dict):
                child = node[part] = {}
            node = child
        node[leaf] = value
    return options


def dumps(value: Any) -> str:
    return dumps_sorted(value)


class PluginServicer(pb_grpc.DevStreamPluginServicer):  # type: ignore[misc]
    def __init__(self, plugin: Plugin, protocol_version: int) -> None:
        self.plugin = plugin
        self.name = plugin.name or type(plugin).__name__
        self.protocol_version = protocol_version

    async def _guard(
        self,
        wire: str,
        context: grpc.aio.ServicerContext[Any, Any],
        call: Callable[[], Awaitable[T]],
    ) -> T:
        """Run one call, converting whatever it raises into a gRPC status."""
        try:
            return await call()
        except Exception as err:
            await self._abort(wire, context, err)
            raise AssertionError("unreachable: abort raises") from err

    async def _abort(
        self, wire: str, context: grpc.aio.ServicerContext[Any, Any], err: Exception
    ) -> None:
        """Abort the call with the status an exception stands for; abort raises."""
        exc = self._as_plugin_error(wire, err)
        await context.abort(exc.code, str(exc), trailing_metadata=error_metadata(exc))

    def _as_plugin_error(self, wire: str, err: Exception) -> PluginError:
        """The one place an exception becomes the PluginError sent as a gRPC status."""
        if isinstance(err, NotImplementedError):
            return Unimplemented(f"does not implement {wire}", plugin=self.name)
        if isinstance(err, PluginError):
            err.plugin = err.plugin or self.name
            return err
        log.error("%s failed", wire, exc_info=err)
        return PluginInternalError(f"{wire} failed: {type(err).__name__}: {err}", plugin=self.name)

    async def GetMetadata(
        self, request: pb.GetMetadataRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.PluginMetadata:
        return await self._guard("GetMetadata", context, self._metadata)

    async def _metadata(self) -> pb.PluginMetadata:
        cls = type(self.plugin)
        return pb.PluginMetadata(
            name=self.name,
            version=cls.version,
            description=cls.description,
            root_package_path=cls.root_package_path or cls.__module__.rpartition(".")[0],
            capabilities=cls.capabilities(),
            # The author's key order is kept: `dtm show config` lists options in it.
            options_schema_json=json.dumps(cls.options_schema) if cls.options_schema else "",
            connection_schema_json=(
                json.dumps(cls.connection_schema) if cls.connection_schema else ""
            ),
            protocol_version=self.protocol_version,
            implemented=cls.implemented(),
            subtasks=[pb.SubtaskMeta(**s.resolved(self.name)) for s in cls.subtasks()],
            tables=[
                pb.TableInfo(name=t.name, schema_json=json.dumps(t.as_dict()))
                for t in cls.tool_tables()
            ],
        )

    async def Init(
        self, request: pb.InitRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.InitResponse:
        async def call() -> pb.InitResponse:
            await self.plugin.init(loads_object(request.config_json, "config"))
            return pb.InitResponse()

        return await self._guard("Init", context, call)

    async def Validate(
        self, request: pb.ValidateRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.ValidateResponse:
        async def call() -> pb.ValidateResponse:
            errors = await self.plugin.validate(loads_object(request.options_json, "options"))
            return pb.ValidateResponse(errors=errors)

        return await self._guard("Validate", context, call)

    def _options(self, request: pb.ResourceRequest) -> dict[str, Any]:
        return merge_secrets(loads_object(request.options_json, "options"), request.secrets)

    async def _checked_options(self, request: pb.ResourceRequest) -> dict[str, Any]:
        options = self._options(request)
        require_valid(await self.plugin.validate(options), self.name)
        return options

    async def Create(
        self, request: pb.ResourceRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.ResourceResponse:
        async def call() -> pb.ResourceResponse:
            status = await self.plugin.create(await self._checked_options(request))
            return pb.ResourceResponse(status_json=dumps(status))

        return await self._guard("Create", context, call)

    async def Read(
        self, request: pb.ResourceRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.ResourceResponse:
        async def call() -> pb.ResourceResponse:
            status = await self.plugin.read(self._options(request))
            return pb.ResourceResponse(status_json="" if status is None else dumps(status))

        return await self._guard("Read", context, call)

    async def Update(
        self, request: pb.ResourceRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.ResourceResponse:
        async def call() -> pb.ResourceResponse:
            status = await self.plugin.update(await self._checked_options(request))
            return pb.ResourceResponse(status_json=dumps(status))

        return await self._guard("Update", context, call)

    async def Delete(
        self, request: pb.ResourceRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.DeleteResponse:
        async def call() -> pb.DeleteResponse:
            return pb.DeleteResponse(deleted=bool(await self.plugin.delete(self._options(request))))

        return await self._guard("Delete", context, call)

    async def HandleApi(
        self, request: pb.ApiRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.ApiResponse:
        async def call() -> pb.ApiResponse:
            connection = loads_object(request.connection_json, "connection")
            try:
                body = json.loads(request.body_json) if request.body_json else None
            except ValueError as exc:
                raise InvalidOptions(f"the request body is not valid JSON: {exc}") from exc
            api_request = ApiRequest(
                method=request.method.upper(),
                path=request.path,
                query=dict(request.query),
                body=body,
                connection=merge_secrets(connection, request.secrets)
                if connection or request.secrets
                else None,
            )
            response = await self.plugin.handle_api(api_request)
            body_json = "" if response.body is None else dumps(response.body)
            return pb.ApiResponse(status=response.status, body_json=body_json)

        return await self._guard("HandleApi", context, call)

    # -- the data lake ---------------------------------------------------------------
    async def PrepareTaskData(
        self, request: pb.PrepareTaskDataRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.PrepareTaskDataResponse:
        async def call() -> pb.PrepareTaskDataResponse:
            if not type(self.plugin).subtasks():
                raise NotImplementedError
            options = loads_object(request.options_json, "options")
            connection = merge_secrets(
                loads_object(request.connection_json, "connection"), request.secrets
            )
            data = await self.plugin.prepare_task_data(options, connection)
            return pb.PrepareTaskDataResponse(task_data_json=dumps(data))

        return await self._guard("PrepareTaskData", context, call)

    async def MigrationScripts(
        self, request: pb.MigrationScriptsRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.MigrationScriptsResponse:
        async def call() -> pb.MigrationScriptsResponse:
            # Declarative: one script per tool table; the core creates the table or adds
            # the columns it lacks, and records what it applied.
            scripts = [
                pb.MigrationScript(
                    version=1,
                    name=f"create {spec.name}",
                    operations_json=json.dumps([{"op": "ensure_table", "table": spec.as_dict()}]),
                )
                for spec in type(self.plugin).tool_tables()
            ]
            return pb.MigrationScriptsResponse(scripts=scripts)

        return await self._guard("MigrationScripts", context, call)

    async def RunSubtask(
        self, request_iterator: Any, context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[pb.SubtaskOutput]:
        from plugin_sdk._runner import run_collector, run_transform
        from plugin_sdk._subtasks import SubtaskContext

        try:
            first = await anext(aiter(request_iterator))
            if first.WhichOneof("kind") != "start":
                raise InvalidOptions("RunSubtask must begin with a `start` message")
            start = first.start
            subs = {s.name: s for s in type(self.plugin).subtasks()}
            sub = subs.get(start.subtask)
            if sub is None:
                raise InvalidOptions(
                    f"no subtask {start.subtask!r}; this plugin has {sorted(subs) or 'none'}"
                )
            connection = merge_secrets(
                loads_object(start.connection_json, "connection"), start.secrets
            )
            task_data = loads_object(start.task_data_json, "task data")
            ctx = SubtaskContext(
                plugin=self.name,
                subtask=sub.name,
                options=loads_object(start.options_json, "options"),
                task_data=task_data,
                connection=connection,
                checkpoint=json.loads(start.checkpoint_json) if start.checkpoint_json else None,
                state=loads_object(start.state_json, "state"),
                full_sync=start.full_sync,
                params=str(task_data.get("params", "")),
            )
            batch_size = int(ctx.options.get("batchSize") or 500)
            if sub.kind == "collector" and not sub.parents:
                outputs = run_collector(self.plugin, sub, ctx, batch_size)
            else:
                outputs = run_transform(self.plugin, sub, ctx, _input_batches(request_iterator))
            async for out in outputs:
                yield _to_proto(out)
        except Exception as exc:
            # A streaming handler ends with its status set, not by abort(). And it first
            # reads what the core already sent (up to a second): ending the call while the
            # core is writing makes the core see a bare INTERNAL instead of this error.
            error = self._as_plugin_error("RunSubtask", exc)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(_drain(request_iterator), 1.0)
            context.set_code(error.code)
            context.set_details(str(error))
            context.set_trailing_metadata(error_metadata(error))


async def _drain(request_iterator: Any) -> None:
    async for _ in request_iterator:
        pass


async def _input_batches(request_iterator: Any) -> AsyncIterator[tuple[str, list[str], str]]:
    async for message in request_iterator:
        kind = message.WhichOneof("kind")
        if kind == "end_of_input":
            return
        if kind == "batch":
            b = message.batch
            yield b.table, list(b.rows_json), b.checkpoint_json


def _to_proto(out: Any) -> pb.SubtaskOutput:
    if out.kind == "batch":
        return pb.SubtaskOutput(
            batch=pb.RecordBatch(
                table=out.table, rows_json=out.rows, checkpoint_json=out.checkpoint
            )
        )
    if out.kind == "progress":
        return pb.SubtaskOutput(progress=pb.Progress(current=out.current, total=out.total))
    return pb.SubtaskOutput(done=pb.SubtaskDone(state_json=out.state, records=out.records))
