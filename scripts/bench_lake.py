"""The data-lake section of `make bench`: extract+convert against a direct bulk insert, and
the core's peak memory at two sizes (it must not grow with the row count).

The raw table is seeded directly (not timed). "Ours" runs the benchlake plugin's
extractor and converter through a real pipeline: raw rows read from the database,
streamed to the plugin process, tool rows back and written, then the same for domain
rows. The baseline writes the very same tool and domain rows with SQLAlchemy
executemany in batches of the same size, into the same kind of database.
"""

from __future__ import annotations

import asyncio
import datetime
import json
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from benchlake_path import BENCH_PLUGINS
from benchlib import Goal, Row, SectionReport, Settings

RATE_GOAL = Goal(">=", 0.5)
MEMORY_GOAL = Goal("<=", 1.25)  # peak RSS at the large size / at the small size
PARAMS_OPTIONS = {"scope": "bench"}
BATCH = 500


def issue(i: int) -> dict[str, Any]:
    """A GitHub-shaped issue of about 2 KiB of JSON."""
    day = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC) + datetime.timedelta(minutes=i)
    return {
        "id": 10_000_000 + i, "number": i + 1, "node_id": f"I_kwDOA{i:010d}",
        "url": f"https://api.github.com/repos/acme/app/issues/{i + 1}",
        "html_url": f"https://github.com/acme/app/issues/{i + 1}",
        "title": f"Issue {i}: something does not work as expected in module {i % 97}",
        "body": ("Steps to reproduce:\n1. open the app\n2. click the button\n" * 28)[:1400],
        "state": "closed" if i % 3 == 0 else "open",
        "user": {"login": f"user{i % 500}", "id": 5000 + i % 500, "type": "User",
                 "avatar_url": f"https://avatars.githubusercontent.com/u/{5000 + i % 500}"},
        "labels": [{"id": 1, "name": "bug", "color": "d73a4a"},
                   {"id": 2, "name": f"area/{i % 7}", "color": "0e8a16"}],
        "comments": i % 11, "created_at": day.isoformat(), "updated_at": day.isoformat(),
        "closed_at": day.isoformat() if i % 3 == 0 else None, "author_association": "MEMBER",
    }  # fmt: skip


def raw_rows(n: int, params: str) -> Iterator[list[dict[str, Any]]]:
    now = datetime.datetime.now(datetime.UTC)
    for start in range(0, n, BATCH * 4):
        yield [
            {"params": params, "data": json.dumps(issue(i)), "url": "", "input": None,
             "created_at": now}
            for i in range(start, min(n, start + BATCH * 4))
        ]  # fmt: skip


def params() -> str:
    from core_service.store import canonical

    return canonical({"ConnectionId": 0, **PARAMS_OPTIONS})


async def seed(db_url: str, n: int) -> None:
    from sqlalchemy import MetaData, insert

    from core_service.lake._tables import ensure, raw_table
    from core_service.store import Database

    async with Database(db_url) as db:
        table = raw_table("_raw_benchlake_issues", MetaData())
        async with db.begin() as conn:
            await conn.run_sync(lambda c: ensure(c, table))
        for batch in raw_rows(n, params()):
            async with db.begin() as conn:
                await conn.execute(insert(table), batch)


async def run_ours(db_url: str) -> float:
    from core_service.host import PluginHost
    from core_service.lake import PipelineRunner, parse_plan
    from core_service.store import Database

    plan = parse_plan({"name": "bench", "plan": [[{
        "plugin": "benchlake", "options": PARAMS_OPTIONS,
        "subtasks": ["extract_issues", "convert_issues"],
    }]]})  # fmt: skip
    async with Database(db_url) as db, PluginHost(plugin_dirs=[BENCH_PLUGINS]) as host:
        runner = PipelineRunner(db, host, batch_size=BATCH)
        pid = await runner.create(plan)
        await (await host.get("benchlake")).info()  # start-up is not what is measured
        started = time.perf_counter()
        status = await runner.run(pid)
        elapsed = time.perf_counter() - started
        if status != "done":
            raise RuntimeError(f"bench pipeline {status}: {(await runner.get(pid))['message']}")
    return elapsed


