"""Handshake constants shared by the SDK and the core; docs/plugin-protocol.md explains them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

# go-plugin's own wire version of the handshake line; bump only if the line changes.
CORE_PROTOCOL_VERSION: Final = 1
# App protocol versions (the DevStreamPlugin service) this release speaks, oldest first.
APP_PROTOCOL_VERSIONS: Final = (1,)

MAGIC_COOKIE_KEY: Final = "DEVSTREAM_PLUGIN_MAGIC_COOKIE"
# A fixed random value: it tells a plugin that dtm started it, not that it is trusted.
MAGIC_COOKIE_VALUE: Final = "d3v5tr3am-7f1c2a9e4b6d8053-plugin"

ENV_PROTOCOL_VERSIONS: Final = "PLUGIN_PROTOCOL_VERSIONS"
ENV_UNIX_SOCKET_DIR: Final = "PLUGIN_UNIX_SOCKET_DIR"
ENV_MIN_PORT: Final = "PLUGIN_MIN_PORT"
ENV_MAX_PORT: Final = "PLUGIN_MAX_PORT"
ENV_CLIENT_CERT: Final = "PLUGIN_CLIENT_CERT"
# Our addition to go-plugin's set: "tcp" asks for TCP instead of a unix socket.
ENV_TRANSPORT: Final = "PLUGIN_TRANSPORT"

# Exit codes a managed plugin uses before its handshake, so the core can say why.
EXIT_NO_COOKIE: Final = 2
EXIT_NO_COMMON_VERSION: Final = 3

# The grpc.health.v1 service name a plugin reports SERVING under.
HEALTH_SERVICE: Final = "plugin"
# The host name both sides put in (and check against) auto-mTLS certificates.
TLS_SERVER_NAME: Final = "localhost"

# Tag on the first line of stderr of a no-common-version exit, parsed by the core.
VERSION_MISMATCH_TAG: Final = "devstream-plugin: no common protocol version"


def parse_versions(text: str) -> tuple[int, ...]:
    """Parse "1,2" into (1, 2); raise ValueError naming the bad item."""
    out: list[int] = []
    for item in text.split(","):
        item = item.strip()
        if not item:
            continue
        if not item.isdigit():
            raise ValueError(f"protocol version {item!r} is not a whole number")
        out.append(int(item))
    return tuple(sorted(set(out)))


def handshake_line(app_version: int, network: str, address: str, server_cert: str = "") -> str:
    """The one line a managed plugin prints on stdout, go-plugin's format."""
    return f"{CORE_PROTOCOL_VERSION}|{app_version}|{network}|{address}|grpc|{server_cert}"


def version_mismatch(
    plugin: str, plugin_versions: Sequence[int], core_versions: Sequence[int]
) -> str:
    """The one wording of a version mismatch, naming both sides and which to upgrade."""
    newer = "core" if max(plugin_versions) > max(core_versions) else "plugin"
    return (
        f"plugin {plugin} speaks protocol {','.join(map(str, plugin_versions))}, "
        f"this core speaks {','.join(map(str, core_versions))}: upgrade the {newer}"
    )
