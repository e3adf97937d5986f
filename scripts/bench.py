"""Benchmarks of DevStream, each figure beside a baseline measured in the same run.

Run from the repository root:

    .venv/bin/python scripts/bench.py [--quick] [--only SECTION]

Each section is one async function registered in SECTIONS; it returns a SectionReport
whose rows are printed as a table and written to bench-results/SECTION.json. A row
compares one of our figures with its baseline as a ratio and, when the row has a goal,
says PASS or MISS. Nothing here asserts on timing: the script only reports, and exits 0
unless something crashes.

Sections:
  protocol  calls of the localfile plugin through the core's plugin host, against a bare
            grpc.aio echo server in its own process over a unix socket; and the plugin's
            cold start against `python -c "import grpc"`.
  toolchain `dtm apply` of 200 independent localfile tools in parallel against the same
            apply one tool at a time; a plan of 1000 unchanged tools.
  lake      extract+convert of 200k GitHub-shaped raw rows against writing the same rows
            directly with SQLAlchemy; the core's peak memory at 100k and 400k rows.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import shutil
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import grpc
from bench_lake import lake_section
from bench_toolchain import toolchain_section
from benchlib import Goal, Row, Section, SectionReport, Settings
from rich.console import Console
from rich.table import Table

from core_service.host import PluginHandle, PluginHost
from plugin_sdk._client import PluginClient
from plugin_sdk._proto import plugin_pb2 as pb

REPO = Path(__file__).resolve().parent.parent
RESULTS_DIR = REPO / "bench-results"
CONCURRENCIES = (1, 32)
ECHO_METHOD = "/bench.Echo/Echo"
CALL_TIMEOUT = 60.0  # the per-call deadline PluginClient sets; the bare client sets it too


# -- shared plumbing -----------------------------------------------------------------------


# The goals of the protocol section, on ratio = ours / baseline.
THROUGHPUT_GOAL = Goal(">=", 0.8)
P99_GOAL = Goal("<=", 1.5)
COLD_START_GOAL = Goal("<=", 1.5)


@dataclass(frozen=True)
class LoopStats:
    """What `measure` saw: every call's latency folded into throughput and percentiles."""

    concurrency: int
    calls: int
    seconds: float
    calls_per_s: float
    p50_ms: float
    p99_ms: float


async def _run_loop(
    call: Callable[[], Awaitable[object]], concurrency: int, duration: float
) -> tuple[list[float], float]:
    """`concurrency` tasks each call in a loop until `duration` is up; latencies, wall time."""
    clock = time.perf_counter
    latencies: list[float] = []
    start = clock()
    deadline = start + duration

    async def worker() -> None:
        while (t0 := clock()) < deadline:
            await call()
            latencies.append(clock() - t0)

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return latencies, clock() - start


async def measure(
    call: Callable[[], Awaitable[object]], concurrency: int, settings: Settings
) -> LoopStats:
    """Warm up, then measure calls/s and p50/p99 latency of `call` at `concurrency`."""
    await _run_loop(call, concurrency, settings.warmup)
    latencies, seconds = await _run_loop(call, concurrency, settings.duration)
    cuts = statistics.quantiles(latencies, n=100)
    return LoopStats(
        concurrency=concurrency,
        calls=len(latencies),
        seconds=seconds,
        calls_per_s=len(latencies) / seconds,
        p50_ms=cuts[49] * 1e3,
        p99_ms=cuts[98] * 1e3,
    )


def machine() -> dict[str, Any]:
    return {
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "grpcio": grpc.__version__,
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "loadavg_1m": round(os.getloadavg()[0], 2),  # other work on the machine skews figures
        "executable": sys.executable,
    }


# -- the bare baseline: a grpc.aio echo server in a subprocess -------------------------------


async def serve_echo(socket_path: str, reply_bytes: int) -> None:
    """The echo server process: answers ECHO_METHOD with `reply_bytes` bytes, no codegen.

    Prints "ready" once serving; stops on SIGTERM, SIGINT or when its stdin closes.
    """
    reply = b"r" * reply_bytes

    async def echo(request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
        return reply

    service, method = ECHO_METHOD.strip("/").split("/")
    handler = grpc.method_handlers_generic_handler(
        service, {method: grpc.unary_unary_rpc_method_handler(echo)}
    )
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((handler,))
    server.add_insecure_port(f"unix:{socket_path}")
    await server.start()

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):  # SIGINT: Ctrl-C reaches the whole group
        loop.add_signal_handler(sig, stop.set)
    stdin = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(stdin), sys.stdin)
    print("ready", flush=True)
    eof = asyncio.create_task(stdin.read())
    stopped = asyncio.create_task(stop.wait())
    await asyncio.wait({eof, stopped}, return_when=asyncio.FIRST_COMPLETED)
    for task in (eof, stopped):
        task.cancel()
    await server.stop(grace=0.5)


