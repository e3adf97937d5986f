"""serve(): run a Plugin as a gRPC server, managed by the core, standalone, or remote.

Importing this module in a process the core started (the magic cookie is set) points
file descriptor 1 at stderr and keeps the real stdout for the handshake line alone,
so a stray print() in a plugin can never corrupt the handshake.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import shutil
import signal
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

from plugin_sdk._protocol import (
    APP_PROTOCOL_VERSIONS,
    ENV_CLIENT_CERT,
    ENV_MAX_PORT,
    ENV_MIN_PORT,
    ENV_PROTOCOL_VERSIONS,
    ENV_TRANSPORT,
    ENV_UNIX_SOCKET_DIR,
    EXIT_NO_COMMON_VERSION,
    EXIT_NO_COOKIE,
    HEALTH_SERVICE,
    MAGIC_COOKIE_KEY,
    MAGIC_COOKIE_VALUE,
    VERSION_MISMATCH_TAG,
    handshake_line,
    parse_versions,
    version_mismatch,
)

_handshake_fd: int | None = None
# Taken as early as possible: if the parent dies before serve() gets going, getppid()
# would already name init, and the death would go unnoticed.
_parent_pid = os.getppid()


def _guard_stdout() -> None:
    global _handshake_fd
    if os.environ.get(MAGIC_COOKIE_KEY) and _handshake_fd is None:
        sys.stdout.flush()
        _handshake_fd = os.dup(1)
        os.dup2(2, 1)


_guard_stdout()

# How often a managed plugin checks that the process that started it is alive.
PARENT_POLL_SECONDS = 0.25
MAX_MESSAGE_BYTES = 64 * 1024 * 1024
log = logging.getLogger("plugin_sdk")


class _Masker(logging.Filter):
    """Replaces every secret value the plugin has been handed with '***' in log records."""

    secrets: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        if self.secrets:
            text = record.getMessage()
            masked = mask(text)
            if masked != text:
                record.msg, record.args = masked, None
        return True


def register_secret(value: str) -> None:
    if len(value) >= 4:  # shorter values would mask ordinary words
        _Masker.secrets.add(value)


def mask(text: str) -> str:
    for secret in _Masker.secrets:
        text = text.replace(secret, "***")
    return text


class JsonFormatter(logging.Formatter):
    """One JSON object per line: what the core parses and re-logs under the plugin's name."""

    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, Any] = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if record.exc_info:
            payload["traceback"] = mask(self.formatException(record.exc_info))
        return json.dumps(payload, ensure_ascii=False, default=str)


def setup_logging(level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(_Masker())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())

    def excepthook(tp: type[BaseException], value: BaseException, tb: Any) -> None:
        logging.getLogger("plugin_sdk").critical(
            "unhandled exception: %s: %s", tp.__name__, value, exc_info=(tp, value, tb)
        )

    sys.excepthook = excepthook


@dataclass(frozen=True)
class ServeOptions:
    mode: str  # "managed" or "standalone"
    app_version: int
    transport: str  # "unix" or "tcp"
    listen: str  # socket path or host:port; "" picks one
    client_cert_pem: bytes | None = None  # auto-mTLS (managed)
    tls_cert: str = ""  # files (standalone/remote mode)
    tls_key: str = ""
    tls_client_ca: str = ""


def _fail(message: str, code: int) -> NoReturn:
    print(message, file=sys.stderr, flush=True)
    raise SystemExit(code)


def _negotiate(plugin_name: str, ours: Sequence[int]) -> int:
    raw = os.environ.get(ENV_PROTOCOL_VERSIONS, "")
    try:
        theirs = parse_versions(raw) if raw else (1,)
        if not theirs:
            raise ValueError("it lists no version")
    except ValueError as exc:
        _fail(f"{ENV_PROTOCOL_VERSIONS}={raw!r} is invalid: {exc}", EXIT_NO_COMMON_VERSION)
    common = set(theirs) & set(ours)
    if not common:
        # The tag and the version lists let the core rebuild its own message.
        _fail(
            f"{VERSION_MISMATCH_TAG}: core={_join(theirs)} plugin={_join(ours)}: "
            + version_mismatch(plugin_name, ours, theirs),
            EXIT_NO_COMMON_VERSION,
        )
    return max(common)


