"""`dtm pipeline ...` and `dtm connection ...`: the data lake from the command line."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any, TypeVar

from rich.progress import BarColumn, Progress, SpinnerColumn, TaskID, TextColumn
from rich.table import Table

from core_service.cli._backend import backend
from core_service.cli._common import UsageError, add_output, out, print_json, run
from core_service.lake import load_plan

T = TypeVar("T")
ENV_DATABASE = "DTM_DATABASE_URL"


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    def database(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--database",
            default=None,
            help=f"database URL or SQLite path (default: ${ENV_DATABASE}, else ./devstream.db)",
        )

    p = sub.add_parser("pipeline", help="run data pipelines (collect, extract, convert)")
    s = p.add_subparsers(dest="pipeline_cmd", required=True)
    r = s.add_parser("run", help="create a pipeline from a plan file and run it")
    r.add_argument("-f", "--file", required=True, help="a pipeline plan (YAML)")
    r.add_argument("--full-sync", action="store_true", help="collect everything again")
    database(r)
    r.set_defaults(func=cmd_run)
    ls = s.add_parser("list", help="recent pipelines")
    database(ls)
    add_output(ls)
    ls.set_defaults(func=cmd_list)
    st = s.add_parser("status", help="a pipeline's tasks and subtasks with their progress")
    st.add_argument("id", type=int)
    database(st)
    add_output(st)
    st.set_defaults(func=cmd_status)
    c = s.add_parser("cancel", help="stop a running pipeline (within a second)")
    c.add_argument("id", type=int)
    database(c)
    c.set_defaults(func=cmd_cancel)
    rr = s.add_parser("rerun", help="run a pipeline again, or only what did not finish")
    rr.add_argument("id", type=int)
    rr.add_argument(
        "--failed-only",
        action="store_true",
        help="only unfinished subtasks, resuming from their checkpoints",
    )
    database(rr)
    rr.set_defaults(func=cmd_rerun)

    p = sub.add_parser("connection", help="connections to DevOps tools (secrets encrypted)")
    s = p.add_subparsers(dest="connection_cmd", required=True)
    a = s.add_parser("add", help="add a connection")
    a.add_argument("plugin")
    a.add_argument("--name", required=True)
    a.add_argument("--endpoint", default="", help="the tool's API base URL")
    a.add_argument(
        "--token-env",
        default=None,
        help="read the token from this environment variable (never from argv)",
    )
    a.add_argument("--proxy", default=None)
    a.add_argument("--rate-limit-per-hour", type=int, default=None)
    database(a)
    a.set_defaults(func=cmd_connection_add)
    ls = s.add_parser("list", help="connections, secrets shown by name only")
    database(ls)
    add_output(ls)
    ls.set_defaults(func=cmd_connection_list)
    rm = s.add_parser("remove", help="remove a connection")
    rm.add_argument("name")
    database(rm)
    rm.set_defaults(func=cmd_connection_remove)
    t = s.add_parser("test", help="ask the plugin to test a connection")
    t.add_argument("name")
    database(t)
    t.set_defaults(func=cmd_connection_test)


def database_url(ns: argparse.Namespace) -> str:
    return str(getattr(ns, "database", None) or os.environ.get(ENV_DATABASE) or "devstream.db")


class PipelineDisplay:
    """A bar per subtask with records written; plain lines when not on a terminal."""

    def __init__(self) -> None:
        self.progress = Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            BarColumn(),
            TextColumn("{task.fields[records]:>8} records"),
            console=out,
            disable=not out.is_terminal,
        )
        self.bars: dict[tuple[int, str], TaskID] = {}
        self.names: dict[int, str] = {}

    def __call__(self, kind: str, pipeline: int, task: int, sub: str, f: dict[str, Any]) -> None:
        key = (task, sub)
        if kind == "subtask" and f.get("status") == "running" and key not in self.bars:
            label = f"{self.names.get(task, f'task {task}')} {sub}"
            self.bars[key] = self.progress.add_task(label, total=None, records=0)
        bar = self.bars.get(key)
        if bar is None:
            return
        if kind == "records":
            self.progress.update(bar, records=f["records"])
        elif kind == "progress" and f.get("total"):
            self.progress.update(bar, completed=f["current"], total=f["total"])
        elif kind == "subtask" and f.get("status") in ("done", "failed", "cancelled"):
            task_ = self.progress.tasks[self.bars[key]]
            total = task_.total or task_.completed or 1
            self.progress.update(bar, completed=total, total=total)
            if not out.is_terminal:
                out.print(
                    f"{f['status']:<9} {task_.description}: {task_.fields['records']} records",
                    highlight=False,
                )


def _finish(info: dict[str, Any]) -> int:
    _print_status(info)
    if info["status"] == "done":
        return 0
    return 130 if info["status"] == "cancelled" else 1


def cmd_run(ns: argparse.Namespace) -> int:
    plan = load_plan(Path(ns.file))
    if ns.full_sync:
        for stage in plan.stages:
            for task in stage:
                task.full_sync = True
    display = PipelineDisplay()

    def started(pipeline_id: int) -> None:
        out.print(f"pipeline {pipeline_id} ({plan.name}) started", highlight=False)

    async def main() -> dict[str, Any]:
        with display.progress:
            return await backend(ns, display).run_pipeline(plan, started)

    return _finish(run(main))


def cmd_rerun(ns: argparse.Namespace) -> int:
    display = PipelineDisplay()

    async def main() -> dict[str, Any]:
        with display.progress:
            return await backend(ns, display).rerun(ns.id, ns.failed_only)

    return _finish(run(main))


def cmd_list(ns: argparse.Namespace) -> int:
    rows = run(lambda: backend(ns).recent())
    if ns.output == "json":
        print_json(rows)
        return 0
    table = Table("id", "name", "status", "created", "finished", "message")
    for r in rows:
        table.add_row(
            str(r["id"]),
            r["name"],
            r["status"],
            r["created_at"] or "-",
            r["finished_at"] or "-",
            (r["message"] or "")[:60],
        )
    out.print(table)
    return 0


def _print_status(info: dict[str, Any]) -> None:
    out.print(
        f"pipeline {info['id']} ({info['name']}): [bold]{info['status']}[/bold]"
        + (f" — {info['message']}" if info["message"] else ""),
        highlight=False,
    )
    table = Table("stage", "task", "subtask", "status", "records", "progress")
    for t in info["tasks"]:
        for s in t["subtasks"] or [
            {"name": "-", "status": t["status"], "records": 0, "current": 0, "total": 0}
        ]:
            pct = f"{100 * s['current'] / s['total']:.0f}%" if s.get("total") else "-"
            table.add_row(
                str(t["stage"]),
                f"{t['plugin']} #{t['id']}",
                s["name"],
                s["status"],
                str(s["records"]),
                pct,
            )
    out.print(table)


def cmd_status(ns: argparse.Namespace) -> int:
    info = run(lambda: backend(ns).get(ns.id))
    if ns.output == "json":
        print_json(info)
    else:
        _print_status(info)
    return 0


def cmd_cancel(ns: argparse.Namespace) -> int:
    info = run(lambda: backend(ns).cancel(ns.id))
    out.print(f"pipeline {ns.id}: cancel requested (status {info['status']})")
    return 0


def cmd_connection_add(ns: argparse.Namespace) -> int:
    body: dict[str, Any] = {"plugin": ns.plugin, "name": ns.name, "endpoint": ns.endpoint}
    if ns.token_env:
        token = os.environ.get(ns.token_env)
        if not token:
            raise UsageError(f"--token-env {ns.token_env}: that environment variable is not set")
        body["token"] = token
    if ns.proxy:
        body["proxy"] = ns.proxy
    if ns.rate_limit_per_hour:
        body["rateLimitPerHour"] = ns.rate_limit_per_hour
    made = run(lambda: backend(ns).add_connection(body))
    out.print(
        f"connection {made['name']} (id {made['id']}) added for {made['plugin']}; "
        f"secrets stored encrypted: {', '.join(made['secrets']) or 'none'}"
    )
    return 0


def cmd_connection_list(ns: argparse.Namespace) -> int:
    rows = run(lambda: backend(ns).connections())
    if ns.output == "json":
        print_json(rows)
        return 0
    table = Table("id", "name", "plugin", "endpoint", "secrets")
    for r in rows:
        table.add_row(
            str(r["id"]), r["name"], r["plugin"], r["endpoint"], ", ".join(r["secrets"]) or "-"
        )
    out.print(table)
    return 0


def cmd_connection_remove(ns: argparse.Namespace) -> int:
    run(lambda: backend(ns).remove_connection(ns.name))
    out.print(f"connection {ns.name} removed")
    return 0


def cmd_connection_test(ns: argparse.Namespace) -> int:
    status, body = run(lambda: backend(ns).test_connection(ns.name))
    print_json({"status": status, **(body or {})})
    return 0 if status < 400 else 1
