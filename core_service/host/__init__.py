"""The plugin host: discovery, process lifecycle, supervision, reattach and remote plugins."""

from core_service.host._discovery import ENTRY_POINT_GROUP, PluginManifest, discover, load_manifest
from core_service.host._handles import (
    ManagedPlugin,
    PluginHandle,
    ReattachedPlugin,
    RemotePlugin,
    RemoteTLS,
    RestartPolicy,
)
from core_service.host._host import ENV_REATTACH, ENV_REMOTE, PluginHost, parse_reattach
from core_service.host._process import Endpoint, PluginProcess, parse_handshake

__all__ = [
    "ENTRY_POINT_GROUP",
    "ENV_REATTACH",
    "ENV_REMOTE",
    "Endpoint",
    "ManagedPlugin",
    "PluginHandle",
    "PluginHost",
    "PluginManifest",
    "PluginProcess",
    "ReattachedPlugin",
    "RemotePlugin",
    "RemoteTLS",
    "RestartPolicy",
    "discover",
    "load_manifest",
    "parse_handshake",
    "parse_reattach",
]