@contextlib.asynccontextmanager
async def echo_server(reply_bytes: int) -> AsyncIterator[str]:
    """Run `serve_echo` in a subprocess (this script, --serve-echo); yield its target."""
    socket_dir = tempfile.mkdtemp(prefix="dtm-bench-echo-")
    socket_path = os.path.join(socket_dir, "echo.sock")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, __file__, "--serve-echo", socket_path, "--reply-bytes", str(reply_bytes),
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), 30.0)
        if line.strip() != b"ready":
            raise RuntimeError(f"the echo server did not start (it printed {line!r})")
        yield f"unix:{socket_path}"
    finally:
        if proc.returncode is None:
            if proc.stdin is not None:
                proc.stdin.close()
            with contextlib.suppress(ProcessLookupError):
                proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), 5.0)
            except TimeoutError:
                proc.kill()
                await proc.wait()
        shutil.rmtree(socket_dir, ignore_errors=True)


# -- section: protocol ---------------------------------------------------------------------


def read_options(workdir: Path) -> dict[str, Any]:
    """Options of a realistic Read: the localfile tool's whole options, the file present."""
    content = "greeting: hello from the devstream benchmark\n"
    path = workdir / "workspace" / "config" / "app-settings.yaml"
    path.parent.mkdir(parents=True)
    path.write_text(content)
    path.chmod(0o644)
    return {"path": str(path), "content": content, "mode": "0644"}


def wire_bytes(options: Mapping[str, Any], status: Mapping[str, Any] | None) -> tuple[int, int]:
    """Sizes on the wire of the Read request and its response, as PluginClient encodes them."""

    def dumps(value: Any) -> str:
        return json.dumps(value, separators=(",", ":"), sort_keys=True)

    request = pb.ResourceRequest(options_json=dumps(options))
    response = pb.ResourceResponse(status_json="" if status is None else dumps(status))
    return request.ByteSize(), response.ByteSize()


def loop_rows(ours: LoopStats, bare: LoopStats) -> list[Row]:
    at = f"Read, concurrency {ours.concurrency}:"
    return [
        Row(f"{at} throughput", "calls/s", ours.calls_per_s, bare.calls_per_s, THROUGHPUT_GOAL),
        Row(f"{at} p50 latency", "ms", ours.p50_ms, bare.p50_ms),
        Row(f"{at} p99 latency", "ms", ours.p99_ms, bare.p99_ms, P99_GOAL),
    ]


async def throughput_rows(
    settings: Settings, options: dict[str, Any], report: SectionReport
) -> None:
    """Read through PluginHost -> ManagedPlugin.call -> PluginClient.read, against bare gRPC."""
    async with contextlib.AsyncExitStack() as stack:
        host = await stack.enter_async_context(PluginHost())
        handle = await host.get("localfile")

        async def read(client: PluginClient) -> dict[str, Any] | None:
            return await client.read(options)

        async def ours() -> object:
            return await handle.call(read)

        request_bytes, reply_bytes = wire_bytes(options, await handle.call(read))
        report.details["payload_bytes"] = {"request": request_bytes, "reply": reply_bytes}
        payload = b"q" * request_bytes
        target = await stack.enter_async_context(echo_server(reply_bytes))
        channel = await stack.enter_async_context(grpc.aio.insecure_channel(target))
        await channel.channel_ready()
        # No serializers: bytes in, bytes out.
        echo = channel.unary_unary(ECHO_METHOD, request_serializer=None, response_deserializer=None)

        async def bare() -> object:
            return await echo(payload, timeout=CALL_TIMEOUT)

        runs: dict[str, list[dict[str, Any]]] = {"ours": [], "bare": []}
        for concurrency in CONCURRENCIES:
            b = await measure(bare, concurrency, settings)
            o = await measure(ours, concurrency, settings)
            runs["bare"].append(asdict(b))
            runs["ours"].append(asdict(o))
            report.rows += loop_rows(o, b)
        report.details["throughput"] = runs
        report.details["handle_status"] = handle.status()


@dataclass(frozen=True)
class ColdStart:
    discover_s: float  # PluginHost(): finding the manifests
    spawn_s: float  # host.get(): spawn to handshake line
    first_read_s: float  # first Read on the fresh channel

    @property
    def total_s(self) -> float:
        """From spawning the plugin to its first Read returning (discovery not included)."""
        return self.spawn_s + self.first_read_s


async def cold_start(options: dict[str, Any]) -> ColdStart:
    clock = time.perf_counter
    t0 = clock()
    async with PluginHost() as host:
        t1 = clock()
        handle: PluginHandle = await host.get("localfile")
        t2 = clock()
        await handle.call(lambda c: c.read(options))
        t3 = clock()
    return ColdStart(discover_s=t1 - t0, spawn_s=t2 - t1, first_read_s=t3 - t2)


async def import_grpc() -> float:
    """Wall time of `python -c "import grpc"`, spawned the way the host spawns plugins."""
    t0 = time.perf_counter()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", "import grpc",
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    _, err = await proc.communicate()
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"python -c 'import grpc' failed: {err.decode(errors='replace')}")
    return seconds


