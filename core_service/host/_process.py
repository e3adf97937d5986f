"""One plugin process: launch, handshake, log draining, and stop (go-plugin's Client)."""

from __future__ import annotations

import asyncio
import atexit
import collections
import contextlib
import json
import logging
import os
import re
import shutil
import signal
import tempfile
from dataclasses import dataclass

import grpc

from core_service.errors import (
    HandshakeError,
    HandshakeTimeout,
    IncompatibleVersion,
    PluginExitedEarly,
)
from core_service.host._discovery import PluginManifest
from plugin_sdk._protocol import (
    CORE_PROTOCOL_VERSION,
    ENV_CLIENT_CERT,
    ENV_PROTOCOL_VERSIONS,
    ENV_TRANSPORT,
    ENV_UNIX_SOCKET_DIR,
    EXIT_NO_COMMON_VERSION,
    EXIT_NO_COOKIE,
    MAGIC_COOKIE_KEY,
    MAGIC_COOKIE_VALUE,
    TLS_SERVER_NAME,
    VERSION_MISMATCH_TAG,
    parse_versions,
    version_mismatch,
)
from plugin_sdk._tls import CertPair, make_cert, pem_from_handshake_field

# Only these variables of the core's environment reach a plugin: the core's own
# secrets (tokens in the environment) must not leak into every plugin process.
PASSED_ENV = (
    "PATH", "HOME", "USER", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "TMPDIR", "VIRTUAL_ENV",
    "SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE", "PYTHONPATH", "PLUGIN_LOG_LEVEL",
    "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy",
    "GIT_AUTHOR_NAME", "GIT_AUTHOR_EMAIL", "GIT_COMMITTER_NAME", "GIT_COMMITTER_EMAIL",
)  # fmt: skip
STDERR_TAIL_LINES = 40
_MISMATCH = re.compile(
    re.escape(VERSION_MISMATCH_TAG) + r": core=(?P<core>[\d,]+) plugin=(?P<plugin>[\d,]+)"
)
CHANNEL_OPTIONS = [
    ("grpc.max_receive_message_length", 64 * 1024 * 1024),
    ("grpc.max_send_message_length", 64 * 1024 * 1024),
]

# Process groups started and not yet reaped, killed at interpreter exit as a last resort.
_live_groups: set[int] = set()


@atexit.register
def _kill_leftovers() -> None:
    for pgid in list(_live_groups):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGKILL)


@dataclass(frozen=True)
class Endpoint:
    """Where a plugin listens, from its handshake line or a reattach config."""

    network: str  # "unix" or "tcp"
    address: str
    protocol_version: int
    server_cert_pem: bytes | None = None

    @property
    def target(self) -> str:
        return f"unix:{self.address}" if self.network == "unix" else self.address

    def channel(self, client_cert: CertPair | None = None) -> grpc.aio.Channel:
        if self.server_cert_pem is None:
            return grpc.aio.insecure_channel(self.target, options=CHANNEL_OPTIONS)
        if client_cert is None:
            raise HandshakeError("the plugin offered TLS but the core made no client certificate")
        creds = grpc.ssl_channel_credentials(
            root_certificates=self.server_cert_pem,
            private_key=client_cert.key_pem,
            certificate_chain=client_cert.cert_pem,
        )
        return grpc.aio.secure_channel(
            self.target,
            creds,
            options=[*CHANNEL_OPTIONS, ("grpc.ssl_target_name_override", TLS_SERVER_NAME)],
        )


def parse_handshake(line: str, plugin: str, versions: tuple[int, ...]) -> Endpoint:
    """Check one handshake line; each error says what was wrong and how to fix it."""
    parts = line.strip().split("|")
    if len(parts) < 5 or not parts[0].isdigit():
        shown = line.strip()[:200]
        raise HandshakeError(
            f"plugin {plugin} wrote {shown!r} to stdout before its handshake line. A plugin "
            "must print nothing on stdout but the handshake "
            "(CORE|APP|NETWORK|ADDR|grpc|CERT): log to stderr instead",
            plugin=plugin,
        )
    core, app, network, address, protocol = parts[:5]
    cert = parts[5] if len(parts) > 5 else ""
    if int(core) != CORE_PROTOCOL_VERSION:
        raise IncompatibleVersion(
            f"plugin {plugin} uses handshake format {core}, this core reads "
            f"{CORE_PROTOCOL_VERSION}: rebuild the plugin with a matching plugin_sdk",
            plugin=plugin,
        )
    if not app.isdigit() or int(app) not in versions:
        raise IncompatibleVersion(
            version_mismatch(plugin, [int(app)] if app.isdigit() else [0], versions), plugin=plugin
        )
    if network not in ("unix", "tcp") or not address:
        raise HandshakeError(
            f"plugin {plugin} announced network {network!r} at {address!r}; "
            "expected unix or tcp with an address",
            plugin=plugin,
        )
    if protocol != "grpc":
        raise HandshakeError(
            f"plugin {plugin} speaks {protocol!r}; this core speaks grpc only", plugin=plugin
        )
    return Endpoint(network, address, int(app), pem_from_handshake_field(cert) if cert else None)


