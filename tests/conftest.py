"""Shared fixtures: fixture plugins, throwaway plugin folders, database URLs."""

from __future__ import annotations

import os
import sys
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from core_service.host import PluginHost, RestartPolicy

ROOT = Path(__file__).resolve().parent.parent
FIXTURE_PLUGINS = ROOT / "tests" / "fixtures" / "plugins"


def write_plugin(base: Path, name: str, script: str, versions: str = "[1]") -> Path:
    """A plugin folder whose command runs `script` with this interpreter."""
    folder = base / name
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "main.py").write_text(textwrap.dedent(script))
    (folder / "plugin.yaml").write_text(
        f"name: {name}\nversion: 0.0.1\nprotocol_versions: {versions}\n"
        f"command: [{sys.executable!r}, {str(folder / 'main.py')!r}]\n"
    )
    return base


@pytest.fixture
async def host() -> AsyncIterator[PluginHost]:
    async with PluginHost(
        plugin_dirs=[FIXTURE_PLUGINS],
        reattach="",
        start_timeout=10,
        health_interval=0,
        restart=RestartPolicy(budget=3, window=30, initial_backoff=0.05, max_backoff=0.5),
    ) as h:
        yield h


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers kill(0); read its state.
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False