def _join(versions: Sequence[int]) -> str:
    return ",".join(str(v) for v in versions)


def _parse_args(plugin_name: str, version: str, argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog=f"{plugin_name}-plugin",
        description=f"DevStream plugin {plugin_name} {version}. The dtm core starts it; "
        "--standalone serves it on its own for development or in a Kubernetes pod.",
    )
    parser.add_argument("--standalone", action="store_true", help="serve with no parent")
    parser.add_argument(
        "--listen",
        default="",
        help="unix:/path/plugin.sock, or HOST:PORT for TCP (default: a unix socket in a temp dir)",
    )
    parser.add_argument("--tls-cert", default="", help="server certificate (PEM) for TCP")
    parser.add_argument("--tls-key", default="", help="server key (PEM)")
    parser.add_argument(
        "--tls-client-ca", default="", help="CA that client certificates must chain to"
    )
    parser.add_argument("--log-level", default=os.environ.get("PLUGIN_LOG_LEVEL", "info"))
    return parser.parse_args(argv)


def serve(plugin: Any, argv: Sequence[str] | None = None) -> NoReturn:
    """Serve `plugin` (a Plugin instance or class) until told to stop; never returns.

    In a process started by the core this performs the handshake; with --standalone
    it prints how to reattach and how to call it with grpcurl. Run without either,
    it explains what it is instead of serving.
    """
    instance = plugin() if isinstance(plugin, type) else plugin
    name = instance.name or type(instance).__name__
    ns = _parse_args(name, instance.version, argv)
    setup_logging(ns.log_level)
    versions: Sequence[int] = getattr(instance, "protocol_versions", APP_PROTOCOL_VERSIONS)
    cookie = os.environ.get(MAGIC_COOKIE_KEY)
    if ns.standalone:
        # unix:/path or any value with a slash is a socket path; HOST:PORT is TCP.
        is_unix = not ns.listen or ns.listen.startswith("unix:") or "/" in ns.listen
        listen = ns.listen.removeprefix("unix:")
        transport = "unix" if is_unix else "tcp"
        opts = ServeOptions(
            "standalone", max(versions), transport, listen,
            tls_cert=ns.tls_cert, tls_key=ns.tls_key, tls_client_ca=ns.tls_client_ca,
        )  # fmt: skip
    elif cookie is None or cookie != MAGIC_COOKIE_VALUE:
        what = "was started without" if cookie is None else "was given the wrong"
        _fail(
            f"This is DevStream plugin {name} {instance.version}; it {what} "
            f"{MAGIC_COOKIE_KEY}. It is not meant to be run directly: dtm starts it.\n"
            f"To serve it on its own while developing it, run:\n"
            f"  {_self_command()} --standalone\n"
            f"then point dtm at it with the DTM_REATTACH_PLUGINS line it prints.",
            EXIT_NO_COOKIE,
        )
    else:
        client_cert = os.environ.get(ENV_CLIENT_CERT, "").encode() or None
        transport = "tcp" if os.environ.get(ENV_TRANSPORT) == "tcp" or client_cert else "unix"
        opts = ServeOptions(
            "managed", _negotiate(name, versions), transport, "", client_cert_pem=client_cert
        )
    try:
        asyncio.run(_serve(instance, name, opts))
    except KeyboardInterrupt:
        pass
    raise SystemExit(0)


def _self_command() -> str:
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    if spec is not None and spec.name:
        return f"python -m {spec.name.removesuffix('.__main__')}"
    return f"python {sys.argv[0]}"


