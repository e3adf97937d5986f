"""The toolchain section of `make bench`: parallel apply against sequential, and a big plan."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from benchlib import Goal, Row, SectionReport, Settings

from core_service.toolchain import load_config, open_toolchain

PARALLEL_GOAL = Goal(">=", 1.6)  # sequential seconds / parallel seconds
PLAN_BUDGET_SECONDS = 5.0


def write_config(workdir: Path, count: int) -> Path:
    lines = ["tools:"]
    for i in range(count):
        lines += [
            "- name: localfile",
            f"  instanceID: f{i}",
            f"  options: {{path: {workdir}/files/f{i}.txt, content: file {i}}}",
        ]
    path = workdir / "config.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


async def timed_apply(workdir: Path, count: int, parallelism: int) -> tuple[float, float]:
    """(seconds for a whole `dtm apply` of `count` new tools, seconds of its changes alone).

    The whole apply includes what does not depend on --parallelism: loading the config
    and state, starting the plugin process, checking every tool's options, stopping.
    """
    config = load_config(write_config(workdir, count))
    started = time.perf_counter()
    async with open_toolchain(
        config, state=str(workdir / "state.db"), parallelism=parallelism, lock="bench"
    ) as tc:
        state = await tc.store.load()
        await tc.check(state)
        changes_started = time.perf_counter()
        outcomes = await tc.apply(state=state)
        changes = time.perf_counter() - changes_started
    elapsed = time.perf_counter() - started
    failed = [o for o in outcomes if o.result != "done"]
    if failed:
        raise RuntimeError(f"bench apply failed: {failed[0]}")
    return elapsed, changes


async def timed_plan(workdir: Path, count: int) -> tuple[float, float]:
    """(seconds to apply `count` tools, seconds for a plan that finds them all unchanged)."""
    apply_seconds, _ = await timed_apply(workdir, count, parallelism=16)
    config = load_config(workdir / "config.yaml")
    started = time.perf_counter()
    async with open_toolchain(config, state=str(workdir / "state.db")) as tc:
        state = await tc.store.load()
        await tc.check(state)
        changes = await tc.plan(state)
    elapsed = time.perf_counter() - started
    if any(c.action != "noop" for c in changes):
        raise RuntimeError("the bench plan found changes where there should be none")
    return apply_seconds, elapsed


async def toolchain_section(settings: Settings) -> SectionReport:
    count = 50 if settings.quick else 200
    plan_count = 200 if settings.quick else 1000
    report = SectionReport(
        title="toolchain: dtm apply and plan through real localfile plugin processes",
        baselines="the same apply with --parallelism 1 / the issue's 5 s budget",
    )
    with (
        tempfile.TemporaryDirectory(prefix="dtm-bench-") as a,
        tempfile.TemporaryDirectory(prefix="dtm-bench-") as b,
    ):
        sequential = await timed_apply(Path(a), count, parallelism=1)
        parallel = await timed_apply(Path(b), count, parallelism=16)
    with tempfile.TemporaryDirectory(prefix="dtm-bench-") as c:
        apply_big, plan_big = await timed_plan(Path(c), plan_count)
    report.rows += [
        Row(f"apply {count} tools, one at a time: whole command", "s", sequential[0]),
        Row(f"apply {count} tools, parallelism 16: whole command", "s", parallel[0]),
        Row("  of which the changes, one at a time", "s", sequential[1]),
        Row("  of which the changes, parallelism 16", "s", parallel[1]),
        # ratio = sequential / parallel: how many times faster the parallel apply is.
        Row("speed-up, whole command", "x", sequential[0] / parallel[0], 1.0, PARALLEL_GOAL),
        Row("speed-up, changes alone", "x", sequential[1] / parallel[1], 1.0, PARALLEL_GOAL),
        Row(f"apply {plan_count} tools, parallelism 16", "s", apply_big),
        Row(
            f"plan {plan_count} unchanged tools",
            "s",
            plan_big,
            PLAN_BUDGET_SECONDS,
            Goal("<=", 1.0),
        ),
    ]
    report.notes += [
        "whole command: loading config and state, starting the plugin, checking every "
        "tool's options, the changes, stopping; the changes: Read + Create + state save per "
        "tool. State is SQLite in a temporary directory",
        "plan: a fresh Read of every tool, compared with its stored status",
    ]
    return report