async def cold_start_rows(
    settings: Settings, options: dict[str, Any], report: SectionReport
) -> None:
    """Median of `settings.runs` cold starts, interleaved with as many `import grpc` runs."""
    await cold_start(options)  # one discarded run of each warms the disk cache and .pyc files
    await import_grpc()
    starts: list[ColdStart] = []
    imports: list[float] = []
    for _ in range(settings.runs):
        starts.append(await cold_start(options))
        imports.append(await import_grpc())

    def median_ms(values: list[float]) -> float:
        return statistics.median(values) * 1e3

    total = median_ms([s.total_s for s in starts])
    report.rows += [
        Row("cold start: spawn to first Read", "ms", total, median_ms(imports), COLD_START_GOAL),
        Row("  of which spawn to handshake", "ms", median_ms([s.spawn_s for s in starts])),
        Row("  of which first Read", "ms", median_ms([s.first_read_s for s in starts])),
        Row("  (before: PluginHost() discovery)", "ms", median_ms([s.discover_s for s in starts])),
    ]
    report.details["cold_start"] = {
        "runs": [{**asdict(s), "total_s": s.total_s} for s in starts],
        "import_grpc_s": imports,
    }


async def protocol_section(settings: Settings) -> SectionReport:
    report = SectionReport(
        title="protocol: the localfile plugin through the core's plugin host",
        baselines="bare grpc.aio echo (subprocess, unix socket) / python -c 'import grpc'",
    )
    with tempfile.TemporaryDirectory(prefix="dtm-bench-") as workdir:
        options = read_options(Path(workdir))
        await throughput_rows(settings, options, report)
        await cold_start_rows(settings, options, report)
    sizes = report.details["payload_bytes"]
    report.notes += [
        f"throughput: {settings.duration:g} s per measurement after {settings.warmup:g} s of "
        "warm-up; concurrency = asyncio tasks looping calls",
        f"bare: generic handler, bytes in/out, {sizes['request']} B request / {sizes['reply']} B "
        f"reply (the Read's sizes), {CALL_TIMEOUT:g} s deadline",
        f"cold start: median of {settings.runs} runs each; baseline: "
        f"`{Path(sys.executable).name} -c 'import grpc'`, same interpreter",
    ]
    return report


SECTIONS: dict[str, Section] = {
    "protocol": protocol_section,
    "toolchain": toolchain_section,
    "lake": lake_section,
}


# -- output --------------------------------------------------------------------------------


def _fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "—"
    if unit == "calls/s":
        return f"{value:,.0f}"
    decimals = 3 if value < 1 else 2 if value < 10 else 1 if value < 100 else 0
    return f"{value:,.{decimals}f}"


def render(console: Console, name: str, report: SectionReport) -> None:
    table = Table(title=report.title, title_justify="left")
    table.add_column("measure")
    table.add_column("unit")
    table.add_column("ours", justify="right")
    table.add_column("baseline", justify="right")
    table.add_column("ratio", justify="right")
    table.add_column("goal", justify="center")
    table.add_column("", justify="center")
    for row in report.rows:
        verdict = row.verdict or ""
        colour = {"PASS": "green", "MISS": "red"}.get(verdict, "")
        table.add_row(
            row.measure,
            row.unit,
            _fmt(row.ours, row.unit),
            _fmt(row.baseline, row.unit),
            "—" if row.ratio is None else f"{row.ratio:.2f}",
            str(row.goal) if row.goal else "",
            f"[{colour}]{verdict}[/{colour}]" if colour else verdict,
        )
    console.print(f"[bold]{name}[/bold] — baseline: {report.baselines}")
    console.print(table)
    for note in report.notes:
        console.print(f"  {note}", highlight=False)


def write_json(name: str, settings: Settings, report: SectionReport) -> Path:
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{name}.json"
    document = {
        "section": name,
        "title": report.title,
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": machine(),
        "settings": asdict(settings),
        "baselines": report.baselines,
        "rows": [row.as_dict() for row in report.rows],
        "notes": report.notes,
        "details": report.details,
    }
    path.write_text(json.dumps(document, indent=2) + "\n")
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="shorter runs, fewer samples")
    parser.add_argument("--only", choices=sorted(SECTIONS), help="run this section alone")
    parser.add_argument("--serve-echo", metavar="SOCKET", help=argparse.SUPPRESS)
    parser.add_argument("--reply-bytes", type=int, default=300, help=argparse.SUPPRESS)
    ns = parser.parse_args(argv)
    if ns.serve_echo:
        asyncio.run(serve_echo(ns.serve_echo, ns.reply_bytes))
        return 0

    settings = Settings.make(ns.quick)
    console = Console(width=max(Console().width, 110))
    m = machine()
    console.print(
        f"python {m['python']} · grpcio {m['grpcio']} · {m['cpus']} CPUs · "
        f"load {m['loadavg_1m']} · {m['platform']}" + (" · --quick" if settings.quick else "")
    )
    for name in [ns.only] if ns.only else list(SECTIONS):
        try:
            report = asyncio.run(SECTIONS[name](settings))
        except KeyboardInterrupt:  # asyncio.run has cancelled the section: all is stopped
            console.print(f"{name}: interrupted")
            return 130
        render(console, name, report)
        console.print(f"written to {write_json(name, settings, report).relative_to(REPO)}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
