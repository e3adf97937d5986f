"""Reading a toolchain config: DevStream's format (v0.10+), every mistake with file and line.

config:                      # where the state lives
  state:
    backend: local           # local: a SQLite file next to the config
    options: {stateFile: devstream.db}
    # backend: database, options: {url: postgresql://..., namespace: default}
vars:
  appName: demo              # used as [[ appName ]]; [[ env "NAME" ]] reads the environment
tools:
- name: localfile            # the plugin
  instanceID: readme
  dependsOn: ["other.id"]    # optional; a ${{ other.id.outputs.key }} reference implies it
  options: {...}
"""

from __future__ import annotations

import difflib
import functools
import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from core_service.errors import ConfigError

# libyaml when PyYAML was built with it: parsing is most of the cost of loading a big config.
_YamlLoader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _compose(text: str) -> yaml.Node | None:
    return yaml.compose(text, Loader=_YamlLoader)


def _construct(node: yaml.Node) -> Any:
    """Python data of a node, without serialising and parsing it again."""
    return yaml.SafeLoader("").construct_object(node, deep=True)


TOP_KEYS = ("config", "vars", "tools")
TOOL_KEYS = ("name", "instanceID", "dependsOn", "options")
STATE_BACKENDS = ("local", "database")
INSTANCE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")
VAR = re.compile(r"\[\[\s*(?:env\s+\"(?P<env>[^\"]+)\"|(?P<name>[A-Za-z_][\w.-]*))\s*\]\]")
# ${{ tool.instance.outputs.key }}, where key may be a dotted path into the outputs.
REF = re.compile(r"\$\{\{\s*(?P<expr>[^}]*?)\s*\}\}")
REF_EXPR = re.compile(
    r"^(?P<tool>[A-Za-z0-9_-]+)\.(?P<instance>[A-Za-z0-9_-]+)\.outputs\.(?P<key>[\w.-]+)$"
)


@dataclass(frozen=True)
class Where:
    file: str
    line: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}"


@dataclass(frozen=True)
class Problem:
    where: Where
    message: str
    fix: str = ""

    def __str__(self) -> str:
        return f"{self.where}: {self.message}" + (f"\n    fix: {self.fix}" if self.fix else "")


