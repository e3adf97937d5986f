"""Errors a plugin raises and a caller receives; the same classes on both sides of the wire.

    PluginError                 any failure of a plugin call (.code, .plugin, .retriable)
    ├── InvalidOptions          INVALID_ARGUMENT: the options or the request are wrong
    ├── ResourceNotFound        NOT_FOUND
    ├── AlreadyExists           ALREADY_EXISTS
    ├── PermissionDenied        PERMISSION_DENIED, UNAUTHENTICATED
    ├── Unimplemented           UNIMPLEMENTED: the plugin does not offer that call
    ├── PluginUnavailable       UNAVAILABLE: retriable (a dependency or the plugin is down)
    ├── PluginTimeout           DEADLINE_EXCEEDED: retriable
    ├── Cancelled               CANCELLED
    └── PluginInternalError     anything else, with the plugin's message

A plugin raises one of these (or any exception, which becomes PluginInternalError); the
servicer turns it into a gRPC status; `plugin_sdk._client` turns the status back into the
same class. Those two functions are the only places that convert.
"""

from __future__ import annotations

import json
from typing import Any

import grpc

# Trailing metadata key that carries the structured part of an error.
ERROR_METADATA_KEY = "devstream-error"


class PluginError(Exception):
    """A plugin call failed. `str()` is a message meant for a person."""

    code: grpc.StatusCode = grpc.StatusCode.INTERNAL
    retriable: bool = False

    def __init__(
        self, message: str, *, plugin: str = "", details: dict[str, Any] | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.plugin = plugin
        self.details = dict(details or {})

    def __str__(self) -> str:
        if self.plugin and not self.message.startswith(f"plugin {self.plugin}"):
            return f"plugin {self.plugin}: {self.message}"
        return self.message


class InvalidOptions(PluginError):
    code = grpc.StatusCode.INVALID_ARGUMENT


class ResourceNotFound(PluginError):
    code = grpc.StatusCode.NOT_FOUND


class AlreadyExists(PluginError):
    code = grpc.StatusCode.ALREADY_EXISTS


class PermissionDenied(PluginError):
    code = grpc.StatusCode.PERMISSION_DENIED


class Unimplemented(PluginError):
    code = grpc.StatusCode.UNIMPLEMENTED


class PluginUnavailable(PluginError):
    code = grpc.StatusCode.UNAVAILABLE
    retriable = True


class PluginTimeout(PluginError):
    code = grpc.StatusCode.DEADLINE_EXCEEDED
    retriable = True


class Cancelled(PluginError):
    code = grpc.StatusCode.CANCELLED


class PluginInternalError(PluginError):
    code = grpc.StatusCode.INTERNAL


_BY_CODE: dict[grpc.StatusCode, type[PluginError]] = {
    cls.code: cls
    for cls in (
        InvalidOptions,
        ResourceNotFound,
        AlreadyExists,
        PermissionDenied,
        Unimplemented,
        PluginUnavailable,
        PluginTimeout,
        Cancelled,
    )
}
_BY_CODE[grpc.StatusCode.UNAUTHENTICATED] = PermissionDenied
_BY_NAME: dict[str, type[PluginError]] = {
    cls.__name__: cls for cls in (*_BY_CODE.values(), PluginInternalError)
}


def error_metadata(exc: PluginError) -> tuple[tuple[str, str], ...]:
    """Trailing metadata carrying the error's class and details across the wire."""
    payload = {"type": type(exc).__name__, "plugin": exc.plugin, "details": exc.details}
    return ((ERROR_METADATA_KEY, json.dumps(payload, ensure_ascii=True, default=str)),)


def error_from_status(
    code: grpc.StatusCode, message: str, metadata: Any, *, plugin: str = ""
) -> PluginError:
    """Rebuild the PluginError a status stands for (the client side of error_metadata)."""
    payload: dict[str, Any] = {}
    for key, value in metadata or ():
        if key == ERROR_METADATA_KEY:
            try:
                payload = json.loads(value)
            except ValueError:
                payload = {}
    cls = _BY_NAME.get(str(payload.get("type", "")))
    if cls is None:
        cls = _BY_CODE.get(code, PluginInternalError)
    details = payload.get("details") if isinstance(payload.get("details"), dict) else None
    return cls(message or code.name, plugin=str(payload.get("plugin") or plugin), details=details)
