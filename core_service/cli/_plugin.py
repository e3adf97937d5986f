"""`dtm plugin ...`: list, describe, call, serve and health-check plugins."""

from __future__ import annotations

import argparse
import os
from typing import Any

from rich.table import Table

from core_service.cli._common import (
    UsageError,
    add_output,
    make_host,
    out,
    parse_json_arg,
    print_json,
    run,
)
from core_service.host import discover
from plugin_sdk._protocol import APP_PROTOCOL_VERSIONS

METHODS = ("Create", "Read", "Update", "Delete", "Validate", "GetMetadata")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("plugin", help="list, describe, call and serve plugins")
    s = p.add_subparsers(dest="plugin_cmd", required=True)

    ls = s.add_parser("list", help="every installed plugin")
    add_output(ls)
    ls.set_defaults(func=cmd_list)

    d = s.add_parser("describe", help="start a plugin and show its metadata and option schema")
    d.add_argument("name")
    add_output(d)
    d.set_defaults(func=cmd_describe)

    c = s.add_parser("call", help="call one method of a plugin and print the result")
    c.add_argument("name")
    c.add_argument("method", choices=METHODS)
    c.add_argument("--options", default=None, help="options as a JSON object")
    c.add_argument("--options-file", default=None, help="read the options from a JSON file")
    c.set_defaults(func=cmd_call)

    sv = s.add_parser("serve", help="run a plugin standalone, for development or debugging")
    sv.add_argument("name")
    sv.add_argument("--standalone", action="store_true", default=True, help="(the default)")
    sv.add_argument("--listen", default="", help="unix:/path or HOST:PORT (default: unix socket)")
    sv.set_defaults(func=cmd_serve)


def _remote(ns: argparse.Namespace) -> Any:
    from core_service.cli._backend import RemoteBackend, backend

    chosen = backend(ns)
    return chosen if isinstance(chosen, RemoteBackend) else None


def cmd_list(ns: argparse.Namespace) -> int:
    remote = _remote(ns)
    problems: list[str] = []
    if remote is not None:
        rows: list[dict[str, Any]] = list(run(lambda: remote.call("GET", "/plugins")))
    else:
        found, problems = discover(ns.plugin_dir or ())
        rows = [m.as_dict() for m in found.values()]
    rows.sort(key=lambda r: r["name"])
    if ns.output == "json":
        print_json(rows)
        return 0
    table = Table("name", "version", "protocol", "source", "description")
    for r in rows:
        table.add_row(
            r["name"],
            r.get("version", "-"),
            ",".join(map(str, r.get("protocol_versions", []))),
            r.get("source", r.get("mode", "-")),
            r.get("description", ""),
        )
    out.print(table)
    out.print(f"this core speaks protocol {','.join(map(str, APP_PROTOCOL_VERSIONS))}")
    for problem in problems:
        out.print(f"[yellow]warning:[/yellow] {problem}", highlight=False)
    return 0


def cmd_describe(ns: argparse.Namespace) -> int:
    remote = _remote(ns)

    async def main() -> dict[str, Any]:
        if remote is not None:
            return dict(await remote.call("GET", f"/plugins/{ns.name}"))
        async with make_host(ns) as host:
            handle = await host.get(ns.name)
            return (await handle.info()).as_dict()

    info = run(main)
    if ns.output == "json":
        print_json(info)
        return 0
    out.print(
        f"[bold]{info['name']}[/bold] {info['version']}  (protocol {info['protocol_version']})"
    )
    if info["description"]:
        out.print(info["description"])
    out.print(f"package:       {info['root_package_path']}")
    out.print(f"capabilities:  {', '.join(info['capabilities']) or '-'}")
    out.print(f"implements:    {', '.join(info['implemented'])}")
    if info["subtasks"]:
        out.print("subtasks:      " + ", ".join(s["name"] for s in info["subtasks"]))
    if info["options_schema"]:
        out.print("options schema:")
        print_json(info["options_schema"])
    return 0


def cmd_call(ns: argparse.Namespace) -> int:
    if ns.options_file:
        with open(ns.options_file) as fh:
            options = parse_json_arg(fh.read(), f"--options-file {ns.options_file}")
    else:
        options = parse_json_arg(ns.options or "{}", "--options")
    if not isinstance(options, dict):
        raise UsageError('--options must be a JSON object, e.g. \'{"path": "/tmp/x"}\'')

    async def main() -> Any:
        async with make_host(ns) as host:
            handle = await host.get(ns.name)
            return await handle.call(lambda c: c.call(ns.method, options))

    result = run(main)
    print_json(result)
    return 0


def cmd_serve(ns: argparse.Namespace) -> int:
    found, _ = discover(ns.plugin_dir or ())
    if ns.name not in found:
        raise UsageError(f"no plugin named {ns.name!r}; `dtm plugin list` shows them")
    manifest = found[ns.name]
    argv = [*manifest.command, "--standalone"]
    if ns.listen:
        argv += ["--listen", ns.listen]
    env = dict(os.environ)
    if manifest.pythonpath:
        env["PYTHONPATH"] = os.pathsep.join([*manifest.pythonpath, env.get("PYTHONPATH", "")])
    env.pop("DEVSTREAM_PLUGIN_MAGIC_COOKIE", None)
    os.execvpe(argv[0], argv, env)
