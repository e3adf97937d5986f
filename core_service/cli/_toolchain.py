"""`dtm apply / plan / verify / delete / destroy / show / state`: toolchain as code."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from collections import Counter
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn
from rich.table import Table

from core_service.cli._common import UsageError, add_output, err, out, print_json, run
from core_service.cli._schema_example import example_config
from core_service.store import StateLock, canonical
from core_service.toolchain import (
    CREATE,
    DELETE,
    NOOP,
    Change,
    Config,
    Outcome,
    Toolchain,
    load_config,
    open_store,
    open_toolchain,
    state_url,
)
from core_service.toolchain._config import StateConfig

SYMBOL = {CREATE: "[green]+[/green]", "update": "[yellow]~[/yellow]", DELETE: "[red]-[/red]"}


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    def common(p: argparse.ArgumentParser, config_required: bool = True) -> None:
        p.add_argument(
            "-f",
            "--config-file",
            default="config.yaml" if config_required else None,
            help="a config file or a directory of YAML files (default: config.yaml)",
        )
        p.add_argument(
            "--state",
            default=None,
            help="state database URL or SQLite path "
            "(default: the config's `config.state`, or $DTM_STATE_URL)",
        )
        p.add_argument("--parallelism", type=int, default=8, help="tools applied at once")

    def confirm(p: argparse.ArgumentParser) -> None:
        p.add_argument("-y", "--yes", action="store_true", help="do not ask for confirmation")
        p.add_argument(
            "--lock-timeout",
            type=float,
            default=0.0,
            help="seconds to wait for another apply's lock (default: fail at once)",
        )

    p = sub.add_parser("apply", help="make reality match the config")
    common(p)
    confirm(p)
    p.set_defaults(func=cmd_apply)
    p = sub.add_parser("plan", help="show what apply would change, and why")
    common(p)
    add_output(p)
    p.set_defaults(func=cmd_plan)
    p = sub.add_parser("verify", help="exit 0 when nothing would change, 1 otherwise")
    common(p)
    p.set_defaults(func=cmd_verify)
    p = sub.add_parser("delete", help="delete the config's tools, dependents first")
    common(p)
    confirm(p)
    p.set_defaults(func=cmd_delete)
    p = sub.add_parser("destroy", help="delete every tool in the state, even without a config")
    common(p, config_required=False)
    p.add_argument("--namespace", default=None, help="state namespace (default: default)")
    confirm(p)
    p.set_defaults(func=cmd_destroy)

    show = sub.add_parser("show", help="show stored status, or an example config of a plugin")
    s = show.add_subparsers(dest="show_cmd", required=True)
    p = s.add_parser("status", help="stored state beside a fresh Read, per tool")
    common(p)
    add_output(p)
    p.set_defaults(func=cmd_show_status)
    p = s.add_parser("config", help="a commented example config made from a plugin's schema")
    p.add_argument("-p", "--plugin", required=True)
    p.set_defaults(func=cmd_show_config)

    st = sub.add_parser("state", help="the state's lock")
    s = st.add_subparsers(dest="state_cmd", required=True)
    p = s.add_parser("unlock", help="break a lock left by a process that died")
    common(p, config_required=False)
    p.add_argument("--namespace", default=None)
    p.add_argument("--force", action="store_true", help="break it even if its holder is alive")
    p.set_defaults(func=cmd_unlock)


def _config(ns: argparse.Namespace) -> Config:
    return load_config(Path(ns.config_file))


def _on_server(ns: argparse.Namespace, action: str) -> Any:
    """Run a toolchain action on a core service; None when working here."""
    from core_service.cli._backend import RemoteBackend, backend

    remote = backend(ns)
    if not isinstance(remote, RemoteBackend):
        return None
    _config(ns)  # the file's mistakes are reported here, with its own paths and lines
    text_ = Path(ns.config_file).read_text()
    return run(lambda: remote.call("POST", f"/toolchain/{action}", {"config": text_}))


def _changes(data: Any) -> list[Change]:
    return [
        Change(c["tool"], c["plugin"], c["action"], c["reason"], c["details"])
        for c in data["changes"]
    ]


def _outcomes(data: Any) -> list[Outcome]:
    return [Outcome(o["tool"], o["action"], o["result"], o["message"]) for o in data["outcomes"]]


def _confirm(ns: argparse.Namespace, question: str) -> None:
    if ns.yes:
        return
    if not sys.stdin.isatty():
        raise UsageError(f"{question}: pass -y to go ahead without a prompt")
    answer = input(f"{question}? [y/N] ").strip().lower()
    if answer not in ("y", "yes"):
        raise UsageError("cancelled")


class Display:
    """Rich progress for apply/delete; plain lines when stdout is not a terminal."""

    def __init__(self, total: int) -> None:
        self.progress = Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            console=out,
            transient=True,
            disable=not out.is_terminal,
        )
        self.overall = self.progress.add_task("applying", total=total)
        self.running: dict[str, Any] = {}

    def __call__(self, event: str, key: str, text: str) -> None:
        if event == "start":
            self.running[key] = self.progress.add_task(f"  {key}: {text}", total=None)
            return
        task = self.running.pop(key, None)
        if task is not None:
            self.progress.remove_task(task)
        if event in ("done", "noop", "failed", "skipped"):
            self.progress.advance(self.overall)
        mark = {
            "done": "[green]ok[/green]  ",
            "failed": "[red]FAIL[/red]",
            "skipped": "[yellow]skip[/yellow]",
        }
        if event in mark:
            self.progress.console.print(f"{mark[event]} {key}: {text}", highlight=False)


@contextlib.asynccontextmanager
async def _signals() -> AsyncIterator[asyncio.Event]:
    """SIGINT/SIGTERM set the event: calls in flight finish and their state is saved."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()

    def on_signal(sig: signal.Signals) -> None:
        if not stop.is_set():
            err.print(f"\n{sig.name}: letting calls in flight finish and saving their state...")
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal, sig)
    try:
        yield stop
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