async def build_server(instance: Any, app_version: int, stop: asyncio.Event) -> tuple[Any, Any]:
    """A grpc.aio server with every service a plugin must offer, not yet bound or started."""
    import grpc
    from grpc_health.v1 import health, health_pb2_grpc
    from grpc_reflection.v1alpha import reflection

    from plugin_sdk._proto import plugin_pb2, plugin_pb2_grpc
    from plugin_sdk._servicer import PluginServicer

    server = grpc.aio.server(
        options=[
            ("grpc.so_reuseport", 0),
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
        ]
    )
    plugin_pb2_grpc.add_DevStreamPluginServicer_to_server(
        PluginServicer(instance, app_version), server
    )
    plugin_pb2_grpc.add_GRPCControllerServicer_to_server(_Controller(stop), server)
    health_servicer = health.aio.HealthServicer()  # type: ignore[attr-defined]
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    services = [
        plugin_pb2.DESCRIPTOR.services_by_name["DevStreamPlugin"].full_name,
        plugin_pb2.DESCRIPTOR.services_by_name["GRPCController"].full_name,
        health.SERVICE_NAME,
        reflection.SERVICE_NAME,
    ]
    reflection.enable_server_reflection(services, server)
    return server, health_servicer


async def set_serving(health_servicer: Any) -> None:
    from grpc_health.v1 import health_pb2

    for service in (HEALTH_SERVICE, ""):
        await health_servicer.set(service, health_pb2.HealthCheckResponse.SERVING)


async def _serve(instance: Any, name: str, opts: ServeOptions) -> None:
    import grpc

    stop = asyncio.Event()
    server, health_servicer = await build_server(instance, opts.app_version, stop)
    socket_dir: str | None = None
    cleanup: tuple[str, str] | None = None  # our socket and the core's (private) directory
    server_cert_field = ""
    if opts.transport == "unix":
        path = opts.listen
        if not path:
            # The core hands us a private directory; otherwise make one. Keep the path
            # short: unix socket paths are limited to about 104 bytes.
            base = os.environ.get(ENV_UNIX_SOCKET_DIR)
            if base:
                path = os.path.join(base, f"plugin-{os.getpid()}.sock")
                cleanup = (path, base)
            else:
                socket_dir = tempfile.mkdtemp(prefix="dtm-plugin-")
                path = os.path.join(socket_dir, "plugin.sock")
        server.add_insecure_port(f"unix:{path}")
        address = path
    else:
        creds = None
        if opts.client_cert_pem:
            from plugin_sdk._tls import make_cert

            pair = make_cert(f"plugin {name}")
            server_cert_field = pair.handshake_field
            creds = grpc.ssl_server_credentials(
                [(pair.key_pem, pair.cert_pem)],
                root_certificates=opts.client_cert_pem,
                require_client_auth=True,
            )
        elif opts.tls_cert:
            client_ca = Path(opts.tls_client_ca).read_bytes() if opts.tls_client_ca else None
            creds = grpc.ssl_server_credentials(
                [(Path(opts.tls_key).read_bytes(), Path(opts.tls_cert).read_bytes())],
                root_certificates=client_ca,
                require_client_auth=client_ca is not None,
            )
        address = _bind_tcp(server, opts.listen, creds)

    await server.start()
    await set_serving(health_servicer)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    watcher = None
    if opts.mode == "managed":
        line = handshake_line(opts.app_version, opts.transport, address, server_cert_field)
        fd = _handshake_fd if _handshake_fd is not None else sys.stdout.fileno()
        os.write(fd, (line + "\n").encode())
        watcher = asyncio.create_task(_watch_parent(_parent_pid, stop))
    else:
        _print_standalone(name, instance.version, opts, address)
    log.info("serving %s on %s:%s (protocol %d)", name, opts.transport, address, opts.app_version)

    await stop.wait()
    if watcher is not None and watcher.done() and not watcher.cancelled():
        # The parent is gone: nobody waits for answers, so do not risk a slow
        # interpreter teardown keeping an orphan alive.
        _remove(socket_dir, cleanup)
        os._exit(0)
    log.info("shutting down")
    await health_servicer.enter_graceful_shutdown()
    await server.stop(grace=2.0)
    if watcher:
        watcher.cancel()
    _remove(socket_dir, cleanup)


