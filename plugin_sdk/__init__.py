"""The DevStream plugin SDK: what a plugin author imports."""

from plugin_sdk._api_client import ApiClient, HttpResponse
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
    "ResourceNotFound",
    "Unimplemented",
    "serve",
]