def _summary(outcomes: list[Outcome], stop: asyncio.Event) -> int:
    counts = Counter((o.action or "-") if o.result == "done" else o.result for o in outcomes)
    words = {CREATE: "created", "update": "updated", DELETE: "deleted", NOOP: "unchanged"}
    parts = [f"{n} {words.get(k, k)}" for k, n in sorted(counts.items())]
    failed = [o for o in outcomes if o.result in ("failed", "skipped", "cancelled")]
    for o in failed:
        out.print(f"[red]{o.result}[/red] {o.key}: {o.message}", highlight=False)
    out.print(
        ("Interrupted. " if stop.is_set() else "")
        + "Summary: "
        + (", ".join(parts) or "nothing to do")
    )
    if stop.is_set():
        return 130
    return 1 if failed else 0


def _run_with(
    ns: argparse.Namespace,
    config: Config,
    body: Callable[[Toolchain], Any],
    *,
    lock: str | None = None,
    progress: Any = None,
) -> Any:
    async def main() -> Any:
        async with open_toolchain(
            config,
            state=ns.state,
            plugin_dirs=ns.plugin_dir,
            reattach=ns.reattach,
            parallelism=ns.parallelism,
            progress=progress,
            lock=lock,
            lock_timeout=getattr(ns, "lock_timeout", 0.0),
        ) as tc:
            return await body(tc)

    return run(main)


def cmd_apply(ns: argparse.Namespace) -> int:
    config = _config(ns)
    _confirm(ns, f"Apply {len(config.tools)} tool(s) from {ns.config_file}")
    remote = _on_server(ns, "apply")
    if remote is not None:
        return _summary(_outcomes(remote), asyncio.Event())
    display = Display(total=len(config.tools))

    async def body(tc: Toolchain) -> int:
        state = await tc.store.load()
        await tc.check(state)
        display.progress.update(
            display.overall, total=len(config.tools) + len([k for k in state if k not in tc.tools])
        )
        async with _signals() as stop:
            with display.progress:
                outcomes = await tc.apply(stop=stop, state=state)
            return _summary(outcomes, stop)

    return int(_run_with(ns, config, body, lock="dtm apply", progress=display))


def _print_plan(changes: list[Change]) -> None:
    unchanged = 0
    for c in changes:
        if c.action == NOOP:
            unchanged += 1
            continue
        out.print(
            f"{SYMBOL[c.action]} {c.action:<6} [bold]{c.key}[/bold]  {c.reason}", highlight=False
        )
        for d in c.details:
            out.print(f"      {d}", highlight=False, markup=False)
    counts = Counter(c.action for c in changes)
    if unchanged:
        out.print(f"  ({unchanged} unchanged)")
    out.print(
        f"Plan: {counts[CREATE]} to create, {counts['update']} to update, "
        f"{counts[DELETE]} to delete, {counts[NOOP]} unchanged."
    )


def cmd_plan(ns: argparse.Namespace) -> int:
    remote = _on_server(ns, "plan")
    if remote is not None:
        if ns.output == "json":
            print_json(remote["changes"])
        else:
            _print_plan(_changes(remote))
        return 0
    config = _config(ns)

    async def body(tc: Toolchain) -> list[Change]:
        state = await tc.store.load()
        await tc.check(state)
        return await tc.plan(state)

    changes = _run_with(ns, config, body)
    if ns.output == "json":
        print_json([c.as_dict() for c in changes])
    else:
        _print_plan(changes)
    return 0


