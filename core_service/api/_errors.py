"""The API's one place where exceptions become HTTP answers: JSON, 4xx for the caller's
mistakes, 502 for a failing plugin, never a bare 500 for a bad request."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from core_service.errors import (
    ConfigError,
    DtmError,
    LockHeld,
    ManifestError,
    PluginCrashed,
    PluginNotFound,
)
from core_service.lake import LakeError, PipelineError
from core_service.lake._connections import ConnectionError_
from plugin_sdk import (
    AlreadyExists,
    InvalidOptions,
    PermissionDenied,
    PluginError,
    ResourceNotFound,
    Unimplemented,
)


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, details: Any = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.details = status, code, message, details


def error_response(status: int, code: str, message: str, details: Any = None) -> web.Response:
    body: dict[str, Any] = {"error": {"code": code, "message": message}}
    if details is not None:
        body["error"]["details"] = details
    return web.json_response(body, status=status)


def to_response(exc: BaseException) -> web.Response:
    if isinstance(exc, ApiError):
        return error_response(exc.status, exc.code, exc.message, exc.details)
    problems = getattr(exc, "problems", None)
    if isinstance(exc, ConfigError):
        details = [str(p) for p in problems] if problems else None
        return error_response(400, "invalid_config", str(exc), details)
    if isinstance(exc, PluginNotFound | ResourceNotFound):
        return error_response(404, "not_found", str(exc))
    if isinstance(exc, ConnectionError_):
        status = 409 if "exists already" in str(exc) else 404
        return error_response(status, "connection", str(exc))
    if isinstance(exc, PipelineError):
        status = 404 if str(exc).startswith("no pipeline") else 409
        return error_response(status, "pipeline", str(exc))
    if isinstance(exc, LockHeld):
        return error_response(409, "locked", str(exc))
    if isinstance(exc, InvalidOptions):
        return error_response(400, "invalid_options", str(exc))
    if isinstance(exc, AlreadyExists):
        return error_response(409, "already_exists", str(exc))
    if isinstance(exc, PermissionDenied):
        return error_response(403, "permission_denied", str(exc))
    if isinstance(exc, Unimplemented):
        return error_response(404, "unimplemented", str(exc))
    if isinstance(exc, PluginCrashed | PluginError):
        return error_response(502, "plugin_failed", str(exc))
    if isinstance(exc, ManifestError | LakeError | DtmError):
        return error_response(502, "core_failed", str(exc))
    return error_response(500, "internal", f"{type(exc).__name__}: {exc}")
