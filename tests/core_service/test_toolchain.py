"""The toolchain engine on SQLite and PostgreSQL: lifecycle, drift, outputs, parallelism,
failure isolation, secrets, locking, crashes and signals."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from core_service.errors import LockHeld
from core_service.host import ManagedPlugin
from core_service.store import Database, StateLock
from core_service.toolchain import Toolchain, load_config, open_toolchain
from tests.conftest import FIXTURE_PLUGINS, ROOT


def write_config(tmp_path: Path, body: str, name: str = "config.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(body))
    return path


class Events:
    """Records progress events, and how many tools were running at once."""

    def __init__(self) -> None:
        self.log: list[tuple[str, str, str]] = []
        self.running = 0
        self.max_running = 0

    def __call__(self, event: str, key: str, text_: str) -> None:
        self.log.append((event, key, text_))
        if event == "start":
            self.running += 1
            self.max_running = max(self.max_running, self.running)
        elif event in ("done", "failed"):
            self.running = max(0, self.running - 1)


async def run_apply(path: Path, db_url: str, **kw: Any) -> tuple[list[Any], Events]:
    events = Events()
    async with open_toolchain(
        load_config(path), state=db_url, plugin_dirs=[FIXTURE_PLUGINS], progress=events,
        lock="test apply", **kw,
    ) as tc:  # fmt: skip
        state = await tc.store.load()
        await tc.check(state)
        return await tc.apply(state=state), events


async def run_plan(path: Path, db_url: str) -> dict[str, Any]:
    async with open_toolchain(load_config(path), state=db_url, plugin_dirs=[FIXTURE_PLUGINS]) as tc:
        await tc.check()
        return {c.key: c for c in await tc.plan()}


def two_files(tmp_path: Path, content: str = "one") -> str:
    return f"""
    tools:
    - name: localfile
      instanceID: first
      options:
        path: {tmp_path}/out/first.txt
        content: {content}
    - name: localfile
      instanceID: second
      options:
        path: {tmp_path}/out/second.txt
        content: "sha of first is ${{{{ localfile.first.outputs.sha256 }}}}"
    """


async def test_whole_lifecycle_with_drift_and_removal(tmp_path: Path, db_url: str) -> None:
    cfg = write_config(tmp_path, two_files(tmp_path))
    plan = await run_plan(cfg, db_url)
    assert [(c.key, c.action) for c in plan.values()] == [
        ("localfile.first", "create"), ("localfile.second", "create"),
    ]  # fmt: skip
    outcomes, events = await run_apply(cfg, db_url)
    assert [(o.key, o.action, o.result) for o in outcomes] == [
        ("localfile.first", "create", "done"), ("localfile.second", "create", "done"),
    ]  # fmt: skip
    first = tmp_path / "out" / "first.txt"
    second = tmp_path / "out" / "second.txt"
    import hashlib

    assert second.read_text() == f"sha of first is {hashlib.sha256(b'one').hexdigest()}"
    # The dependent started only after its dependency finished.
    order = [(e, k) for e, k, _ in events.log if e in ("start", "done")]
    assert order.index(("done", "localfile.first")) < order.index(("start", "localfile.second"))

    assert {c.action for c in (await run_plan(cfg, db_url)).values()} == {"noop"}

    first.write_text("edited by hand")  # drift
    plan = await run_plan(cfg, db_url)
    assert plan["localfile.first"].action == "update"
    assert plan["localfile.first"].reason == "drift: changed outside dtm"
    # Its input comes from outputs that may change: known only once `first` is applied.
    assert plan["localfile.second"].reason.startswith("may change: it uses outputs of")
    outcomes, _ = await run_apply(cfg, db_url)
    assert first.read_text() == "one"
    # Applied, first's outputs came back the same, so second had nothing to do.
    assert [(o.key, o.action) for o in outcomes] == [
        ("localfile.first", "update"),
        ("localfile.second", "noop"),
    ]

    second.unlink()  # removed by hand
    plan = await run_plan(cfg, db_url)
    assert plan["localfile.second"].reason == "the resource was removed outside dtm"

    cfg = write_config(tmp_path, two_files(tmp_path, content="two"))  # options changed
    plan = await run_plan(cfg, db_url)
    assert plan["localfile.first"].action == "update"
    assert plan["localfile.first"].reason == "options changed"
    assert plan["localfile.first"].details == ['content: "one" -> "two"']
    assert "may change" in plan["localfile.second"].reason
    await run_apply(cfg, db_url)
    assert second.read_text() == f"sha of first is {hashlib.sha256(b'two').hexdigest()}"

    # A tool removed from the config is deleted.
    only_first = f"""
    tools:
    - name: localfile
      instanceID: first
      options: {{path: {tmp_path}/out/first.txt, content: two}}
    """
    cfg = write_config(tmp_path, only_first)
    plan = await run_plan(cfg, db_url)
    assert plan["localfile.second"].action == "delete"
    outcomes, _ = await run_apply(cfg, db_url)
    assert ("localfile.second", "delete", "done") in [(o.key, o.action, o.result) for o in outcomes]
    assert not second.exists() and first.exists()
    assert {c.action for c in (await run_plan(cfg, db_url)).values()} == {"noop"}


def many_records(tmp_path: Path, n: int, extra: str = "", **opts: Any) -> str:
    tools = []
    for i in range(n):
        options = {"dir": str(tmp_path / "rec"), "name": f"r{i}", "content": f"c{i}", **opts}
        tools.append(f"- name: testkit\n  instanceID: r{i}\n  options: {json.dumps(options)}\n")
    return "tools:\n" + "".join(tools) + extra


async def test_independent_tools_run_in_parallel_within_the_bound(
    tmp_path: Path, db_url: str
) -> None:
    cfg = write_config(tmp_path, many_records(tmp_path, 6, slow=0.3))
    outcomes, events = await run_apply(cfg, db_url, parallelism=3)
    assert all(o.result == "done" for o in outcomes)
    assert events.max_running == 3


async def test_a_failure_stops_only_its_dependents(tmp_path: Path, db_url: str) -> None:
    rec = tmp_path / "rec"
    cfg = write_config(
        tmp_path,
        f"""
        tools:
        - name: testkit
          instanceID: broken
          options: {{dir: {rec}, name: broken, fail: "the API said no"}}
        - name: testkit
          instanceID: child
          dependsOn: [testkit.broken]
          options: {{dir: {rec}, name: child}}
        - name: testkit
          instanceID: grandchild
          options: {{dir: {rec}, name: gc, content: "${{{{ testkit.child.outputs.content }}}}"}}
        - name: testkit
          instanceID: independent
          options: {{dir: {rec}, name: independent}}
        """,
    )
    outcomes, _ = await run_apply(cfg, db_url)
    results = {o.key: (o.result, o.message) for o in outcomes}
    assert results["testkit.broken"][0] == "failed"
    assert "the API said no" in results["testkit.broken"][1]
    assert results["testkit.child"] == ("skipped", "testkit.broken did not succeed")
    assert results["testkit.grandchild"] == ("skipped", "testkit.child did not succeed")
    assert results["testkit.independent"][0] == "done"
    assert sorted(p.name.split(".")[0] for p in rec.iterdir()) == ["independent"]


async def test_secrets_from_env_are_never_stored_in_plain_text(
    tmp_path: Path, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DEMO_TOKEN", "tok-very-secret-123")
    cfg = write_config(
        tmp_path,
        f"""
        vars:
          token: '[[ env "DEMO_TOKEN" ]]'
        tools:
        - name: localfile
          instanceID: creds
          options:
            path: {tmp_path}/creds.txt
            content: "token=[[ token ]]"
        """,
    )
    await run_apply(cfg, db_url)
    assert (tmp_path / "creds.txt").read_text() == "token=tok-very-secret-123"
    async with Database(db_url) as db, db.connect() as conn:
        rows = (await conn.execute(text("SELECT * FROM dtm_state"))).mappings().all()
    dump = json.dumps([dict(r) for r in rows], default=str)
    assert "tok-very-secret-123" not in dump
    assert "<secret>" in dump
    # Masking is the same on both sides of the comparison: no false drift.
    assert {c.action for c in (await run_plan(cfg, db_url)).values()} == {"noop"}
    monkeypatch.setenv("DEMO_TOKEN", "tok-rotated-456")
    plan = await run_plan(cfg, db_url)
    assert plan["localfile.creds"].action == "update"
    assert plan["localfile.creds"].details == ["content: (secret changed)"]


async def test_a_second_apply_on_the_same_state_fails_fast_naming_the_holder(
    tmp_path: Path, db_url: str
) -> None:
    cfg = write_config(tmp_path, two_files(tmp_path))
    async with Database(db_url) as db:
        holder = StateLock(db, "default", purpose="dtm apply (other)")
        await holder.acquire()
        try:
            with pytest.raises(LockHeld, match=r"locked by .* pid \d+: dtm apply \(other\) since"):
                await run_apply(cfg, db_url)
            started = time.monotonic()
            waiter = asyncio.create_task(run_apply(cfg, db_url, lock_timeout=10))
            await asyncio.sleep(0.5)
            assert not waiter.done()
        finally:
            await holder.release()
        outcomes, _ = await waiter
        assert time.monotonic() - started >= 0.5
        assert all(o.result == "done" for o in outcomes)


async def test_plugin_killed_during_apply_then_a_second_apply_converges_without_duplicates(
    tmp_path: Path, db_url: str
) -> None:
    cfg = write_config(tmp_path, many_records(tmp_path, 1, slow=30))
    rec = tmp_path / "rec"

    async with open_toolchain(
        load_config(cfg), state=db_url, plugin_dirs=[FIXTURE_PLUGINS], lock="test"
    ) as tc:
        await tc.check()
        task = asyncio.create_task(tc.apply())
        while not rec.exists() or not list(rec.iterdir()):
            await asyncio.sleep(0.05)  # created, the answer not yet sent
        handle = await tc.host.get("testkit")
        assert isinstance(handle, ManagedPlugin)
        os.kill(handle.status()["pid"], signal.SIGKILL)
        outcomes = await task
    assert outcomes[0].result == "failed"
    assert "SIGKILL" in outcomes[0].message and "retry" in outcomes[0].message

    cfg = write_config(tmp_path, many_records(tmp_path, 1))
    plan = await run_plan(cfg, db_url)
    assert plan["testkit.r0"].reason == "exists but not in the state: adopting it"
    outcomes, _ = await run_apply(cfg, db_url)
    assert outcomes[0].result == "done"
    assert len(list(rec.iterdir())) == 1  # adopted, not created twice
    assert {c.action for c in (await run_plan(cfg, db_url)).values()} == {"noop"}


def dtm(*args: str, **kw: Any) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "core_service.cli", "--plugin-dir", str(FIXTURE_PLUGINS), *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
        env={**os.environ, "COLUMNS": "200"}, **kw,
    )  # fmt: skip


def test_two_processes_applying_at_once_never_interleave(tmp_path: Path, db_url: str) -> None:
    cfg = write_config(tmp_path, many_records(tmp_path, 2, slow=2))
    first = dtm("apply", "-f", str(cfg), "--state", db_url, "-y")
    try:
        time.sleep(0.3)
        deadline = time.monotonic() + 30
        while first.poll() is None and time.monotonic() < deadline:
            second = dtm("apply", "-f", str(cfg), "--state", db_url, "-y")
            out, errs = second.communicate(timeout=60)
            if second.returncode == 1 and "is locked by" in errs:
                break
            time.sleep(0.2)
        else:
            pytest.fail("the second apply never met the first one's lock")
        assert "dtm apply since" in errs and "--lock-timeout" in errs
    finally:
        out, first_errs = first.communicate(timeout=60)
    assert first.returncode == 0, first_errs
    assert "Summary: 2 created" in out


def test_sigint_lets_calls_in_flight_finish_and_saves_their_state(
    tmp_path: Path, db_url: str
) -> None:
    body = many_records(tmp_path, 1, slow=1.5)
    body += "\n".join(
        f"- name: testkit\n  instanceID: after{i}\n  dependsOn: [testkit.r0]\n"
        f"  options: {{dir: {tmp_path / 'rec'}, name: after{i}}}"
        for i in range(3)
    )
    cfg = write_config(tmp_path, body + "\n")
    proc = dtm("apply", "-f", str(cfg), "--state", db_url, "-y")
    rec = tmp_path / "rec"
    deadline = time.monotonic() + 30
    while not (rec.exists() and list(rec.iterdir())) and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    out, errs = proc.communicate(timeout=60)
    assert proc.returncode == 130, out + errs
    assert "letting calls in flight finish" in errs
    assert "Interrupted." in out and "1 created" in out
    assert sorted(p.name.split(".")[0] for p in rec.iterdir()) == ["r0"]
    plan = subprocess.run(
        [sys.executable, "-m", "core_service.cli", "--plugin-dir", str(FIXTURE_PLUGINS),
         "plan", "-f", str(cfg), "--state", db_url, "-o", "json"],
        capture_output=True, text=True, cwd=ROOT, timeout=60,
    )  # fmt: skip
    actions = {c["tool"]: c["action"] for c in json.loads(plan.stdout)}
    assert actions["testkit.r0"] == "noop"  # its state was saved
    assert {actions[f"testkit.after{i}"] for i in range(3)} == {"create"}


def test_destroy_works_from_the_state_alone(tmp_path: Path, db_url: str) -> None:
    cfg = write_config(tmp_path, two_files(tmp_path))
    applied = dtm("apply", "-f", str(cfg), "--state", db_url, "-y")
    out, errs = applied.communicate(timeout=60)
    assert applied.returncode == 0, errs
    cfg.unlink()
    destroyed = dtm("destroy", "--state", db_url, "-y")
    out, errs = destroyed.communicate(timeout=60)
    assert destroyed.returncode == 0, errs
    assert "2 deleted" in out
    assert not (tmp_path / "out" / "first.txt").exists()
    assert not (tmp_path / "out" / "second.txt").exists()


async def test_deletion_order_is_dependents_first() -> None:
    from core_service.store import ToolState

    def st(key: str, deps: list[str]) -> ToolState:
        return ToolState(key, "p", key, {}, [], "", {}, deps)

    state = {"a.1": st("a.1", []), "b.1": st("b.1", ["a.1"]), "c.1": st("c.1", ["b.1"])}
    assert Toolchain.deletion_order(state, keep=set()) == ["c.1", "b.1", "a.1"]
    assert Toolchain.deletion_order(state, keep={"a.1"}) == ["c.1", "b.1"]


def run_dtm(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "core_service.cli", "--plugin-dir", str(FIXTURE_PLUGINS), *args],
        capture_output=True, text=True, cwd=ROOT, timeout=120, env={**os.environ, "COLUMNS": "200"},
    )  # fmt: skip


def test_verify_show_status_and_show_config_from_the_cli(tmp_path: Path) -> None:
    cfg = write_config(tmp_path, two_files(tmp_path))
    state = str(tmp_path / "s.db")
    assert run_dtm("verify", "-f", str(cfg), "--state", state).returncode == 1  # nothing applied
    assert run_dtm("apply", "-f", str(cfg), "--state", state, "-y").returncode == 0
    verified = run_dtm("verify", "-f", str(cfg), "--state", state)
    assert verified.returncode == 0 and "all 2 tool(s) match" in verified.stdout
    (tmp_path / "out" / "first.txt").write_text("hand edit")
    drifted = run_dtm("verify", "-f", str(cfg), "--state", state)
    assert drifted.returncode == 1 and "drift: changed outside dtm" in drifted.stdout
    status = json.loads(run_dtm("show", "status", "-f", str(cfg), "--state", state,
                                "-o", "json").stdout)  # fmt: skip
    live = {row["tool"]: (row["live"], row["reason"]) for row in status}
    assert live["localfile.first"] == ("update", "drift: changed outside dtm")
    assert live["localfile.second"][0] == "update"  # its input may change with first's outputs
    assert status[0]["stored_status"]["outputs"]["path"].endswith("first.txt")
    example = run_dtm("show", "config", "-p", "localfile")
    assert example.returncode == 0
    import yaml

    parsed = yaml.safe_load(example.stdout)
    assert set(parsed["tools"][0]["options"]) == {"path", "content", "mode"}
    assert "# absolute or relative path (required; string)" in example.stdout