def cmd_verify(ns: argparse.Namespace) -> int:
    remote = _on_server(ns, "plan")
    if remote is not None:
        changes = _changes(remote)
    else:
        config = _config(ns)

        async def body(tc: Toolchain) -> list[Change]:
            state = await tc.store.load()
            await tc.check(state)
            return await tc.plan(state)

        changes = _run_with(ns, config, body)
    pending = [c for c in changes if c.action != NOOP]
    if not pending:
        out.print(f"Verified: all {len(changes)} tool(s) match the config.")
        return 0
    _print_plan(changes)
    out.print("Not verified: run `dtm apply` to make reality match the config.")
    return 1


def cmd_delete(ns: argparse.Namespace) -> int:
    config = _config(ns)
    _confirm(ns, f"Delete the {len(config.tools)} tool(s) of {ns.config_file}")
    remote = _on_server(ns, "delete")
    if remote is not None:
        return _summary(_outcomes(remote), asyncio.Event())
    return _delete(ns, config, only_config=True, lock="dtm delete")


def _delete(ns: argparse.Namespace, config: Config, *, only_config: bool, lock: str) -> int:
    """Delete the config's tools (delete) or every tool in the state (destroy), with progress."""
    display = Display(total=0)

    async def body(tc: Toolchain) -> int:
        state = await tc.store.load()
        doomed = [k for k in state if k in tc.tools or not only_config]
        display.progress.update(display.overall, total=len(doomed))
        async with _signals() as stop:
            with display.progress:
                outcomes = await tc.delete(stop=stop, only_config=only_config, state=state)
            return _summary(outcomes, stop)

    return int(_run_with(ns, config, body, lock=lock, progress=display))


def _state_only(ns: argparse.Namespace) -> tuple[Config | None, str, str]:
    config = None
    if ns.config_file and Path(ns.config_file).exists():
        config = load_config(Path(ns.config_file))
    url = state_url(config, ns.state)
    namespace = ns.namespace or (config.state.namespace if config else "default")
    return config, url, namespace


def cmd_destroy(ns: argparse.Namespace) -> int:
    config, url, namespace = _state_only(ns)
    if config is None and not ns.state and not Path(url).exists():
        raise UsageError(f"no state at {url}: give --state URL (or -f CONFIG to find it)")
    _confirm(ns, f"Destroy every tool in the state at {url}")
    empty = Config(tools=[], state=StateConfig(namespace=namespace), files=[], base_dir=Path.cwd())
    ns.state = url
    return _delete(ns, empty, only_config=False, lock="dtm destroy")


def cmd_show_status(ns: argparse.Namespace) -> int:
    config = _config(ns)

    async def body(tc: Toolchain) -> list[dict[str, Any]]:
        state = await tc.store.load()
        await tc.check(state)
        changes = {c.key: c for c in await tc.plan(state)}
        rows = []
        for key in [*(t.key for t in tc.order()), *(k for k in state if k not in tc.tools)]:
            st = state.get(key)
            change = changes.get(key)
            rows.append(
                {
                    "tool": key,
                    "in_config": key in tc.tools,
                    "applied_at": st.updated_at.isoformat(timespec="seconds")
                    if st and st.updated_at
                    else None,
                    "stored_status": st.status if st else None,
                    "live": (change.action if change else "-") if st else "not applied",
                    "reason": change.reason if change else "",
                    "details": change.details if change else [],
                }
            )
        return rows

    rows = _run_with(ns, config, body)
    if ns.output == "json":
        print_json(rows)
        return 0
    table = Table("tool", "applied at", "stored outputs", "live (fresh Read)")
    for r in rows:
        live = "in sync" if r["live"] == NOOP else f"{r['live']}: {r['reason']}"
        outputs = (r["stored_status"] or {}).get("outputs", {})
        table.add_row(
            r["tool"], r["applied_at"] or "-", canonical(outputs) if outputs else "-", live
        )
    out.print(table)
    return 0


def cmd_show_config(ns: argparse.Namespace) -> int:
    from core_service.cli._common import make_host

    async def main() -> str:
        async with make_host(ns) as host:
            info = await (await host.get(ns.plugin)).info()
            return example_config(info.name, info.description, info.options_schema or {})

    sys.stdout.write(run(main))
    return 0


def cmd_unlock(ns: argparse.Namespace) -> int:
    _, url, namespace = _state_only(ns)

    async def main() -> dict[str, Any] | None:
        async with open_store(url, namespace) as (db, _):
            return await StateLock(db, namespace).break_lock(force=ns.force)

    info = run(main)
    if info is None:
        out.print(f"the state {namespace!r} at {url} was not locked")
    else:
        out.print(f"broke the lock held by {info['holder']} since {info['acquired_at']}")
    return 0