def _remove(socket_dir: str | None, cleanup: tuple[str, str] | None) -> None:
    if socket_dir:
        shutil.rmtree(socket_dir, ignore_errors=True)
    if cleanup:
        with contextlib.suppress(OSError):
            os.unlink(cleanup[0])
            os.rmdir(cleanup[1])  # only succeeds when the core's directory is empty


def _bind_tcp(server: Any, listen: str, creds: Any) -> str:
    """Bind on `listen`, or on the first free port of PLUGIN_MIN_PORT..PLUGIN_MAX_PORT."""
    if listen:
        host, _, port_text = listen.rpartition(":")
        if not port_text.isdigit():
            raise SystemExit(f"--listen {listen!r}: expected HOST:PORT, :PORT or unix:/path")
        # ":7000" means every interface, as in Go; a pod must be reachable from others.
        candidates = [(host or "0.0.0.0", int(port_text))]
    else:
        low = int(os.environ.get(ENV_MIN_PORT, "0") or 0)
        high = int(os.environ.get(ENV_MAX_PORT, "0") or 0)
        ports = range(low, high + 1) if low and high >= low else range(0, 1)
        candidates = [("127.0.0.1", p) for p in ports]
    for host, port in candidates:
        target = f"{host}:{port}"
        try:
            bound = (
                server.add_secure_port(target, creds) if creds else server.add_insecure_port(target)
            )
        except RuntimeError:
            continue
        if bound:
            return f"{host}:{bound}"
    raise SystemExit(f"no free TCP port in {candidates[0][1]}..{candidates[-1][1]} on {host}")


async def _watch_parent(parent: int, stop: asyncio.Event) -> None:
    """Exit when the process that started us is gone (it was killed, even by SIGKILL)."""
    while not stop.is_set():
        await asyncio.sleep(PARENT_POLL_SECONDS)
        if os.getppid() != parent:
            log.warning("parent process %d is gone; exiting", parent)
            stop.set()
            return


def _print_standalone(name: str, version: str, opts: ServeOptions, address: str) -> None:
    reattach = {
        name: {
            "Protocol": "grpc",
            "ProtocolVersion": opts.app_version,
            "Pid": os.getpid(),
            "Addr": {"Network": opts.transport, "String": address},
        }
    }
    target = f"-unix {address}" if opts.transport == "unix" else address
    tls = "-plaintext"
    if opts.tls_cert:
        tls = f"-cacert {opts.tls_cert}"
        if opts.tls_client_ca:
            tls += " -cert CLIENT.pem -key CLIENT.key"
    print(
        f"plugin {name} {version} is serving standalone (protocol {opts.app_version}) on "
        f"{opts.transport}:{address}\n"
        f"Use it from dtm (which will not stop it):\n"
        f"  export DTM_REATTACH_PLUGINS='{json.dumps(reattach, separators=(',', ':'))}'\n"
        f"Call it with grpcurl:\n"
        f"  grpcurl {tls} {target} list\n"
        f"  grpcurl {tls} {target} devstream.plugin.v1.DevStreamPlugin/GetMetadata\n"
        f'  grpcurl {tls} -d \'{{"options_json": "{{}}"}}\' {target} '
        f"devstream.plugin.v1.DevStreamPlugin/Read\n"
        f"Stop it with Ctrl-C.",
        flush=True,
    )


class _Controller:
    """GRPCController: Shutdown answers, then stops the server."""

    def __init__(self, stop: asyncio.Event) -> None:
        self._stop = stop

    async def Shutdown(self, request: Any, context: Any) -> Any:
        from plugin_sdk._proto import plugin_pb2

        asyncio.get_running_loop().call_later(0.05, self._stop.set)
        return plugin_pb2.ShutdownResponse()
