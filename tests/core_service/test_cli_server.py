"""The CLI drives a running core (`--server`) with the same commands and output as embedded."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.conftest import FIXTURE_PLUGINS, ROOT

TOKEN = "cli-server-token-9876543210"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def dtm(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "core_service.cli", "--plugin-dir", str(FIXTURE_PLUGINS), *args],
        capture_output=True, text=True, cwd=ROOT, timeout=120,
        env={**os.environ, "COLUMNS": "200", **(env or {})},
    )  # fmt: skip


@pytest.fixture
def server(tmp_path: Path) -> Iterator[str]:
    port = free_port()
    env = {**os.environ, "DTM_API_TOKEN": TOKEN, "DTM_DATABASE_URL": str(tmp_path / "served.db")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "core_service.cli", "--plugin-dir", str(FIXTURE_PLUGINS), "serve",
         "--listen", f"127.0.0.1:{port}"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT, env=env,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            urllib.request.urlopen(f"{url}/healthz", timeout=1).close()
            break
        except OSError:
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
            time.sleep(0.1)
    yield url
    proc.terminate()
    proc.communicate(timeout=30)


def table(text: str) -> list[str]:
    """The status table's rows, without ids that differ between databases."""
    return [re.sub(r"#\d+", "#N", line) for line in text.splitlines() if "│" in line]


def test_pipeline_commands_give_the_same_output_embedded_and_served(
    server: str, tmp_path: Path
) -> None:
    plan = tmp_path / "plan.yaml"
    plan.write_text(yaml.safe_dump({"name": "kit", "plan": [[{
        "plugin": "lakekit", "options": {"count": 120}}]]}))  # fmt: skip
    embedded = dtm("pipeline", "run", "-f", str(plan), "--database", str(tmp_path / "e.db"))
    served = dtm("--server", server, "pipeline", "run", "-f", str(plan),
                 env={"DTM_API_TOKEN": TOKEN})  # fmt: skip
    assert embedded.returncode == served.returncode == 0, served.stderr
    assert "pipeline 1 (kit): done" in served.stdout
    assert table(embedded.stdout) == table(served.stdout)
    assert any("120" in row for row in table(served.stdout))
    status = dtm("--server", server, "pipeline", "status", "1", env={"DTM_API_TOKEN": TOKEN})
    assert table(status.stdout) == table(served.stdout)
    listed = dtm("--server", server, "pipeline", "list", "-o", "json",
                 env={"DTM_API_TOKEN": TOKEN})  # fmt: skip
    assert '"status": "done"' in listed.stdout


def test_without_the_token_the_served_core_refuses_clearly(server: str) -> None:
    refused = dtm("--server", server, "pipeline", "list", env={"DTM_API_TOKEN": ""})
    assert refused.returncode == 1
    assert "Authorization: Bearer TOKEN" in refused.stderr
    assert TOKEN not in refused.stderr


def test_serve_refuses_to_listen_beyond_loopback_without_a_token() -> None:
    proc = dtm("serve", "--listen", "0.0.0.0:0", env={"DTM_API_TOKEN": ""})
    assert proc.returncode == 2
    assert "refusing to listen on 0.0.0.0:0 without a token" in proc.stderr
