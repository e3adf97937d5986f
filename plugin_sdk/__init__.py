"""The DevStream plugin SDK: what a plugin author imports."""

from typing import TYPE_CHECKING, Any

from plugin_sdk._errors import (
    AlreadyExists,
    Cancelled,
    InvalidOptions,
    PermissionDenied,
    PluginError,
    PluginInternalError,
    PluginTimeout,
    PluginUnavailable,
    ResourceNotFound,
    Unimplemented,
)
from plugin_sdk._plugin import ApiRequest, ApiResponse, Plugin
from plugin_sdk._serve import serve
from plugin_sdk._subtasks import (
    Raw,
    RawRow,
    Row,
    SubtaskContext,
    collector,
    converter,
    extractor,
)
from plugin_sdk._tables import TableSpec

if TYPE_CHECKING:
    from plugin_sdk._api_client import ApiClient, HttpResponse

__all__ = [
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


def __getattr__(name: str) -> Any:
    # aiohttp costs ~80 ms to import: only plugins that call HTTP APIs pay for it.
    if name in ("ApiClient", "HttpResponse"):
        from plugin_sdk import _api_client

        return getattr(_api_client, name)
    raise AttributeError(f"module 'plugin_sdk' has no attribute {name!r}")