class ConfigProblems(ConfigError):
    """Every mistake found in a config, each with its place and a fix."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        count = f"{len(problems)} problem{'s' if len(problems) != 1 else ''}"
        super().__init__(f"the config has {count}:\n" + "\n".join(f"  {p}" for p in problems))


@dataclass(frozen=True)
class Reference:
    tool: str  # "name.instanceID"
    key: str
    text: str  # the whole ${{ ... }} as written
    path: str  # the option holding it


@dataclass
class ToolSpec:
    name: str
    instance_id: str
    options: dict[str, Any]
    depends_on: list[str]
    where: Where
    option_lines: dict[str, Where] = field(default_factory=dict)  # dotted path -> place
    references: list[Reference] = field(default_factory=list)
    secret_paths: set[str] = field(default_factory=set)  # options filled from [[ env ]]
    depends_where: Where | None = None
    options_where: Where | None = None

    @property
    def key(self) -> str:
        return f"{self.name}.{self.instance_id}"

    def where_option(self, path: str) -> Where:
        while path:
            if path in self.option_lines:
                return self.option_lines[path]
            path = path.rpartition(".")[0]
        return self.options_where or self.where


@dataclass
class StateConfig:
    backend: str = "local"
    url: str = ""
    namespace: str = "default"
    where: Where | None = None


@dataclass
class Config:
    tools: list[ToolSpec]
    state: StateConfig
    files: list[Path]
    base_dir: Path
    secret_values: set[str] = field(default_factory=set)

    def by_key(self) -> dict[str, ToolSpec]:
        return {t.key: t for t in self.tools}


def _suggest(word: str, choices: Any, exclude: str = "") -> str:
    options = [c for c in choices if c != exclude]
    close = difflib.get_close_matches(word, options, n=1, cutoff=0.75)
    return f"did you mean {close[0]!r}?" if close else ""


class _Loader:
    def __init__(self, environ: Mapping[str, str]) -> None:
        self.environ = environ
        self.problems: list[Problem] = []
        self.secret_values: set[str] = set()

    def problem(self, where: Where, message: str, fix: str = "") -> None:
        self.problems.append(Problem(where, message, fix))

    # -- [[ vars ]] ---------------------------------------------------------------
    def render_env(self, text: str, file: str) -> str:
        def sub(m: re.Match[str], line: int) -> str:
            if m["env"] is None:
                return m.group(0)
            value = self.environ.get(m["env"])
            if value is None:
                self.problem(
                    Where(file, line),
                    f'[[ env "{m["env"]}" ]]: the environment variable {m["env"]} is not set',
                    f"export {m['env']}=... before running dtm",
                )
                return ""
            if len(value) >= 4:
                self.secret_values.add(value)
            return value

        return _sub_lines(text, sub)

    def render_vars(self, text: str, file: str, values: Mapping[str, Any]) -> str:
        def sub(m: re.Match[str], line: int) -> str:
            name = m["name"]
            if name is None:
                return m.group(0)
            if name not in values:
                hint = _suggest(name, values)
                self.problem(
                    Where(file, line),
                    f"[[ {name} ]] is not defined under `vars:`",
                    hint or f"add `{name}: ...` under `vars:`",
                )
                return ""
            return str(values[name])

        return _sub_lines(text, sub)


def _call_with_line(sub: Any, number: int, m: re.Match[str]) -> str:
    return str(sub(m, number))


def _sub_lines(text: str, sub: Any) -> str:
    out = []
    for number, line in enumerate(text.split("\n"), start=1):
        if "[[" in line:
            line = VAR.sub(functools.partial(_call_with_line, sub, number), line)
        out.append(line)
    return "\n".join(out)


def config_files(path: Path) -> list[Path]:
    if path.is_dir():
        files = sorted([*path.glob("*.yaml"), *path.glob("*.yml")])
        if not files:
            raise ConfigProblems(
                [
                    Problem(
                        Where(str(path), 0),
                        "the directory holds no .yaml or .yml file",
                        "point -f at a config file, or put one in the directory",
                    )
                ]
            )
        return files
    if not path.exists():
        raise ConfigProblems(
            [Problem(Where(str(path), 0), "no such file", "check the path given with -f")]
        )
    return [path]


def load_config(path: str | Path, environ: Mapping[str, str] | None = None) -> Config:
    """Read one file or a directory of YAML files; raise ConfigProblems listing every mistake.

    Checks here need no plugin: keys, names, ids, duplicates, dependencies and their
    cycles, references. Checks against plugins (do they exist, do options pass their
    schema and Validate) are done by `check_against_plugins`.
    """
    loader = _Loader(os.environ if environ is None else environ)
    root = Path(path)
    files = config_files(root)
    docs: list[tuple[str, yaml.Node]] = []
    for f in files:
        text = loader.render_env(f.read_text(), str(f))
        # Most configs use no vars: skip a parse of the whole file when there are none.
        if "[[" in text or "\nvars:" in f"\n{text}":
            raw_vars = _vars_section(text, str(f), loader)
            values = _resolve_vars(raw_vars, str(f), loader)
            text = loader.render_vars(text, str(f), values)
        try:
            node = _compose(text)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            line = mark.line + 1 if mark else 0
            loader.problem(
                Where(str(f), line),
                f"not valid YAML: {getattr(exc, 'problem', None) or exc}",
                "check indentation and quoting near this line",
            )
            continue
        if node is not None:
            docs.append((str(f), node))
    tools: list[ToolSpec] = []
    state = StateConfig()
    for file, node in docs:
        found_state = _read_document(file, node, loader, tools)
        if found_state is not None:
            state = found_state
    if not tools and not loader.problems:
        loader.problem(Where(str(files[0]), 1), "the config lists no tools", "add a `tools:` list")
    config = Config(
        tools=tools,
        state=state,
        files=files,
        base_dir=(root if root.is_dir() else root.parent).resolve(),
        secret_values=loader.secret_values,
    )
    _check_graph(config, loader)
    _mark_secret_options(config)
    if loader.problems:
        raise ConfigProblems(loader.problems)
    return config


def _vars_section(text: str, file: str, loader: _Loader) -> dict[str, Any]:
    # Parse once with unrendered [[ name ]] to read `vars:`; later problems are
    # reported from the rendered parse, so errors here are left to it.
    try:
        data = yaml.load(text, Loader=_YamlLoader)
    except yaml.YAMLError:
        return {}
    if not isinstance(data, dict) or data.get("vars") is None:
        return {}
    if not isinstance(data["vars"], dict):
        loader.problem(
            Where(file, _line_of_key(text, "vars")),
            "`vars` must be a mapping",
            "write `vars:` then `name: value` lines indented below it",
        )
        return {}
    return data["vars"]


def _resolve_vars(raw: dict[str, Any], file: str, loader: _Loader) -> dict[str, Any]:
    values = dict(raw)
    for _ in range(10):  # vars may use other vars
        changed = False
        for k, v in values.items():
            if isinstance(v, str) and "[[" in v:
                new = VAR.sub(lambda m: str(values.get(m["name"] or "", m.group(0))), v)
                changed |= new != v
                values[k] = new
        if not changed:
            break
    return values


def _line_of_key(text: str, key: str) -> int:
    for n, line in enumerate(text.split("\n"), start=1):
        if line.startswith(f"{key}:"):
            return n
    return 1


def _pairs(node: yaml.MappingNode) -> Iterator[tuple[str, yaml.Node, Where]]:
    for k, v in node.value:
        yield str(k.value), v, Where("", k.start_mark.line + 1)


def _where(file: str, node: yaml.Node) -> Where:
    return Where(file, node.start_mark.line + 1)


def _read_document(
    file: str, node: yaml.Node, loader: _Loader, tools: list[ToolSpec]
) -> StateConfig | None:
    if not isinstance(node, yaml.MappingNode):
        loader.problem(
            _where(file, node),
            "the config must be a mapping with `tools:`",
            "start the file with `tools:` (and optionally `config:` and `vars:`)",
        )
        return None
    state = None
    for key, value, w in _pairs(node):
        w = Where(file, w.line)
        if key not in TOP_KEYS:
            hint = _suggest(key, TOP_KEYS)
            loader.problem(w, f"unknown top-level key `{key}`", hint or f"use one of {TOP_KEYS}")
        elif key == "tools":
            if not isinstance(value, yaml.SequenceNode):
                loader.problem(w, "`tools` must be a list", "write each tool as `- name: ...`")
                continue
            for item in value.value:
                tool = _read_tool(file, item, loader)
                if tool is not None:
                    tools.append(tool)
        elif key == "config":
            state = _read_state(file, value, loader)
    return state


def _read_state(file: str, node: yaml.Node, loader: _Loader) -> StateConfig | None:
    data = _construct(node) or {}
    w = _where(file, node)
    if not isinstance(data, dict):
        loader.problem(w, "`config` must be a mapping", "see `config: state: backend: local`")
        return None
    unknown = sorted(set(data) - {"state"})
    if unknown:
        loader.problem(w, f"unknown key(s) under `config`: {unknown}", "only `state` is read")
    state = data.get("state") or {}
    if not isinstance(state, dict):
        loader.problem(w, "`config.state` must be a mapping", "give `backend` and `options`")
        return None
    backend = state.get("backend", "local")
    options = state.get("options") or {}
    if backend not in STATE_BACKENDS:
        loader.problem(
            w,
            f"unknown state backend {backend!r}",
            _suggest(str(backend), STATE_BACKENDS) or f"use one of {STATE_BACKENDS}",
        )
        return None
    if not isinstance(options, dict):
        loader.problem(w, "`config.state.options` must be a mapping", "")
        return None
    namespace = str(options.get("namespace", "default"))
    if backend == "local":
        url = str(options.get("stateFile", "devstream.db"))
    else:
        url = str(options.get("url", ""))
        if not url:
            loader.problem(
                w,
                "the database state backend needs `options.url`",
                "e.g. url: postgresql://user@host:5432/devstream",
            )
    return StateConfig(backend=backend, url=url, namespace=namespace, where=w)


def _read_tool(file: str, node: yaml.Node, loader: _Loader) -> ToolSpec | None:
    w = _where(file, node)
    if not isinstance(node, yaml.MappingNode):
        loader.problem(
            w,
            "each tool must be a mapping with name, instanceID and options",
            "write `- name: PLUGIN` then `instanceID: ID` indented below",
        )
        return None
    fields: dict[str, tuple[yaml.Node, Where]] = {}
    for key, value, kw in _pairs(node):
        kw = Where(file, kw.line)
        if key not in TOOL_KEYS:
            hint = _suggest(key, TOOL_KEYS)
            loader.problem(kw, f"unknown key `{key}` in a tool", hint or f"use {TOOL_KEYS}")
            continue
        fields[key] = (value, kw)
    name = _scalar(fields.get("name"), "name", w, loader)
    instance = _scalar(fields.get("instanceID"), "instanceID", w, loader)
    if name is None or instance is None:
        return None
    if not INSTANCE_ID.match(instance):
        loader.problem(
            fields["instanceID"][1],
            f"instanceID {instance!r} is not valid",
            "use letters, digits, - and _, starting with a letter or digit",
        )
    depends: list[str] = []
    if "dependsOn" in fields:
        dnode, dw = fields["dependsOn"]
        data = _construct(dnode)
        if not isinstance(data, list) or not all(isinstance(d, str) for d in data):
            loader.problem(
                dw,
                '`dependsOn` must be a list of "name.instanceID" strings',
                'e.g. dependsOn: ["repo-scaffolding.myapp"]',
            )
        else:
            for d in data:
                if d.count(".") != 1 or not all(d.split(".")):
                    loader.problem(
                        dw,
                        f'dependsOn entry {d!r} is not "name.instanceID"',
                        'write it as "PLUGIN.INSTANCE", e.g. "localfile.readme"',
                    )
                else:
                    depends.append(d)
    options: dict[str, Any] = {}
    lines: dict[str, Where] = {}
    if "options" in fields:
        onode, ow = fields["options"]
        data = _construct(onode)
        if data is None:
            data = {}
        if not isinstance(data, dict):
            loader.problem(ow, "`options` must be a mapping", "indent `key: value` under it")
        else:
            options = data
            _option_lines(file, onode, "", lines)
    tool = ToolSpec(name, instance, options, depends, w, lines)
    tool.depends_where = fields["dependsOn"][1] if "dependsOn" in fields else None
    tool.options_where = fields["options"][1] if "options" in fields else None
    tool.references = list(_find_refs(tool, loader))
    return tool


def _scalar(
    entry: tuple[yaml.Node, Where] | None, key: str, where: Where, loader: _Loader
) -> str | None:
    if entry is None:
        loader.problem(
            where,
            f"a tool has no `{key}`",
            f"add `{key}: ...`" + (" (the plugin's name)" if key == "name" else ""),
        )
        return None
    node, w = entry
    if not isinstance(node, yaml.ScalarNode) or not str(node.value).strip():
        loader.problem(w, f"`{key}` must be a non-empty string", "")
        return None
    return str(node.value)


def _option_lines(file: str, node: yaml.Node, prefix: str, out: dict[str, Where]) -> None:
    if isinstance(node, yaml.MappingNode):
        for k, v in node.value:
            path = f"{prefix}{k.value}"
            out[path] = Where(file, k.start_mark.line + 1)
            _option_lines(file, v, f"{path}.", out)


def _walk(value: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _walk(v, f"{path}.{k}" if path else str(k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _walk(v, f"{path}.{i}" if path else str(i))
    else:
        yield path, value


def _find_refs(tool: ToolSpec, loader: _Loader) -> Iterator[Reference]:
    for path, value in _walk(tool.options):
        if not isinstance(value, str) or "${{" not in value:
            continue
        for m in REF.finditer(value):
            expr = REF_EXPR.match(m["expr"])
            if expr is None:
                loader.problem(
                    tool.where_option(path),
                    f"option {path}: reference {m.group(0)!r} is not "
                    "${{ TOOL.INSTANCE.outputs.KEY }}",
                    "e.g. ${{ repo-scaffolding.myapp.outputs.repoURL }}",
                )
                continue
            yield Reference(f"{expr['tool']}.{expr['instance']}", expr["key"], m.group(0), path)


def _check_graph(config: Config, loader: _Loader) -> None:
    seen: dict[str, ToolSpec] = {}
    for tool in config.tools:
        if tool.key in seen:
            loader.problem(
                tool.where,
                f"tool {tool.key} is defined twice (first at {seen[tool.key].where})",
                "give each instance its own instanceID",
            )
        else:
            seen[tool.key] = tool
    for tool in config.tools:
        dw = tool.depends_where or tool.where
        for dep in tool.depends_on:
            if dep == tool.key:
                loader.problem(
                    dw, f"tool {tool.key} depends on itself", "remove it from its own dependsOn"
                )
            elif dep not in seen:
                loader.problem(
                    dw,
                    f"tool {tool.key} depends on {dep}, which is not in the config",
                    _suggest(dep, seen, tool.key) or "add that tool or fix the name",
                )
        for ref in tool.references:
            rw = tool.where_option(ref.path)
            if ref.tool not in seen:
                loader.problem(
                    rw,
                    f"tool {tool.key} refers to {ref.text}, but there is no tool {ref.tool}",
                    _suggest(ref.tool, seen, tool.key) or "fix the name",
                )
            elif ref.tool == tool.key:
                loader.problem(
                    rw,
                    f"tool {tool.key} refers to its own outputs",
                    "a tool can only use outputs of other tools",
                )
            elif ref.tool not in tool.depends_on:
                tool.depends_on.append(ref.tool)  # a reference implies a dependency
    cycle = find_cycle({k: t.depends_on for k, t in seen.items()})
    if cycle:
        loader.problem(
            seen[cycle[0]].where,
            "dependency cycle: " + " -> ".join(cycle),
            "remove one dependsOn or reference in the cycle",
        )


def find_cycle(graph: Mapping[str, list[str]]) -> list[str]:
    """A cycle as a path that ends where it starts, or [] (iterative DFS)."""
    state: dict[str, int] = {}
    for start in graph:
        if state.get(start):
            continue
        stack: list[tuple[str, Iterator[str]]] = [(start, iter(graph.get(start, [])))]
        path = [start]
        state[start] = 1
        while stack:
            node, it = stack[-1]
            nxt = next(it, None)
            if nxt is None:
                stack.pop()
                path.pop()
                state[node] = 2
                continue
            if nxt not in graph or nxt == node:
                continue
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if not state.get(nxt):
                state[nxt] = 1
                stack.append((nxt, iter(graph.get(nxt, []))))
                path.append(nxt)
    return []


def _mark_secret_options(config: Config) -> None:
    if not config.secret_values:
        return
    for tool in config.tools:
        for path, value in _walk(tool.options):
            if isinstance(value, str) and any(s in value for s in config.secret_values):
                tool.secret_paths.add(path)
