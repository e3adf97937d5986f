"""Broken configs: each mistake is reported with its file, line and a fix, before anything runs."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from core_service.host import PluginHost
from core_service.toolchain import ConfigProblems, Toolchain, load_config
from tests.conftest import FIXTURE_PLUGINS, ROOT

OK_TOOL = """
- name: localfile
  instanceID: a
  options: {path: /tmp/x/a.txt}
"""

# (id, config text, expected line, expected words in the message, expected words in the fix)
STATIC_CASES = [
    (
        "yaml-syntax",
        "tools:\n- name: localfile\n  instanceID: [a\n",
        4,
        "not valid YAML",
        "indentation",
    ),
    ("not-a-mapping", "- just\n- a list\n", 1, "must be a mapping with `tools:`", "start the file"),
    (
        "top-level-typo",
        "tool:\n" + OK_TOOL,
        1,
        "unknown top-level key `tool`",
        "did you mean 'tools'",
    ),
    ("tools-not-list", "tools: localfile\n", 1, "`tools` must be a list", "- name:"),
    ("tool-not-mapping", "tools:\n- localfile\n", 2, "each tool must be a mapping", "name: PLUGIN"),
    (
        "tool-key-typo",
        "tools:\n- name: localfile\n  instanceId: a\n",
        3,
        "unknown key `instanceId`",
        "did you mean 'instanceID'",
    ),
    (
        "missing-name",
        "tools:\n- instanceID: a\n  options: {}\n",
        2,
        "a tool has no `name`",
        "plugin's name",
    ),
    (
        "missing-instance",
        "tools:\n- name: localfile\n",
        2,
        "a tool has no `instanceID`",
        "add `instanceID",
    ),
    (
        "bad-instance-id",
        "tools:\n- name: localfile\n  instanceID: 'my app'\n",
        3,
        "instanceID 'my app' is not valid",
        "letters, digits",
    ),
    (
        "duplicate",
        "tools:" + OK_TOOL + OK_TOOL,
        6,
        "tool localfile.a is defined twice (first at",
        "own instanceID",
    ),
    (
        "depends-not-list",
        "tools:\n- name: localfile\n  instanceID: a\n  dependsOn: localfile.b\n",
        4,
        "`dependsOn` must be a list",
        "dependsOn: [",
    ),
    (
        "depends-bad-format",
        "tools:\n- name: localfile\n  instanceID: a\n  dependsOn: [b]\n",
        4,
        "dependsOn entry 'b' is not",
        "PLUGIN.INSTANCE",
    ),
    (
        "depends-unknown",
        "tools:" + OK_TOOL + "  dependsOn: [localfile.zz]\n",
        5,
        "depends on localfile.zz, which is not in the config",
        "add that tool",
    ),
    (
        "depends-typo",
        "tools:" + OK_TOOL + "- name: localfile\n  instanceID: b\n  dependsOn: [localfile.aa]\n",
        7,
        "depends on localfile.aa",
        "did you mean 'localfile.a'",
    ),
    (
        "self-dependency",
        "tools:" + OK_TOOL + "  dependsOn: [localfile.a]\n",
        5,
        "depends on itself",
        "remove it",
    ),
    (
        "cycle",
        "tools:\n- name: localfile\n  instanceID: a\n  dependsOn: [localfile.b]\n- name: localfile\n  instanceID: b\n  dependsOn: [localfile.a]\n",
        2,
        "dependency cycle: localfile.a -> localfile.b -> localfile.a",
        "remove one dependsOn",
    ),
    (
        "cycle-via-reference",
        "tools:\n- name: localfile\n  instanceID: a\n  options: {content: '${{ localfile.b.outputs.sha256 }}'}\n- name: localfile\n  instanceID: b\n  options: {content: '${{ localfile.a.outputs.sha256 }}'}\n",
        2,
        "dependency cycle",
        "reference in the cycle",
    ),
    (
        "reference-unknown-tool",
        "tools:"
        + OK_TOOL
        + "- name: localfile\n  instanceID: b\n  options: {content: '${{ localfile.c.outputs.x }}'}\n",
        7,
        "refers to ${{ localfile.c.outputs.x }}, but there is no tool localfile.c",
        "did you mean 'localfile.a'",
    ),
    (
        "reference-bad-syntax",
        "tools:\n- name: localfile\n  instanceID: b\n  options:\n    content: '${{ localfile.a.sha }}'\n",
        5,
        "is not ${{ TOOL.INSTANCE.outputs.KEY }}",
        "e.g. ${{",
    ),
    (
        "reference-to-self",
        "tools:\n- name: localfile\n  instanceID: a\n  options: {content: '${{ localfile.a.outputs.x }}'}\n",
        4,
        "refers to its own outputs",
        "other tools",
    ),
    (
        "options-not-mapping",
        "tools:\n- name: localfile\n  instanceID: a\n  options: [1, 2]\n",
        4,
        "`options` must be a mapping",
        "key: value",
    ),
    (
        "undefined-var",
        "vars:\n  appName: x\ntools:\n- name: localfile\n  instanceID: a\n  options: {path: '/tmp/[[ app_name ]]'}\n",
        6,
        "[[ app_name ]] is not defined under `vars:`",
        "did you mean 'appName'",
    ),
    (
        "env-not-set",
        "tools:\n- name: localfile\n  instanceID: a\n  options: {content: '[[ env \"DTM_TEST_SURELY_UNSET\" ]]'}\n",
        4,
        "environment variable DTM_TEST_SURELY_UNSET is not set",
        "export DTM_TEST_SURELY_UNSET",
    ),
    (
        "vars-not-mapping",
        "vars: [1]\ntools:" + OK_TOOL,
        1,
        "`vars` must be a mapping",
        "name: value",
    ),
    (
        "unknown-backend",
        "config:\n  state:\n    backend: s3\ntools:" + OK_TOOL,
        2,
        "unknown state backend 's3'",
        "use one of",
    ),
    (
        "database-without-url",
        "config:\n  state:\n    backend: database\ntools:" + OK_TOOL,
        2,
        "needs `options.url`",
        "postgresql://",
    ),
    ("no-tools", "vars: {a: 1}\n", 1, "the config lists no tools", "add a `tools:` list"),
]


@pytest.mark.parametrize(("case", "text", "line", "message", "fix"), STATIC_CASES,
                         ids=[c[0] for c in STATIC_CASES])  # fmt: skip
def test_static_mistakes_name_file_line_and_fix(
    tmp_path: Path, case: str, text: str, line: int, message: str, fix: str
) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(text)
    with pytest.raises(ConfigProblems) as info:
        load_config(path, environ={})
    problems = info.value.problems
    hit = [p for p in problems if message in p.message]
    assert hit, f"no problem says {message!r}: {[str(p) for p in problems]}"
    assert hit[0].where.file == str(path)
    assert hit[0].where.line == line, str(hit[0])
    assert fix in hit[0].fix


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("tool: []\ntools:\n- name: localfile\n  instanceId: a\n- nme: x\n")
    with pytest.raises(ConfigProblems) as info:
        load_config(path, environ={})
    text = str(info.value)
    assert "unknown top-level key `tool`" in text
    assert "unknown key `instanceId`" in text
    assert "unknown key `nme`" in text
    assert text.startswith("the config has ")


def test_a_directory_of_files_reports_the_right_file(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text("tools:" + OK_TOOL)
    (tmp_path / "b.yaml").write_text(
        "tools:\n- name: localfile\n  instanceID: b\n  dependsOn: [localfile.a]\n  colour: red\n"
    )
    with pytest.raises(ConfigProblems) as info:
        load_config(tmp_path, environ={})
    (problem,) = info.value.problems
    assert problem.where.file == str(tmp_path / "b.yaml") and problem.where.line == 5
    (tmp_path / "b.yaml").write_text(
        "tools:\n- name: localfile\n  instanceID: b\n  dependsOn: [localfile.a]\n"
    )
    config = load_config(tmp_path, environ={})
    assert [t.key for t in config.tools] == ["localfile.a", "localfile.b"]


PLUGIN_CASES = [
    (
        "unknown-plugin",
        "tools:\n- name: localfle\n  instanceID: a\n  options: {path: /tmp/a}\n",
        2,
        "no plugin named 'localfle'",
        "did you mean 'localfile'",
    ),
    (
        "schema-type",
        "tools:\n- name: localfile\n  instanceID: a\n  options:\n    path: /tmp/a\n    mode: 644\n",
        6,
        "option mode: 644 is not of type 'string'",
        "dtm show config -p localfile",
    ),
    (
        "schema-unknown-option",
        "tools:\n- name: localfile\n  instanceID: a\n  options:\n    path: /tmp/a\n    colour: red\n",
        4,
        "Additional properties are not allowed ('colour' was unexpected)",
        "show config",
    ),
    (
        "schema-required",
        "tools:\n- name: localfile\n  instanceID: a\n  options:\n    content: hi\n",
        4,
        "'path' is a required property",
        "show config",
    ),
    (
        "plugin-validate",
        "tools:\n- name: localfile\n  instanceID: a\n  options:\n    path: /tmp/dir/\n",
        5,
        "names a directory; give a file name",
        "show config",
    ),
]


@pytest.mark.parametrize(("case", "text", "line", "message", "fix"), PLUGIN_CASES,
                         ids=[c[0] for c in PLUGIN_CASES])  # fmt: skip
async def test_mistakes_found_by_plugins_name_file_and_line(
    tmp_path: Path, case: str, text: str, line: int, message: str, fix: str
) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(text)
    config = load_config(path, environ={})
    async with PluginHost(plugin_dirs=[FIXTURE_PLUGINS], health_interval=0) as host:
        tc = Toolchain(config, host, store=None)  # type: ignore[arg-type]
        with pytest.raises(ConfigProblems) as info:
            await tc.check({})
    hit = [p for p in info.value.problems if message in p.message]
    assert hit, [str(p) for p in info.value.problems]
    assert (hit[0].where.file, hit[0].where.line) == (str(path), line)
    assert fix in hit[0].fix


async def test_an_unknown_reference_target_is_excused_by_schema_checks(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(
        textwrap.dedent("""
        tools:
        - name: localfile
          instanceID: a
          options: {path: /tmp/dtm-ref/a.txt}
        - name: localfile
          instanceID: b
          options: {path: '${{ localfile.a.outputs.path }}.copy', mode: '${{ localfile.a.outputs.sha256 }}'}
    """)
    )
    config = load_config(path, environ={})
    async with PluginHost(plugin_dirs=[FIXTURE_PLUGINS], health_interval=0) as host:
        await Toolchain(config, host, store=None).check({})  # type: ignore[arg-type]


def test_the_cli_prints_problems_and_runs_nothing(tmp_path: Path) -> None:
    target = tmp_path / "never.txt"
    path = tmp_path / "config.yaml"
    path.write_text(
        f"tools:\n- name: localfile\n  instanceID: a\n  options: {{path: {target}}}\n- name: localfile\n  instanceID: b\n  dependsOn: [localfile.c]\n"
    )
    proc = subprocess.run(
        [sys.executable, "-m", "core_service.cli", "apply", "-f", str(path), "-y",
         "--state", str(tmp_path / "s.db")],
        capture_output=True, text=True, timeout=60, cwd=ROOT, env={**os.environ, "COLUMNS": "200"},
    )  # fmt: skip
    assert proc.returncode == 1
    assert f"{path}:7: tool localfile.b depends on localfile.c" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not target.exists()
