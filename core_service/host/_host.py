"""PluginHost: finds plugins, starts each once on demand, and stops them all."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from core_service.errors import ConfigError, HandshakeError, IncompatibleVersion, PluginNotFound
from core_service.host._discovery import PluginManifest, discover
from core_service.host._handles import (
    ManagedPlugin,
    PluginHandle,
    ReattachedPlugin,
    RemotePlugin,
    RemoteTLS,
    RestartPolicy,
)
from core_service.host._process import Endpoint
from plugin_sdk._protocol import APP_PROTOCOL_VERSIONS, version_mismatch

ENV_REATTACH = "DTM_REATTACH_PLUGINS"
ENV_REMOTE = "DTM_REMOTE_PLUGINS"


def parse_reattach(
    text: str, versions: tuple[int, ...] = APP_PROTOCOL_VERSIONS
) -> dict[str, tuple[Endpoint, int | None]]:
    """Read a DTM_REATTACH_PLUGINS value (the line a standalone plugin prints)."""
    try:
        raw = json.loads(text)
    except ValueError as exc:
        raise HandshakeError(f"{ENV_REATTACH} is not valid JSON: {exc}") from exc
    if not isinstance(raw, dict):
        raise HandshakeError(f"{ENV_REATTACH} must be a JSON object keyed by plugin name")
    out: dict[str, tuple[Endpoint, int | None]] = {}
    for name, entry in raw.items():
        try:
            addr = entry["Addr"]
            endpoint = Endpoint(
                network=str(addr["Network"]),
                address=str(addr["String"]),
                protocol_version=int(entry.get("ProtocolVersion", 1)),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise HandshakeError(
                f"{ENV_REATTACH}: entry {name!r} needs Addr.Network and Addr.String "
                f'(e.g. {{"Addr": {{"Network": "unix", "String": "/tmp/x/plugin.sock"}}}}): {exc}'
            ) from exc
        if endpoint.network not in ("unix", "tcp"):
            raise HandshakeError(f"{ENV_REATTACH}: entry {name!r} network must be unix or tcp")
        if endpoint.protocol_version not in versions:
            raise IncompatibleVersion(
                f"{ENV_REATTACH}: "
                + version_mismatch(str(name), [endpoint.protocol_version], versions),
                plugin=str(name),
            )
        pid = entry.get("Pid")
        out[name] = (endpoint, int(pid) if pid else None)
    return out


def parse_remotes(text: str) -> dict[str, str]:
    """DTM_REMOTE_PLUGINS: JSON {"github": "dns:///github-plugin:7000"}, or "a=ADDR;b=ADDR".

    ";" separates entries because one address may itself hold commas
    (ipv4:10.0.0.1:7000,10.0.0.2:7000).
    """
    text = text.strip()
    if not text:
        return {}
    if text.startswith("{"):
        try:
            value = json.loads(text)
        except ValueError as exc:
            raise ConfigError(f"{ENV_REMOTE} is not valid JSON: {exc}") from exc
        if not isinstance(value, dict):
            raise ConfigError(f"{ENV_REMOTE} must map plugin names to addresses")
        return {str(k): str(v) for k, v in value.items()}
    out: dict[str, str] = {}
    for item in filter(None, (p.strip() for p in text.split(";"))):
        name, sep, address = item.partition("=")
        if not sep or not name.strip() or not address.strip():
            raise ConfigError(
                f"{ENV_REMOTE}: {item!r} is not NAME=ADDRESS "
                "(e.g. github=dns:///github-plugin:7000)"
            )
        out[name.strip()] = address.strip()
    return out


class PluginHost:
    """Owns every plugin handle of one core; an async context manager used once."""

    def __init__(
        self,
        *,
        plugin_dirs: Sequence[Path | str] = (),
        reattach: str | None = None,
        remotes: Mapping[str, str] | None = None,
        remote_tls: RemoteTLS | None = None,
        versions: tuple[int, ...] = APP_PROTOCOL_VERSIONS,
        start_timeout: float = 10.0,
        call_timeout: float = 60.0,
        health_interval: float = 10.0,
        restart: RestartPolicy | None = None,
        transport: str = "unix",
        auto_mtls: bool = False,
        init_config: Mapping[str, Any] | None = None,
    ) -> None:
        self.manifests, self.problems = discover(plugin_dirs)
        reattach = os.environ.get(ENV_REATTACH, "") if reattach is None else reattach
        self.reattach = parse_reattach(reattach, versions) if reattach.strip() else {}
        self.remotes = dict(parse_remotes(os.environ.get(ENV_REMOTE, "")))
        self.remotes.update(remotes or {})
        self.remote_tls = remote_tls
        self.versions = versions
        self.start_timeout = start_timeout
        self.call_timeout = call_timeout
        self.health_interval = health_interval
        self.restart_policy = restart
        self.transport = transport
        self.auto_mtls = auto_mtls
        self.init_config = dict(init_config or {})
        self._handles: dict[str, PluginHandle] = {}
        self._starting: dict[str, asyncio.Task[PluginHandle]] = {}
        self._closed = False

    def names(self) -> list[str]:
        return sorted({*self.manifests, *self.reattach, *self.remotes})

    def require(self, name: str) -> None:
        """Raise PluginNotFound (with a suggestion) unless `name` is a known plugin."""
        if name not in self.names():
            raise PluginNotFound(self._not_found(name), plugin=name)

    async def restart(self, name: str) -> PluginHandle:
        """Stop a plugin this host started and start it again (a new process)."""
        handle = self._handles.pop(name, None)
        if handle is not None:
            await handle.stop()
        return await self.get(name)

    def manifest(self, name: str) -> PluginManifest:
        try:
            return self.manifests[name]
        except KeyError:
            raise PluginNotFound(self._not_found(name), plugin=name) from None

    def _not_found(self, name: str) -> str:
        import difflib

        known = self.names()
        close = difflib.get_close_matches(name, known, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        broken = [
            p for p in self.problems if f"/{name}/" in p or f"/{name.replace('-', '_')}/" in p
        ]
        if broken:
            hint += f" (its manifest failed to load: {broken[0]})"
        return (
            f"no plugin named {name!r}{hint} Known plugins: {', '.join(known) or 'none'}. "
            "Run `dtm plugin list`, or `dtm develop create-plugin --name NAME` to make one"
        )

    async def get(self, name: str) -> PluginHandle:
        """The handle for `name`, starting the plugin once however many callers ask."""
        if self._closed:
            raise RuntimeError("the plugin host is closed")
        handle = self._handles.get(name)
        if handle is not None:
            return handle
        task = self._starting.get(name)
        if task is None:
            task = self._starting[name] = asyncio.create_task(self._open(name))
        try:
            handle = await asyncio.shield(task)
        finally:
            if task.done():
                self._starting.pop(name, None)
        self._handles[name] = handle
        return handle

    async def _open(self, name: str) -> PluginHandle:
        handle: PluginHandle
        if name in self.reattach:
            endpoint, pid = self.reattach[name]
            handle = ReattachedPlugin(name, endpoint, pid, call_timeout=self.call_timeout)
        elif name in self.remotes:
            handle = RemotePlugin(
                name, self.remotes[name], tls=self.remote_tls, call_timeout=self.call_timeout
            )
        else:
            manifest = self.manifest(name)
            if not set(manifest.protocol_versions) & set(self.versions):
                raise IncompatibleVersion(
                    version_mismatch(name, manifest.protocol_versions, self.versions), plugin=name
                )
            handle = ManagedPlugin(
                manifest,
                versions=self.versions,
                start_timeout=self.start_timeout,
                call_timeout=self.call_timeout,
                health_interval=self.health_interval,
                restart=self.restart_policy,
                transport=self.transport,
                auto_mtls=self.auto_mtls,
                init_config=self.init_config,
            )
            await handle.start()
            return handle
        if self.init_config:
            # Remote replicas are stateless by contract; Init reaches the one that answers.
            await handle.call(lambda c: c.init(self.init_config))
        return handle

    async def start_all(self, names: Sequence[str]) -> list[PluginHandle]:
        """Start several plugins in parallel; the first failure is raised after all settle."""
        results = await asyncio.gather(*(self.get(n) for n in names), return_exceptions=True)
        for r in results:
            if isinstance(r, BaseException):
                raise r
        return [r for r in results if isinstance(r, PluginHandle)]

    def handles(self) -> dict[str, PluginHandle]:
        return dict(self._handles)

    async def aclose(self) -> None:
        """Stop every plugin this host started, in parallel; idempotent."""
        if self._closed:
            return
        self._closed = True
        for task in self._starting.values():
            task.cancel()
        await asyncio.gather(*(h.stop() for h in self._handles.values()), return_exceptions=True)
        self._handles.clear()

    async def __aenter__(self) -> PluginHost:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
