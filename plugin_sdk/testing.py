"""Helpers for plugin authors: serve a plugin in-process and call it, without the core."""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import grpc

from plugin_sdk._client import PluginClient
from plugin_sdk._plugin import Plugin
from plugin_sdk._protocol import APP_PROTOCOL_VERSIONS
from plugin_sdk._serve import build_server, set_serving

__all__ = ["PluginClient", "serve_in_process"]


@asynccontextmanager
async def serve_in_process(plugin: Plugin) -> AsyncIterator[PluginClient]:
    """Serve `plugin` on a unix socket in this event loop; yield a connected client.

    The server runs every service a real plugin process offers, so what passes here
    passes through the core too (except the process handshake itself).
    """
    tmp = tempfile.mkdtemp(prefix="dtm-test-")
    path = os.path.join(tmp, "plugin.sock")
    server, health_servicer = await build_server(
        plugin, max(APP_PROTOCOL_VERSIONS), asyncio.Event()
    )
    server.add_insecure_port(f"unix:{path}")
    await server.start()
    await set_serving(health_servicer)
    channel = grpc.aio.insecure_channel(f"unix:{path}")
    client = PluginClient(channel, plugin.name, owns_channel=True)
    try:
        yield client
    finally:
        await client.aclose()
        await server.stop(grace=None)
        shutil.rmtree(tmp, ignore_errors=True)
