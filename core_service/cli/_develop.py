"""`dtm develop ...`: scaffold a plugin and check one (DevStream's create-plugin)."""

from __future__ import annotations

import argparse
import keyword
import string
from importlib import resources
from pathlib import Path

from core_service.cli._common import UsageError, make_host, out, run
from core_service.errors import DtmError
from core_service.host import discover, load_manifest
from core_service.host._discovery import MANIFEST, builtin_plugin_dir
from plugin_sdk import PluginError


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("develop", help="scaffold and check plugins")
    s = p.add_subparsers(dest="develop_cmd", required=True)
    c = s.add_parser("create-plugin", help="generate a working plugin with manifest, README, tests")
    c.add_argument("--name", required=True, help="plugin name, e.g. my-thing")
    c.add_argument("--dir", default=None, help="where to put it (default: the plugins folder)")
    c.add_argument("--description", default="", help="one line on what it manages")
    c.add_argument("--force", action="store_true", help="overwrite an existing folder")
    c.add_argument(
        "--data",
        action="store_true",
        help="a data-lake plugin (collectors, extractors, converters)",
    )
    c.set_defaults(func=cmd_create_plugin)
    for kind in ("collector", "extractor", "converter"):
        g = s.add_parser(f"create-{kind}", help=f"add a {kind} subtask (and its test) to a plugin")
        g.add_argument("plugin", help="the data plugin's name")
        g.add_argument("entity", help="what it handles, e.g. committer (lower case)")
        if kind == "converter":
            g.add_argument("--domain", default="accounts", help="the domain table it writes")
        g.set_defaults(func=cmd_create_subtask, kind=kind)
    v = s.add_parser("validate-plugin", help="check a plugin's layout, manifest and handshake")
    v.add_argument("--name", required=True)
    v.set_defaults(func=cmd_validate_plugin)


def package_name(name: str) -> str:
    pkg = name.replace("-", "_")
    if not pkg.isidentifier() or keyword.iskeyword(pkg) or not name[0].isalpha():
        raise UsageError(
            f"plugin name {name!r} must start with a letter and hold only letters, digits, "
            "- and _ (it becomes the Python package name "
            f"{pkg!r})"
        )
    return pkg


def cmd_create_plugin(ns: argparse.Namespace) -> int:
    pkg = package_name(ns.name)
    builtin = builtin_plugin_dir()
    base = Path(ns.dir).resolve() if ns.dir else builtin
    target = base / pkg
    if target.exists() and not ns.force:
        raise UsageError(f"{target} already exists; pick another name or pass --force")
    module = f"plugins.{pkg}" if base == builtin else pkg
    values = {
        "plugin_name": ns.name,
        "module": module,
        "class_name": "".join(part.capitalize() for part in pkg.split("_")) + "Plugin",
        "description": ns.description or f"Manages {ns.name} resources.",
        "tests_path": str(target / "tests"),
        "root_depth": str(len(module.split(".")) + 1),
    }
    values["table_prefix"] = ns.name.replace("-", "_")
    kind = "data" if ns.data else "resource"
    written = render_tree(resources.files("plugin_sdk") / "templates" / kind, target, values)
    out.print(f"created plugin [bold]{ns.name}[/bold] in {target}:")
    for path in written:
        out.print(f"  {path.relative_to(target.parent)}")
    extra = [] if base == builtin else [f"export DTM_PLUGIN_DIRS={base}"]
    out.print(
        "\nnext:\n  "
        + "\n  ".join(
            [
                *extra,
                f"dtm develop validate-plugin --name {ns.name}",
                f"dtm plugin describe {ns.name}",
                f"pytest {target / 'tests'}",
            ]
        ),
        highlight=False,
    )
    return 0


def render_tree(src: resources.abc.Traversable, dest: Path, values: dict[str, str]) -> list[Path]:
    written: list[Path] = []
    dest.mkdir(parents=True, exist_ok=True)
    for item in sorted(src.iterdir(), key=lambda t: t.name):
        if item.is_dir():
            written += render_tree(item, dest / item.name, values)
        elif item.name.endswith(".tmpl"):
            path = dest / item.name.removesuffix(".tmpl")
            path.write_text(string.Template(item.read_text()).substitute(values))
            written.append(path)
    return written