async def run_direct(db_url: str, n: int) -> float:
    """Seconds to write the same tool and domain rows with SQLAlchemy alone."""
    sys.path.insert(0, str(BENCH_PLUGINS))
    from benchlake import ISSUES, domain_row, tool_row
    from sqlalchemy import MetaData

    from core_service.lake._tables import coercer, ensure, sql_table
    from core_service.store import Database, upsert
    from plugin_sdk import domain

    md = MetaData()
    tool_spec = ISSUES.__class__("_tool_benchdirect_issues", ISSUES.columns, ISSUES.primary_key)
    tool_table = sql_table(tool_spec, md)
    dom_spec = domain.ISSUES.__class__("bench_direct_issues", domain.ISSUES.columns, ("id",))
    dom_table = sql_table(dom_spec, md)
    coerce_tool, coerce_dom = coercer(tool_spec), coercer(dom_spec)
    lineage = {"_raw_data_params": params(), "_raw_data_table": "_raw_benchlake_issues",
               "_raw_data_remark": ""}  # fmt: skip
    elapsed = 0.0
    async with Database(db_url) as db:
        async with db.begin() as conn:
            await conn.run_sync(lambda c: (ensure(c, tool_table), ensure(c, dom_table)))
        for start in range(0, n, BATCH):
            tools = [tool_row(issue(i), 0) for i in range(start, min(n, start + BATCH))]
            doms = [domain_row(t, f"github:GithubIssue:0:{t['github_id']}") for t in tools]
            tools_v = [
                coerce_tool({**lineage, "_raw_data_id": k, **t}) for k, t in enumerate(tools)
            ]
            doms_v = [coerce_dom({**lineage, "_raw_data_id": k, **d}) for k, d in enumerate(doms)]
            t0 = time.perf_counter()
            async with db.begin() as conn:
                await upsert(conn, tool_table, tools_v, list(tool_spec.primary_key))
            async with db.begin() as conn:
                await upsert(conn, dom_table, doms_v, ["id"])
            elapsed += time.perf_counter() - t0
    return elapsed


def worker(db_url: str) -> None:
    """Runs in its own process: the pipeline alone, so ru_maxrss is the core's peak."""
    seconds = asyncio.run(run_ours(db_url))
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"seconds": seconds, "peak_kib": peak_kib}))


def ours_in_subprocess(db_url: str) -> dict[str, float]:
    proc = subprocess.run(
        [sys.executable, __file__, "--worker", db_url], capture_output=True, text=True,
        timeout=3600, cwd=Path(__file__).resolve().parent.parent,
    )  # fmt: skip
    if proc.returncode != 0:
        raise RuntimeError(f"bench worker failed:\n{proc.stderr[-3000:]}")
    return dict(json.loads(proc.stdout.strip().splitlines()[-1]))


async def lake_section(settings: Settings) -> SectionReport:
    rate_n = 20_000 if settings.quick else 200_000
    small, large = (10_000, 40_000) if settings.quick else (100_000, 400_000)
    report = SectionReport(
        title="data lake: extract + convert of GitHub-shaped issues (~2 KiB of JSON each)",
        baselines="the same tool and domain rows written directly by SQLAlchemy",
    )
    with tempfile.TemporaryDirectory(prefix="dtm-bench-") as d:
        url = f"sqlite+aiosqlite:///{d}/rate.db"
        await seed(url, rate_n)
        ours = ours_in_subprocess(url)
        direct = await run_direct(url, rate_n)
        memory = {}
        for n in (small, large):
            murl = f"sqlite+aiosqlite:///{d}/mem{n}.db"
            await seed(murl, n)
            memory[n] = ours_in_subprocess(murl)
            Path(f"{d}/mem{n}.db").unlink()
    ours_rate = rate_n / ours["seconds"]
    direct_rate = rate_n / direct
    report.rows += [
        Row(f"extract+convert {rate_n:,} rows: ours", "rows/s", ours_rate),
        Row("writing the same rows directly", "rows/s", direct_rate),
        Row("ours / direct insert rate", "x", ours_rate, direct_rate, RATE_GOAL),
        Row(f"core peak memory, {small:,} rows", "MiB", memory[small]["peak_kib"] / 1024),
        Row(f"core peak memory, {large:,} rows", "MiB", memory[large]["peak_kib"] / 1024,
            memory[small]["peak_kib"] / 1024, MEMORY_GOAL),
    ]  # fmt: skip
    report.notes += [
        "rows/s counts source rows: each becomes one tool row and one domain row "
        f"(so {2 * rate_n:,} writes in all, in both columns); SQLite in a temporary directory",
        "ours: a real pipeline (database -> plugin process -> database), batches of "
        f"{BATCH} with a checkpoint committed with each; plugin start-up excluded",
        "memory: ru_maxrss of a process that runs only the pipeline",
    ]
    return report


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--worker":
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        worker(sys.argv[2])
