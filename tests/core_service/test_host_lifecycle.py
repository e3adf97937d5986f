"""Supervision: crashes, restarts, stop, orphans, and many calls at once, with real processes."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from core_service.errors import PluginCrashed, PluginGaveUp
from core_service.host import ManagedPlugin, PluginHost, RestartPolicy
from plugin_sdk import Unimplemented
from tests.conftest import FIXTURE_PLUGINS, ROOT, pid_alive


async def pid_of(handle: ManagedPlugin) -> int:
    status = await handle.call(lambda c: c.read({}))
    assert status is not None
    return int(status["pid"])


async def wait_until(predicate, timeout: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)


async def test_sigkill_then_restart_and_a_working_call(host: PluginHost) -> None:
    handle = await host.get("testkit")
    assert isinstance(handle, ManagedPlugin)
    first = await pid_of(handle)
    os.kill(first, signal.SIGKILL)
    # Once the host has seen the crash, the next call waits for the new process.
    await wait_until(lambda: not handle.status()["alive"] or handle.restarts == 1)
    second = await pid_of(handle)
    assert second != first
    assert handle.restarts == 1
    assert handle.status()["alive"]


async def test_call_in_flight_during_a_crash_fails_clearly_and_is_retriable(
    host: PluginHost,
) -> None:
    handle = await host.get("testkit")
    assert isinstance(handle, ManagedPlugin)
    pid = await pid_of(handle)
    call = asyncio.create_task(handle.call(lambda c: c.read({"sleep": 30})))
    await asyncio.sleep(0.3)
    os.kill(pid, signal.SIGKILL)
    with pytest.raises(PluginCrashed) as info:
        await call
    assert info.value.retriable
    assert "was killed by SIGKILL during the call" in str(info.value)
    assert "retry" in str(info.value)
    assert await pid_of(handle) != pid


async def test_a_plugin_that_keeps_crashing_exhausts_its_restart_budget(
    host: PluginHost,
) -> None:
    handle = await host.get("testkit")
    assert isinstance(handle, ManagedPlugin)
    for _ in range(4):  # budget is 3 in the fixture
        try:
            await handle.call(lambda c: c.read({"exit": 7}))
        except PluginCrashed:
            pass
        except PluginGaveUp:
            break
    with pytest.raises(PluginGaveUp, match="more than its restart budget of 3"):
        await handle.call(lambda c: c.read({}))


async def test_stop_is_idempotent_and_leaves_no_process(tmp_path: Path) -> None:
    host = PluginHost(plugin_dirs=[FIXTURE_PLUGINS], health_interval=0)
    handle = await host.get("testkit")
    pid = await pid_of(handle)  # type: ignore[arg-type]
    await host.aclose()
    await host.aclose()
    await handle.stop()
    assert not pid_alive(pid)


async def test_health_checks_replace_a_hung_plugin(tmp_path: Path) -> None:
    async with PluginHost(plugin_dirs=[FIXTURE_PLUGINS], health_interval=0.2) as host:
        handle = await host.get("testkit")
        assert isinstance(handle, ManagedPlugin)
        pid = await pid_of(handle)
        os.kill(pid, signal.SIGSTOP)  # alive but not answering
        await wait_until(lambda: handle.restarts >= 1, timeout=15)
        assert await pid_of(handle) != pid
        assert not pid_alive(pid)


async def test_unimplemented_calls_name_the_plugin(host: PluginHost) -> None:
    handle = await host.get("testkit")
    with pytest.raises(Unimplemented, match="plugin testkit: does not implement Update"):
        await handle.call(lambda c: c.update({}))


async def test_two_hundred_concurrent_calls_to_one_process(host: PluginHost) -> None:
    handle = await host.get("testkit")
    results = await asyncio.gather(
        *(handle.call(lambda c, i=i: c.read({"i": i, "sleep": 0.01})) for i in range(200))
    )
    assert sorted(r["echo"]["i"] for r in results if r) == list(range(200))
    assert len({r["pid"] for r in results if r}) == 1


CORE_SCRIPT = textwrap.dedent(
    """
    import asyncio, sys
    from core_service.host import PluginHost
    async def main():
        host = PluginHost(plugin_dirs=[sys.argv[1]], health_interval=0)
        for name in ("testkit", "localfile"):
            handle = await host.get(name)
            print(handle.status()["pid"], flush=True)
        await asyncio.sleep(60)
    asyncio.run(main())
    """
)


def test_no_plugin_survives_sigkill_of_the_core() -> None:
    core = subprocess.Popen(
        [sys.executable, "-c", CORE_SCRIPT, str(FIXTURE_PLUGINS)],
        stdout=subprocess.PIPE, text=True, cwd=ROOT,
    )  # fmt: skip
    assert core.stdout is not None
    with core:
        pids = [int(core.stdout.readline()) for _ in range(2)]
        assert all(pid_alive(p) for p in pids)
        core.kill()
        core.wait()
    deadline = time.monotonic() + 2.0
    while any(pid_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    left = [p for p in pids if pid_alive(p)]
    states = {p: Path(f"/proc/{p}/status").read_text().splitlines()[:8] for p in left}
    for p in left:
        os.kill(p, signal.SIGKILL)
    assert left == [], f"plugin processes outlived the core by more than 2 s: {states}"


async def test_restart_policy_backoff_grows_and_is_capped() -> None:
    policy = RestartPolicy(initial_backoff=0.1, max_backoff=1.0)
    delays = [policy.delay(n) for n in range(8)]
    assert 0.08 <= delays[0] <= 0.12
    assert delays[3] > delays[1]
    assert max(delays) <= 1.2


async def test_init_config_is_sent_again_after_a_restart() -> None:
    async with PluginHost(
        plugin_dirs=[FIXTURE_PLUGINS],
        health_interval=0,
        init_config={"region": "eu"},
        restart=RestartPolicy(initial_backoff=0.01),
    ) as host:
        handle = await host.get("testkit")
        assert isinstance(handle, ManagedPlugin)
        first = await handle.call(lambda c: c.read({}))
        assert first is not None and first["config"] == {"region": "eu"}
        os.kill(first["pid"], signal.SIGKILL)
        await wait_until(lambda: handle.restarts == 1)
        second = await handle.call(lambda c: c.read({}))
        assert second is not None and second["pid"] != first["pid"]
        assert second["config"] == {"region": "eu"}