def cmd_validate_plugin(ns: argparse.Namespace) -> int:
    found, problems = discover(ns.plugin_dir or ())
    checks: list[tuple[bool, str]] = []
    manifest = found.get(ns.name)
    if manifest is None:
        related = [p for p in problems if ns.name in p or package_name(ns.name) in p]
        checks.append((False, f"no plugin named {ns.name!r} was discovered"))
        checks += [(False, p) for p in related]
        return report(checks)
    checks.append((True, f"manifest {manifest.path / MANIFEST} is valid ({manifest.source})"))
    try:
        load_manifest(manifest.path / MANIFEST, manifest.source)
    except DtmError as exc:
        checks.append((False, str(exc)))
    if manifest.command[1:2] == ("-m",):
        main = manifest.path / "__main__.py"
        checks.append((main.exists(), f"{main} exists (python -m {manifest.command[2]})"))
    readme = manifest.path / "README.md"
    checks.append((readme.exists(), f"{readme} documents the plugin"))
    tests = list(manifest.path.glob("tests/test_*.py"))
    checks.append((bool(tests), f"tests in {manifest.path / 'tests'}"))

    async def handshake() -> None:
        async with make_host(ns) as host:
            handle = await host.get(ns.name)
            info = await handle.info()
            checks.append(
                (True, f"started and completed the handshake (protocol {info.protocol_version})")
            )
            checks.append(
                (
                    info.name == manifest.name,
                    f"metadata name {info.name!r} matches the manifest's {manifest.name!r}",
                )
            )
            checks.append(
                (
                    info.version == manifest.version,
                    f"metadata version {info.version} matches the manifest's {manifest.version}",
                )
            )
            checks.append(
                (bool(info.capabilities), f"capabilities: {', '.join(info.capabilities) or 'none'}")
            )
            checks.append((await handle.health(), "health service reports SERVING"))

    try:
        run(handshake)
    except (DtmError, PluginError) as exc:
        checks.append((False, f"could not start it: {exc}"))
    return report(checks)


def report(checks: list[tuple[bool, str]]) -> int:
    for ok, text in checks:
        mark = "[green]ok[/green]  " if ok else "[red]FAIL[/red]"
        out.print(f"{mark} {text}", highlight=False)
    return 0 if all(ok for ok, _ in checks) else 1


_MARKERS = {
    "method": (
        "    # dtm develop create-collector/-extractor/-converter add subtasks below this line"
    ),
    "table": "        # dtm develop create-extractor adds tool tables above this line",
}


def cmd_create_subtask(ns: argparse.Namespace) -> int:
    """Append a decorated subtask to a data plugin's class, and a test of it."""
    import re

    from plugin_sdk import domain

    if not re.fullmatch(r"[a-z][a-z0-9_]*", ns.entity):
        raise UsageError(f"entity {ns.entity!r}: use lower case letters, digits and _")
    found, _ = discover(ns.plugin_dir or ())
    manifest = found.get(ns.plugin)
    if manifest is None:
        raise UsageError(
            f"no plugin named {ns.plugin!r}; make one with "
            f"`dtm develop create-plugin --name {ns.plugin} --data`"
        )
    source = manifest.path / "plugin.py"
    text = source.read_text() if source.exists() else ""
    if _MARKERS["method"] not in text:
        raise UsageError(
            f"{source} has no line `{_MARKERS['method'].strip()}`: it was not made "
            "by `dtm develop create-plugin --data`; add the subtask by hand"
        )
    verb = {"collector": "collect", "extractor": "extract", "converter": "convert"}[ns.kind]
    method = f"{verb}_{ns.entity}"
    if re.search(rf"def {method}\(", text):
        raise UsageError(f"{source} already has {method}")
    domain_table = getattr(ns, "domain", "accounts")
    if ns.kind == "converter" and domain_table not in domain.BY_NAME:
        raise UsageError(
            f"--domain {domain_table!r} is not a domain table; "
            f"choose one of {sorted(domain.BY_NAME)}"
        )
    columns = domain.BY_NAME[domain_table].columns if ns.kind == "converter" else {}
    extra = ""
    if "user_name" in columns:
        extra = ', "user_name": row.get("name"), "full_name": row.get("name")'
    elif "name" in columns:
        extra = ', "name": row.get("name")'
    pkg = manifest.path.name
    module = manifest.command[2] if manifest.command[1:2] == ("-m",) else pkg
    values = {
        "plugin_name": ns.plugin,
        "entity": ns.entity,
        "module": module,
        "table_prefix": ns.plugin.replace("-", "_"),
        "class_name": "".join(p.capitalize() for p in pkg.split("_")) + "Plugin",
        "entity_class": "".join(p.capitalize() for p in ns.entity.split("_")),
        "domain": domain_table,
        "domain_extra": extra,
    }
    class_match = re.search(r"^class (\w+)\(Plugin\):", text, re.MULTILINE)
    if class_match:
        values["class_name"] = class_match.group(1)
    templates = resources.files("plugin_sdk") / "templates" / "subtasks"

    def render(name: str) -> str:
        return string.Template((templates / name).read_text()).substitute(values)

    if ns.kind == "extractor":
        if _MARKERS["table"] not in text:
            raise UsageError(f"{source} has no line `{_MARKERS['table'].strip()}`")
        text = text.replace(_MARKERS["table"], render("table.py.tmpl") + _MARKERS["table"])
    text = text.rstrip("\n") + "\n" + render(f"{ns.kind}.py.tmpl")
    source.write_text(text)
    test = manifest.path / "tests" / f"test_{ns.entity}_{ns.kind}.py"
    test.parent.mkdir(exist_ok=True)
    test.write_text(render(f"test_{ns.kind}.py.tmpl"))
    out.print(f"added {method} to {source} and its test {test}", highlight=False)
    return 0
