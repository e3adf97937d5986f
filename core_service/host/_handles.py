"""Handles the core calls plugins through: managed (owned process), reattached, remote."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import grpc

from core_service import metrics
from core_service.errors import HandshakeError, PluginCrashed, PluginGaveUp, PluginHostError
from core_service.host._discovery import PluginManifest
from core_service.host._process import CHANNEL_OPTIONS, Endpoint, PluginProcess, describe_exit
from plugin_sdk._client import PluginClient, PluginInfo
from plugin_sdk._errors import PluginError, PluginUnavailable

T = TypeVar("T")
log = logging.getLogger("dtm.host")


@dataclass(frozen=True)
class RestartPolicy:
    """Exponential backoff with jitter, and at most `budget` restarts per `window` seconds."""

    budget: int = 5
    window: float = 60.0
    initial_backoff: float = 0.1
    max_backoff: float = 5.0

    def delay(self, attempt: int) -> float:
        base = min(self.max_backoff, self.initial_backoff * (2**attempt))
        return float(base * (0.8 + 0.4 * random.random()))


class PluginHandle:
    """What the rest of the core holds to call one plugin."""

    mode = "managed"

    def __init__(self, name: str, call_timeout: float) -> None:
        self.name = name
        self.call_timeout = call_timeout
        self._info: PluginInfo | None = None
        self.calls = 0
        self.failures = 0

    async def client(self) -> PluginClient:
        raise NotImplementedError

    async def call(self, fn: Callable[[PluginClient], Awaitable[T]]) -> T:
        """Run one call; a failure of the transport becomes a clear, typed error."""
        client = await self.client()
        self.calls += 1
        started = time.perf_counter()
        outcome = "error"
        try:
            result = await fn(client)
            outcome = "ok"
            return result
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise  # our caller cancelled us: let it through
            # grpc cancels calls on a channel closed under them: that is a crash here.
            self.failures += 1
            raise await self._unavailable(
                PluginUnavailable("its connection was closed during the call", plugin=self.name)
            ) from None
        except PluginUnavailable as exc:
            self.failures += 1
            raise await self._unavailable(exc) from exc
        except PluginError:
            self.failures += 1
            raise
        finally:
            metrics.plugin_calls.inc(self.name, outcome)
            metrics.plugin_latency.observe(time.perf_counter() - started, self.name)

    async def _unavailable(self, exc: PluginUnavailable) -> Exception:
        return exc

    async def info(self) -> PluginInfo:
        if self._info is None:
            self._info = await self.call(lambda c: c.metadata())
        return self._info

    async def health(self, timeout: float = 5.0) -> bool:
        try:
            client = await self.client()
        except PluginHostError:
            return False
        return await client.health(timeout=timeout)

    def status(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "mode": self.mode,
            "calls": self.calls,
            "failures": self.failures,
        }

    async def stop(self) -> None:
        raise NotImplementedError


class ManagedPlugin(PluginHandle):
    """A plugin process the core started and owns: supervised, restarted, stopped."""

    def __init__(
        self,
        manifest: PluginManifest,
        *,
        versions: tuple[int, ...],
        start_timeout: float = 10.0,
        call_timeout: float = 60.0,
        health_interval: float = 10.0,
        restart: RestartPolicy | None = None,
        transport: str = "unix",
        auto_mtls: bool = False,
        init_config: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(manifest.name, call_timeout)
        self.init_config = dict(init_config or {})
        self.manifest = manifest
        self.versions = versions
        self.start_timeout = start_timeout
        self.health_interval = health_interval
        self.policy = restart or RestartPolicy()
        self.transport = transport
        self.auto_mtls = auto_mtls
        self.process: PluginProcess | None = None
        self.restarts = 0
        self._crashes: deque[float] = deque()
        self._client: PluginClient | None = None
        self._ready = asyncio.Event()
        self._failed: PluginHostError | None = None
        self._stopping = False
        self._monitor: asyncio.Task[None] | None = None
        self._health: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()

    async def start(self) -> None:
        """Start the process (raises PluginStartError) and begin supervising it."""
        async with self._lock:
            await self._spawn()
        if self.health_interval > 0:
            self._health = asyncio.create_task(self._health_loop())

    async def _spawn(self) -> None:
        process = PluginProcess(
            self.manifest,
            versions=self.versions,
            start_timeout=self.start_timeout,
            transport=self.transport,
            auto_mtls=self.auto_mtls,
        )
        endpoint = await process.start()
        try:
            if self.auto_mtls and endpoint.server_cert_pem is None:
                raise HandshakeError(
                    f"plugin {self.name} was asked for mTLS but announced no server "
                    "certificate (handshake field 6 is empty): upgrade its plugin_sdk",
                    plugin=self.name,
                )
            client = PluginClient(
                endpoint.channel(process.client_cert),
                self.name,
                timeout=self.call_timeout,
                owns_channel=True,
            )
            if self.init_config:
                # Sent after every (re)start: a new process has none of the old one's state.
                await client.init(self.init_config)
        except BaseException:
            await process.stop(grace=0)
            raise
        self.process = process
        self._client = client
        self._ready.set()
        self._monitor = asyncio.create_task(self._watch(process))

    async def _watch(self, process: PluginProcess) -> None:
        """Wait for the process to exit; unless we are stopping, restart it with backoff."""
        code = await process.wait()
        if self._stopping or process is not self.process:
            return
        self._ready.clear()
        log.warning(
            "plugin %s (pid %s) %s; restarting", self.name, process.pid, describe_exit(code)
        )
        await process.stop(grace=0)
        # Calls already holding the old client fail with UNAVAILABLE (the socket is
        # gone) and become PluginCrashed; its channel is closed once a new one exists.
        old_client, self._client = self._client, None
        try:
            await self._respawn(process)
        finally:
            if old_client:
                await old_client.aclose()

    async def _respawn(self, process: PluginProcess) -> None:
        now = time.monotonic()
        self._crashes.append(now)
        while self._crashes and now - self._crashes[0] > self.policy.window:
            self._crashes.popleft()
        attempt = 0
        while not self._stopping:
            if len(self._crashes) > self.policy.budget:
                self._failed = PluginGaveUp(
                    f"plugin {self.name} crashed {len(self._crashes)} times in "
                    f"{self.policy.window:g}s, more than its restart budget of "
                    f"{self.policy.budget}; dtm gave up on it. Fix the plugin, then retry",
                    plugin=self.name,
                    stderr_tail=process.tail(),
                )
                log.error("%s", self._failed)
                self._ready.set()  # wake waiters so they see the failure
                return
            await asyncio.sleep(self.policy.delay(attempt))
            try:
                async with self._lock:
                    if self._stopping:
                        return
                    await self._spawn()
                self.restarts += 1
                metrics.plugin_restarts.inc(self.name)
                log.info(
                    "plugin %s restarted (pid %s)", self.name, self.process and self.process.pid
                )
                return
            except (PluginHostError, PluginError) as exc:
                log.error("restarting plugin %s failed: %s", self.name, exc)
                self._crashes.append(time.monotonic())
                attempt += 1

    async def _health_loop(self) -> None:
        misses = 0
        while not self._stopping:
            await asyncio.sleep(self.health_interval)
            if self._failed or not self._ready.is_set() or self._client is None:
                continue
            process = self.process
            if await self._client.health(timeout=min(5.0, self.health_interval)):
                misses = 0
                continue
            misses += 1
            if misses >= 2 and process is not None and process.alive:
                log.error("plugin %s failed 2 health checks; killing it to restart", self.name)
                await process.stop(grace=0)  # _watch sees the exit and restarts
                misses = 0

    async def client(self) -> PluginClient:
        if self._stopping:
            raise PluginHostError(f"plugin {self.name} is stopped", plugin=self.name)
        if not self._ready.is_set():
            try:
                await asyncio.wait_for(
                    self._ready.wait(), self.start_timeout + self.policy.max_backoff * 2
                )
            except TimeoutError as exc:
                raise PluginCrashed(
                    f"plugin {self.name} is restarting and not back yet; retry", plugin=self.name
                ) from exc
        if self._failed:
            raise self._failed
        if self._client is None:
            raise PluginCrashed(f"plugin {self.name} is restarting; retry", plugin=self.name)
        return self._client

    async def _unavailable(self, exc: PluginUnavailable) -> Exception:
        process = self.process
        if process is not None:
            # The channel can notice before the kernel reaps: give the exit a moment.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(process.wait()), 0.5)
            if not process.alive:
                code = process.proc.returncode if process.proc else None
                return PluginCrashed(
                    f"plugin {self.name} (pid {process.pid}) {describe_exit(code)} "
                    "during the call; dtm is restarting it: retry the call",
                    plugin=self.name,
                    stderr_tail=process.tail(),
                )
        return exc

    def status(self) -> dict[str, Any]:
        return {
            **super().status(),
            "pid": self.process.pid if self.process else None,
            "alive": bool(self.process and self.process.alive),
            "restarts": self.restarts,
            "failed": str(self._failed) if self._failed else None,
            "version": self.manifest.version,
        }

    async def stop(self, grace: float = 2.0) -> None:
        """Idempotent: Shutdown RPC, a short grace, then kill of the process group."""
        if self._stopping:
            return
        self._stopping = True
        for task in (self._health, self._monitor):
            if task and not task.done():
                task.cancel()
        async with self._lock:
            process, client = self.process, self._client
            if process is not None and process.alive and client is not None:
                with contextlib.suppress(PluginError, grpc.aio.AioRpcError):
                    await client.shutdown(timeout=min(1.0, grace) or 0.2)
            if client is not None:
                await client.aclose()
            if process is not None:
                await process.stop(grace=grace)
            self._client = None


class ReattachedPlugin(PluginHandle):
    """A plugin someone started standalone; the core uses it and never stops it."""

    mode = "reattached"

    def __init__(self, name: str, endpoint: Endpoint, pid: int | None, call_timeout: float = 60.0):
        super().__init__(name, call_timeout)
        self.endpoint = endpoint
        self.pid = pid
        self._client = PluginClient(
            endpoint.channel(), name, timeout=call_timeout, owns_channel=True
        )

    async def client(self) -> PluginClient:
        return self._client

    async def _unavailable(self, exc: PluginUnavailable) -> Exception:
        return PluginUnavailable(
            f"is not answering at {self.endpoint.target} (reattached, pid {self.pid}); it was "
            "started standalone, so dtm does not restart it: start it again and update "
            "DTM_REATTACH_PLUGINS",
            plugin=self.name,
        )

    def status(self) -> dict[str, Any]:
        return {**super().status(), "pid": self.pid, "target": self.endpoint.target}

    async def stop(self) -> None:
        await self._client.aclose()  # closes our channel only; the process is not ours


# Retry on UNAVAILABLE only for calls that change nothing, so a replica that died
# under a Read is routed around without ever running a Create twice.
_REMOTE_SERVICE_CONFIG = """{
  "loadBalancingConfig": [{"round_robin": {}}],
  "methodConfig": [{
    "name": [
      {"service": "devstream.plugin.v1.DevStreamPlugin", "method": "GetMetadata"},
      {"service": "devstream.plugin.v1.DevStreamPlugin", "method": "Read"},
      {"service": "devstream.plugin.v1.DevStreamPlugin", "method": "Validate"},
      {"service": "grpc.health.v1.Health", "method": "Check"}
    ],
    "retryPolicy": {
      "maxAttempts": 4, "initialBackoff": "0.05s", "maxBackoff": "1s",
      "backoffMultiplier": 2, "retryableStatusCodes": ["UNAVAILABLE"]
    }
  }]
}"""


@dataclass(frozen=True)
class RemoteTLS:
    ca: Path
    cert: Path
    key: Path
    server_name: str = ""


class RemotePlugin(PluginHandle):
    """Replicas behind an address (a Kubernetes Service); client-side round-robin."""

    mode = "remote"

    def __init__(
        self, name: str, target: str, *, tls: RemoteTLS | None = None, call_timeout: float = 60.0
    ) -> None:
        super().__init__(name, call_timeout)
        self.target = target
        options: list[tuple[str, Any]] = [
            *CHANNEL_OPTIONS,
            ("grpc.service_config", _REMOTE_SERVICE_CONFIG),
            ("grpc.enable_retries", 1),
        ]
        if tls is None:
            channel = grpc.aio.insecure_channel(target, options=options)
        else:
            creds = grpc.ssl_channel_credentials(
                root_certificates=tls.ca.read_bytes(),
                private_key=tls.key.read_bytes(),
                certificate_chain=tls.cert.read_bytes(),
            )
            if tls.server_name:
                options.append(("grpc.ssl_target_name_override", tls.server_name))
            channel = grpc.aio.secure_channel(target, creds, options=options)
        self._client = PluginClient(channel, name, timeout=call_timeout, owns_channel=True)

    async def client(self) -> PluginClient:
        return self._client

    def status(self) -> dict[str, Any]:
        return {**super().status(), "target": self.target}

    async def stop(self) -> None:
        await self._client.aclose()
