"""The [[ ]] template subset, and odd file names through the real git commit path."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from plugin_sdk import InvalidOptions
from plugins._scm import git
from plugins._scm.git import File
from plugins.repo_scaffolding.render import is_binary, render_path, render_text, render_tree

VARS = {"AppName": "demo", "Repo": {"Name": "demo", "Owner": "acme"}, "On": True, "N": 2}


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("[[ .AppName ]]", "demo"),
        ("[[.AppName]]/[[ .Repo.Owner ]]", "demo/acme"),
        ("debug: [[ .On ]], replicas: [[ .N ]]", "debug: true, replicas: 2"),
        ("a   [[- .AppName -]]   b", "ademob"),
        ("list:\n  [[- .AppName ]]\n", "list:demo\n"),
        # Not placeholders: TOML tables, Bash tests, Helm and Actions expressions pass through.
        ("[[tool.mypy.overrides]]", "[[tool.mypy.overrides]]"),
        ('if [[ -f x ]]; then echo "[[ $y ]]"; fi', 'if [[ -f x ]]; then echo "[[ $y ]]"; fi'),
        ("{{ .Values.x }} ${{ github.sha }}", "{{ .Values.x }} ${{ github.sha }}"),
    ],
)
def test_render_text(template: str, expected: str) -> None:
    assert render_text(template, VARS, "f") == expected


def test_unknown_field_names_the_file_and_what_is_known() -> None:
    with pytest.raises(InvalidOptions, match=r"ci\.yml: .*\[\[ \.Repo\.Nmae \]\].*Name, Owner"):
        render_text("x: [[ .Repo.Nmae ]]", VARS, "ci.yml")


def test_paths_render_per_part_and_never_escape() -> None:
    assert render_path("[[ .AppName ]]/[[ .AppName ]]_test.py", VARS) == "demo/demo_test.py"
    for bad in ({"AppName": ".."}, {"AppName": "a/b"}, {"AppName": ""}):
        with pytest.raises(InvalidOptions, match="must be non-empty and hold no /"):
            render_path("[[ .AppName ]]/x", {**VARS, **bad})
    with pytest.raises(InvalidOptions, match=r"renders into \.git/"):
        render_path("[[ .AppName ]]/hooks", {"AppName": ".git"})


def test_tree_keeps_binaries_and_modes_and_refuses_collisions() -> None:
    png = b"\x89PNG\x00[[ .AppName ]]"
    latin1 = "caf\xe9 [[ .AppName ]]".encode("latin-1")  # not UTF-8: copied as it is
    out = render_tree(
        {
            "bin/[[ .AppName ]].png": File(png),
            "legacy.txt": File(latin1),
            "run.sh": File(b"echo [[ .AppName ]]", executable=True),
        },
        VARS,
    )
    assert out == {
        "bin/demo.png": File(png),
        "legacy.txt": File(latin1),
        "run.sh": File(b"echo demo", executable=True),
    }
    assert is_binary(png) and is_binary(latin1) and not is_binary("é".encode())
    with pytest.raises(InvalidOptions, match=r"both render to 'demo\.txt'"):
        render_tree({"demo.txt": File(b""), "[[ .AppName ]].txt": File(b"")}, VARS)


async def test_odd_names_commit_and_read_back(tmp_path: Path) -> None:
    files = {
        'docs/a "quoted" name.md': File(b"1"),
        "glob[*]?.txt": File(b"2"),
        "caf\xe9/\u00fcber.txt": File(b"3"),
        "-leading-dash": File(b"4"),
    }
    repo = tmp_path / "r"
    await git.init(repo, "main", "test")
    head = await git.commit(repo, "main", files, "odd names")
    assert head is not None
    state = await git.tracked(repo, "main", files)
    assert state.files == {name: f.sha for name, f in files.items()} and state.dirty == []
    assert all((repo / name).read_bytes() == f.data for name, f in files.items())
    assert await git.commit(repo, "main", files, "again") is None  # nothing changed
    await git.commit(repo, "main", dict.fromkeys(files), "remove")
    assert not any((repo / name).exists() for name in files)
    status = subprocess.run(
        ["git", "status", "--porcelain"], cwd=repo, capture_output=True, text=True, check=True
    )
    assert status.stdout == ""
