"""The `dtm plugin` and `dtm develop` commands, run as a user runs them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT

DTM = [sys.executable, "-m", "core_service.cli"]


def dtm(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*DTM, *args], capture_output=True, text=True, timeout=120, cwd=ROOT,
        env={**os.environ, "COLUMNS": "200", **(env or {})},
    )  # fmt: skip


def test_list_json_names_every_plugin_with_versions_and_source() -> None:
    proc = dtm("plugin", "list", "--output", "json")
    assert proc.returncode == 0, proc.stderr
    rows = {r["name"]: r for r in json.loads(proc.stdout)}
    assert rows["localfile"]["version"] == "0.1.0"
    assert rows["localfile"]["protocol_versions"] == [1]
    assert rows["localfile"]["source"].startswith("dir:")


def test_describe_and_call_create_then_read(tmp_path: Path) -> None:
    described = dtm("plugin", "describe", "localfile", "-o", "json")
    assert described.returncode == 0, described.stderr
    info = json.loads(described.stdout)
    assert info["capabilities"] == ["resource"]
    assert info["options_schema"]["required"] == ["path"]
    options = json.dumps({"path": str(tmp_path / "hello.txt"), "content": "hi"})
    created = dtm("plugin", "call", "localfile", "Create", "--options", options)
    assert created.returncode == 0, created.stderr
    assert (tmp_path / "hello.txt").read_text() == "hi"
    read = dtm("plugin", "call", "localfile", "Read", "--options", options)
    assert json.loads(read.stdout) == json.loads(created.stdout)


def test_call_errors_are_one_clear_line_and_exit_nonzero() -> None:
    bad = dtm("plugin", "call", "localfile", "Create", "--options", '{"pat": 1}')
    assert bad.returncode == 1
    assert "plugin localfile: invalid options" in bad.stderr
    assert "'path' is a required property" in bad.stderr
    assert "Traceback" not in bad.stderr
    notjson = dtm("plugin", "call", "localfile", "Read", "--options", "{path")
    assert notjson.returncode == 2 and "--options is not valid JSON" in notjson.stderr
    missing = dtm("plugin", "describe", "localfle")
    assert missing.returncode == 1 and "did you mean 'localfile'" in missing.stderr


def test_create_plugin_is_discovered_validated_and_passes_its_own_tests(tmp_path: Path) -> None:
    made = dtm("develop", "create-plugin", "--name", "my-thing", "--dir", str(tmp_path))
    assert made.returncode == 0, made.stderr
    env = {"DTM_PLUGIN_DIRS": str(tmp_path)}
    listed = json.loads(dtm("plugin", "list", "-o", "json", env=env).stdout)
    assert "my-thing" in {r["name"] for r in listed}
    valid = dtm("develop", "validate-plugin", "--name", "my-thing", env=env)
    assert valid.returncode == 0, valid.stdout + valid.stderr
    assert "FAIL" not in valid.stdout
    tests = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "my_thing/tests"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert tests.returncode == 0, tests.stdout + tests.stderr
    assert "3 passed" in tests.stdout
    again = dtm("develop", "create-plugin", "--name", "my-thing", "--dir", str(tmp_path))
    assert again.returncode == 2 and "already exists" in again.stderr


def test_validate_plugin_reports_a_broken_manifest(tmp_path: Path) -> None:
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "plugin.yaml").write_text("name: broken\nversion: 1\ncolour: red\n")
    proc = dtm(
        "develop", "validate-plugin", "--name", "broken", env={"DTM_PLUGIN_DIRS": str(tmp_path)}
    )
    assert proc.returncode == 1
    assert "unknown key(s) ['colour']" in proc.stdout


def test_bad_plugin_name_is_refused() -> None:
    proc = dtm("develop", "create-plugin", "--name", "9lives")
    assert proc.returncode == 2 and "must start with a letter" in proc.stderr


def test_data_plugin_scaffold_and_subtask_generators(tmp_path: Path) -> None:
    env = {"DTM_PLUGIN_DIRS": str(tmp_path)}
    made = dtm("develop", "create-plugin", "--name", "icla2", "--data", "--dir", str(tmp_path))
    assert made.returncode == 0, made.stderr
    for kind in ("collector", "extractor", "converter"):
        added = dtm("develop", f"create-{kind}", "icla2", "committer", env=env)
        assert added.returncode == 0, added.stderr
        assert f"committer to {tmp_path / 'icla2' / 'plugin.py'}" in added.stdout
    twice = dtm("develop", "create-collector", "icla2", "committer", env=env)
    assert twice.returncode == 2 and "already has collect_committer" in twice.stderr
    bad = dtm("develop", "create-converter", "icla2", "x", "--domain", "nope", env=env)
    assert bad.returncode == 2 and "is not a domain table" in bad.stderr
    described = json.loads(dtm("plugin", "describe", "icla2", "-o", "json", env=env).stdout)
    assert [(s["name"], s["kind"]) for s in described["subtasks"]] == [
        ("collect_committer", "collector"),
        ("extract_committer", "extractor"),
        ("convert_committer", "converter"),
    ]
    assert [t["name"] for t in described["tables"]] == ["_tool_icla2_committer"]
    tests = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "icla2/tests"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert tests.returncode == 0, tests.stdout + tests.stderr
    assert "5 passed" in tests.stdout


def test_a_pip_installed_plugin_is_found_through_its_entry_point(tmp_path: Path) -> None:
    """A distribution declaring `devstream.plugins` is listed and runs like a built-in one."""
    made = dtm("develop", "create-plugin", "--name", "pipthing", "--dir", str(tmp_path / "src"))
    assert made.returncode == 0, made.stderr
    site = tmp_path / "site"
    site.mkdir()
    (tmp_path / "src" / "pipthing").rename(site / "pipthing")
    dist = site / "pipthing-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: pipthing\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[devstream.plugins]\npipthing = pipthing\n")
    env = {"PYTHONPATH": str(site)}
    rows = {r["name"]: r for r in json.loads(dtm("plugin", "list", "-o", "json", env=env).stdout)}
    assert rows["pipthing"]["source"] == "entry-point:pipthing"
    options = json.dumps({"name": "x", "directory": str(tmp_path / "out")})
    created = dtm("plugin", "call", "pipthing", "Create", "--options", options, env=env)
    assert created.returncode == 0, created.stderr
    assert (tmp_path / "out" / "x.json").exists()