_CHAIN_MARKERS = (
    "During handling of the above exception",
    "The above exception was the direct cause",
    "Traceback (most recent call last)",
)


def _continues_traceback(previous: str, line: str) -> bool:
    """Whether `line` still belongs to the traceback whose last line was `previous`."""
    if not line or line[0].isspace() or line.startswith(_CHAIN_MARKERS):
        return True
    # After the frames comes one unindented "Error: message" line; a blank or a
    # chain marker before this line means a chained traceback goes on.
    return previous == "" or previous.startswith(_CHAIN_MARKERS[:2]) or previous[0].isspace()


def describe_exit(code: int | None) -> str:
    if code is None:
        return "is still running"
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with code {code}"


class PluginProcess:
    """Launches one plugin executable and owns it until stop()."""

    def __init__(
        self,
        manifest: PluginManifest,
        *,
        versions: tuple[int, ...],
        start_timeout: float = 10.0,
        transport: str = "unix",
        auto_mtls: bool = False,
    ) -> None:
        self.manifest = manifest
        self.name = manifest.name
        self.versions = versions
        self.start_timeout = start_timeout
        self.transport = "tcp" if auto_mtls else transport
        self.client_cert = make_cert(f"dtm core for {manifest.name}") if auto_mtls else None
        self.log = logging.getLogger(f"dtm.plugin.{manifest.name}")
        self.stderr_tail: collections.deque[str] = collections.deque(maxlen=STDERR_TAIL_LINES)
        self.proc: asyncio.subprocess.Process | None = None
        self.endpoint: Endpoint | None = None
        self._socket_dir: str | None = None
        self._drains: list[asyncio.Task[None]] = []
        self._stopped = False

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    def _env(self) -> dict[str, str]:
        env = {k: os.environ[k] for k in PASSED_ENV if k in os.environ}
        if self.manifest.pythonpath:
            env["PYTHONPATH"] = os.pathsep.join(
                [*self.manifest.pythonpath, *filter(None, [env.get("PYTHONPATH")])]
            )
        env[MAGIC_COOKIE_KEY] = MAGIC_COOKIE_VALUE
        env[ENV_PROTOCOL_VERSIONS] = ",".join(map(str, self.versions))
        env["PYTHONUNBUFFERED"] = "1"
        if self.transport == "unix":
            self._socket_dir = tempfile.mkdtemp(prefix=f"dtm-{self.name}-")
            env[ENV_UNIX_SOCKET_DIR] = self._socket_dir
        else:
            env[ENV_TRANSPORT] = "tcp"
        if self.client_cert:
            env[ENV_CLIENT_CERT] = self.client_cert.cert_pem.decode()
        return env

    def tail(self) -> str:
        return "\n".join(self.stderr_tail)

    async def start(self) -> Endpoint:
        """Launch and handshake; on any failure the process is gone when this raises."""
        try:
            self.proc = await asyncio.create_subprocess_exec(
                *self.manifest.command,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env=self._env(),
                cwd=os.getcwd(),
                start_new_session=True,  # its own process group, killed as one
            )
        except OSError as exc:
            self._cleanup_dir()
            raise PluginExitedEarly(
                f"plugin {self.name}: cannot run {list(self.manifest.command)}: {exc}",
                plugin=self.name,
            ) from exc
        _live_groups.add(self.proc.pid)
        assert self.proc.stdout is not None and self.proc.stderr is not None
        stderr_drain = asyncio.create_task(self._drain_stderr(self.proc.stderr))
        self._drains.append(stderr_drain)
        try:
            self.endpoint = await self._handshake(self.proc, stderr_drain)
        except BaseException:
            await self.stop(grace=0)
            raise
        self._drains.append(asyncio.create_task(self._drain_stdout(self.proc.stdout)))
        self.log.debug("started pid %d on %s", self.proc.pid, self.endpoint.target)
        return self.endpoint

    async def _handshake(
        self, proc: asyncio.subprocess.Process, stderr_drain: asyncio.Task[None]
    ) -> Endpoint:
        assert proc.stdout is not None
        line_task = asyncio.create_task(proc.stdout.readline())
        exit_task = asyncio.create_task(proc.wait())
        try:
            done, _ = await asyncio.wait(
                {line_task, exit_task},
                timeout=self.start_timeout,
                return_when=asyncio.FIRST_COMPLETED,
            )
        finally:
            for t in (line_task, exit_task):
                if not t.done():
                    t.cancel()
        line = line_task.result() if line_task in done else None
        if line:
            return parse_handshake(line.decode(errors="replace"), self.name, self.versions)
        if not done:
            raise HandshakeTimeout(
                f"plugin {self.name} did not complete its handshake within "
                f"{self.start_timeout:g}s (pid {proc.pid}); it was killed",
                plugin=self.name,
                stderr_tail=self.tail(),
            )
        # Stdout closed or the process exited: collect the rest of its stderr first.
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(proc.wait(), 2.0)
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(asyncio.shield(stderr_drain), 1.0)
        code = proc.returncode
        mismatch = _MISMATCH.search(self.tail())
        if code == EXIT_NO_COMMON_VERSION and mismatch:
            plugin_versions = parse_versions(mismatch["plugin"])
            raise IncompatibleVersion(
                version_mismatch(self.name, plugin_versions, self.versions), plugin=self.name
            )
        if code == EXIT_NO_COOKIE and MAGIC_COOKIE_KEY in self.tail():
            raise HandshakeError(
                f"plugin {self.name} refused the magic cookie ({MAGIC_COOKIE_KEY}): it was "
                "built for another host or another major version of dtm",
                plugin=self.name,
                stderr_tail=self.tail(),
            )
        raise PluginExitedEarly(
            f"plugin {self.name} {describe_exit(code)} before it could connect",
            plugin=self.name,
            stderr_tail=self.tail(),
        )

    async def _drain_stderr(self, stream: asyncio.StreamReader) -> None:
        """Re-log each stderr line under the plugin's name; keep raw tracebacks whole.

        A traceback printed by Python itself (before the SDK's JSON logging is set up)
        spans many lines, and chained exceptions add more: those lines are gathered
        into one record, which ends at a quiet moment or at a line that cannot belong
        to it.
        """
        pending: list[str] = []
        while True:
            try:
                raw = await (
                    asyncio.wait_for(stream.readline(), 0.2) if pending else stream.readline()
                )
            except TimeoutError:
                self._relog_raw("\n".join(pending), logging.ERROR)
                pending = []
                continue
            if not raw:
                break
            text = raw.decode(errors="replace").rstrip("\n")
            if pending and _continues_traceback(pending[-1], text):
                pending.append(text)
                continue
            if pending:
                self._relog_raw("\n".join(pending), logging.ERROR)
                pending = []
            if text.startswith("Traceback (most recent call last)"):
                pending = [text]
            else:
                self._relog(text)
        if pending:
            self._relog_raw("\n".join(pending), logging.ERROR)

    def _relog(self, text: str) -> None:
        if text.startswith("{"):
            try:
                rec = json.loads(text)
            except ValueError:
                rec = None
            if isinstance(rec, dict):
                level = logging.getLevelName(str(rec.get("level", "info")).upper())
                msg = str(rec.get("msg", ""))
                if rec.get("traceback"):
                    msg += "\n" + str(rec["traceback"])
                self.stderr_tail.append(msg)
                self.log.log(level if isinstance(level, int) else logging.INFO, "%s", msg)
                return
        self._relog_raw(text, logging.INFO)

    def _relog_raw(self, text: str, level: int) -> None:
        self.stderr_tail.append(text)
        self.log.log(level, "%s", text)

    async def _drain_stdout(self, stream: asyncio.StreamReader) -> None:
        while raw := await stream.readline():
            self.log.warning(
                "wrote to stdout after its handshake: %s", raw.decode(errors="replace").rstrip()
            )

    async def wait(self) -> int:
        assert self.proc is not None
        return await self.proc.wait()

    async def stop(self, grace: float = 2.0) -> None:
        """Wait up to `grace` for the process to exit by itself, then kill its group.

        Idempotent. The caller sends the Shutdown RPC first when the plugin is healthy.
        """
        if self._stopped:
            return
        self._stopped = True
        proc = self.proc
        if proc is not None:
            if proc.returncode is None and grace > 0:
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(proc.wait(), grace)
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            await proc.wait()
            _live_groups.discard(proc.pid)
        for task in self._drains:
            if not task.done():
                # Give the drains a moment to log the last lines, then stop them.
                with contextlib.suppress(asyncio.TimeoutError, asyncio.CancelledError):
                    await asyncio.wait_for(asyncio.shield(task), 0.5)
                task.cancel()
        self._cleanup_dir()

    def _cleanup_dir(self) -> None:
        if self._socket_dir:
            shutil.rmtree(self._socket_dir, ignore_errors=True)
            self._socket_dir = None
