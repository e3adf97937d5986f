"""The SDK's public surface, error round trips, secrets, and the in-process test helper."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from collections.abc import Mapping
from typing import Any

import pytest

import plugin_sdk
from plugin_sdk import (
    ApiRequest,
    ApiResponse,
    InvalidOptions,
    Plugin,
    PluginInternalError,
    ResourceNotFound,
    Unimplemented,
)
from plugin_sdk._plugin import secret_paths
from plugin_sdk._serve import JsonFormatter, _Masker, register_secret
from plugin_sdk._servicer import merge_secrets
from plugin_sdk.testing import serve_in_process
from tests.conftest import ROOT


def test_public_surface_is_pinned() -> None:
    assert plugin_sdk.__all__ == [
        "AlreadyExists",
        "ApiClient",
        "ApiRequest",
        "ApiResponse",
        "Cancelled",
        "HttpResponse",
        "InvalidOptions",
        "PermissionDenied",
        "Plugin",
        "PluginError",
        "PluginInternalError",
        "PluginTimeout",
        "PluginUnavailable",
        "Raw",
        "RawRow",
        "ResourceNotFound",
        "Row",
        "SubtaskContext",
        "TableSpec",
        "Unimplemented",
        "collector",
        "converter",
        "extractor",
        "serve",
    ]
    for name in plugin_sdk.__all__:
        assert getattr(plugin_sdk, name) is not None
    assert plugin_sdk.__all__ == sorted(plugin_sdk.__all__)


def test_generated_protobuf_code_is_not_stale() -> None:
    proc = subprocess.run(
        [sys.executable, "scripts/gen_protos.py", "--check"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr


class Things(Plugin):
    name = "things"
    version = "2.0.0"
    options_schema = {
        "type": "object",
        "required": ["id"],
        "properties": {
            "id": {"type": "integer"},
            "auth": {
                "type": "object",
                "properties": {"token": {"type": "string", "x-secret": True}},
            },
        },
    }

    def __init__(self) -> None:
        self.seen: list[Mapping[str, Any]] = []

    async def create(self, options: Mapping[str, Any]) -> dict[str, Any]:
        self.seen.append(options)
        logging.getLogger("things").info("creating with token %s", options["auth"]["token"])
        return {"id": options["id"], "outputs": {"id": options["id"]}}

    async def read(self, options: Mapping[str, Any]) -> dict[str, Any] | None:
        if options["id"] == 404:
            raise ResourceNotFound(f"thing {options['id']} is gone", details={"id": 404})
        if options["id"] == 500:
            raise KeyError("oops")
        return None

    async def handle_api(self, request: ApiRequest) -> ApiResponse:
        return ApiResponse(
            201, {"method": request.method, "path": request.path, "q": dict(request.query)}
        )


async def test_errors_cross_the_wire_as_the_same_classes() -> None:
    async with serve_in_process(Things()) as client:
        with pytest.raises(ResourceNotFound) as info:
            await client.read({"id": 404})
        assert str(info.value) == "plugin things: thing 404 is gone"
        assert info.value.details == {"id": 404}
        with pytest.raises(
            PluginInternalError, match="plugin things: Read failed: KeyError: 'oops'"
        ):
            await client.read({"id": 500})
        with pytest.raises(Unimplemented, match="plugin things: does not implement Delete"):
            await client.delete({"id": 1})
        with pytest.raises(InvalidOptions, match="id: 'x' is not of type 'integer'"):
            await client.create({"id": "x"})
        assert await client.validate({}) == ["(options): 'id' is a required property"]
        assert await client.read({"id": 1}) is None


async def test_metadata_reports_capabilities_and_implemented_calls() -> None:
    async with serve_in_process(Things()) as client:
        info = await client.metadata()
    assert info.name == "things" and info.version == "2.0.0"
    assert info.capabilities == ("resource", "api")
    assert info.implemented == ("GetMetadata", "Init", "Validate", "Create", "Read", "HandleApi")
    assert info.options_schema is not None and info.options_schema["required"] == ["id"]


async def test_handle_api_round_trip() -> None:
    async with serve_in_process(Things()) as client:
        resp = await client.handle_api("get", "/test", query={"a": "1"})
    assert resp == ApiResponse(201, {"method": "GET", "path": "/test", "q": {"a": "1"}})


async def test_secrets_reach_the_plugin_but_never_its_logs(
    caplog: pytest.LogCaptureFixture,
) -> None:
    plugin = Things()
    caplog.set_level(logging.INFO)
    caplog.handler.addFilter(_Masker())
    async with serve_in_process(plugin) as client:
        await client.create({"id": 1}, secrets={"auth.token": "s3cr3t-value"})
    assert plugin.seen[0]["auth"]["token"] == "s3cr3t-value"
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "creating with token ***" in text
    assert "s3cr3t-value" not in text


def test_json_log_lines_mask_secrets_in_tracebacks() -> None:
    register_secret("hunter2-token")
    try:
        raise RuntimeError("auth failed with hunter2-token")
    except RuntimeError:
        record = logging.LogRecord("x", logging.ERROR, "f", 1, "failed", None, sys.exc_info())
    line = json.loads(JsonFormatter().format(record))
    assert line["level"] == "error" and line["msg"] == "failed"
    assert "hunter2-token" not in line["traceback"] and "***" in line["traceback"]


def test_secret_paths_and_merge() -> None:
    assert secret_paths(Things.options_schema) == ["auth.token"]
    assert merge_secrets({"id": 1}, {"auth.token": "abcd1234"}) == {
        "id": 1,
        "auth": {"token": "abcd1234"},
    }
