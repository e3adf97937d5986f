"""Starting plugin processes: the handshake and each way it can fail."""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
from pathlib import Path

import pytest

from core_service.errors import (
    HandshakeError,
    HandshakeTimeout,
    IncompatibleVersion,
    PluginExitedEarly,
    PluginNotFound,
)
from core_service.host import PluginHost, parse_handshake
from plugin_sdk._protocol import MAGIC_COOKIE_KEY, MAGIC_COOKIE_VALUE
from tests.conftest import FIXTURE_PLUGINS, ROOT, pid_alive, write_plugin


async def test_handshake_survives_a_stray_print_and_calls_work(host: PluginHost) -> None:
    handle = await host.get("testkit")
    info = await handle.info()
    assert (info.name, info.version, info.protocol_version) == ("testkit", "1.2.3", 1)
    status = await handle.call(lambda c: c.read({"x": 1}))
    assert status is not None and status["echo"] == {"x": 1}
    assert await handle.health()


async def test_the_same_plugin_is_started_once_for_concurrent_callers(host: PluginHost) -> None:
    handles = await asyncio.gather(*(host.get("testkit") for _ in range(10)))
    assert len({id(h) for h in handles}) == 1
    pids = {(await h.call(lambda c: c.read({})))["pid"] for h in handles}  # type: ignore[index]
    assert len(pids) == 1


async def test_several_plugins_start_in_parallel(tmp_path: Path) -> None:
    async with PluginHost(plugin_dirs=[FIXTURE_PLUGINS], health_interval=0) as host:
        handles = await host.start_all(["testkit", "localfile"])
        assert [h.name for h in handles] == ["testkit", "localfile"]
        pids = [h.status()["pid"] for h in handles]
        assert all(pid_alive(p) for p in pids)
    assert not any(pid_alive(p) for p in pids)


async def test_unknown_plugin_suggests_the_closest_name(host: PluginHost) -> None:
    with pytest.raises(PluginNotFound, match="did you mean 'testkit'"):
        await host.get("testkt")


async def test_garbage_on_stdout_is_named(tmp_path: Path) -> None:
    write_plugin(tmp_path, "noisy", "print('hello world'); import time; time.sleep(30)\n")
    async with PluginHost(plugin_dirs=[tmp_path], health_interval=0) as host:
        with pytest.raises(HandshakeError, match="wrote 'hello world' to stdout before"):
            await host.get("noisy")


async def test_exit_before_handshake_carries_the_stderr_tail(tmp_path: Path) -> None:
    script = """
        import sys
        def load_config():
            raise RuntimeError("config file /etc/x is missing")
        load_config()
    """
    write_plugin(tmp_path, "crashy", script)
    async with PluginHost(plugin_dirs=[tmp_path], health_interval=0) as host:
        with pytest.raises(PluginExitedEarly) as info:
            await host.get("crashy")
    text = str(info.value)
    assert "exited with code 1 before it could connect" in text
    # The whole traceback, not just its last line.
    assert "Traceback (most recent call last)" in text
    assert "load_config()" in text
    assert "RuntimeError: config file /etc/x is missing" in text


async def test_handshake_timeout_kills_the_process(tmp_path: Path) -> None:
    script = """
        import os, sys, time
        open(sys.argv[0] + '.pid', 'w').write(str(os.getpid()))
        time.sleep(60)
    """
    write_plugin(tmp_path, "slow", script)
    async with PluginHost(plugin_dirs=[tmp_path], start_timeout=0.5, health_interval=0) as host:
        with pytest.raises(HandshakeTimeout, match=r"did not complete its handshake within 0\.5s"):
            await host.get("slow")
    pid = int((tmp_path / "slow" / "main.py.pid").read_text())
    assert not pid_alive(pid)


async def test_no_common_version_names_both_sides_and_the_fix(tmp_path: Path) -> None:
    # The manifest claims [1]; this core is told it speaks only 2; the plugin refuses.
    async with PluginHost(
        plugin_dirs=[FIXTURE_PLUGINS], versions=(1, 2), health_interval=0
    ) as host:
        assert (await host.get("testkit")).name == "testkit"  # 1 is common: fine
    write_plugin(
        tmp_path,
        "future",
        """
        from plugin_sdk import Plugin, serve
        class Future(Plugin):
            name = "future"
            protocol_versions = (3,)
            async def read(self, options): return {}
        serve(Future)
        """,
        versions="[1, 3]",
    )
    async with PluginHost(plugin_dirs=[tmp_path], versions=(1,), health_interval=0) as host:
        with pytest.raises(IncompatibleVersion) as info:
            await host.get("future")
    assert str(info.value) == (
        "plugin future speaks protocol 3, this core speaks 1: upgrade the core"
    )


async def test_manifest_versions_are_checked_before_launch(tmp_path: Path) -> None:
    write_plugin(tmp_path, "old", "raise SystemExit('must not run')", versions="[0]")
    async with PluginHost(plugin_dirs=[tmp_path], health_interval=0) as host:
        with pytest.raises(
            IncompatibleVersion,
            match="plugin old speaks protocol 0, this core speaks 1: upgrade the plugin",
        ):
            await host.get("old")


def test_parse_handshake_rejects_each_bad_field() -> None:
    ok = parse_handshake("1|1|unix|/tmp/x.sock|grpc|\n", "p", (1,))
    assert (ok.network, ok.address, ok.target) == ("unix", "/tmp/x.sock", "unix:/tmp/x.sock")
    with pytest.raises(IncompatibleVersion, match="handshake format 2"):
        parse_handshake("2|1|unix|/tmp/x|grpc|", "p", (1,))
    with pytest.raises(
        IncompatibleVersion, match="speaks protocol 5, this core speaks 1: upgrade the core"
    ):
        parse_handshake("1|5|unix|/tmp/x|grpc|", "p", (1,))
    with pytest.raises(HandshakeError, match="network 'udp'"):
        parse_handshake("1|1|udp|/tmp/x|grpc|", "p", (1,))
    with pytest.raises(HandshakeError, match="speaks 'netrpc'"):
        parse_handshake("1|1|unix|/tmp/x|netrpc|", "p", (1,))


def test_plugin_without_cookie_explains_itself() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "plugins.localfile"],
        capture_output=True, text=True, timeout=30, cwd=ROOT,
        env={"PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert "DevStream plugin localfile 0.1.0" in proc.stderr
    assert "python -m plugins.localfile --standalone" in proc.stderr


def test_plugin_with_wrong_cookie_refuses_to_serve() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "plugins.localfile"],
        capture_output=True, text=True, timeout=30, cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", MAGIC_COOKIE_KEY: "not-" + MAGIC_COOKIE_VALUE},
    )  # fmt: skip
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert "wrong DEVSTREAM_PLUGIN_MAGIC_COOKIE" in proc.stderr


async def test_plugin_logs_are_relogged_under_its_name(
    host: PluginHost, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    handle = await host.get("testkit")
    await handle.call(lambda c: c.read({"log": "hello-from-plugin"}))
    with pytest.raises(Exception, match="ValueError: kaboom"):
        await handle.call(lambda c: c.read({"raise": "kaboom"}))
    for _ in range(50):
        if any("Traceback" in r.getMessage() for r in caplog.records):
            break
        await asyncio.sleep(0.05)
    mine = [r for r in caplog.records if r.name == "dtm.plugin.testkit"]
    assert any(r.getMessage() == "logged: hello-from-plugin" for r in mine)
    tb = next(r.getMessage() for r in mine if "Traceback" in r.getMessage())
    assert "raise ValueError" in tb and "ValueError: kaboom" in tb
    # The plugin's JSON lines were parsed and re-logged, not shown raw.
    assert not any(r.getMessage().startswith("{") for r in mine)


async def test_exit_code_2_without_the_cookie_text_is_an_ordinary_early_exit(
    tmp_path: Path,
) -> None:
    write_plugin(
        tmp_path, "usage", "import sys; print('usage: bad flag', file=sys.stderr); sys.exit(2)"
    )
    async with PluginHost(plugin_dirs=[tmp_path], health_interval=0) as host:
        with pytest.raises(PluginExitedEarly, match="exited with code 2") as info:
            await host.get("usage")
    assert "usage: bad flag" in str(info.value)


async def test_chained_raw_tracebacks_stay_one_record(tmp_path: Path) -> None:
    script = """
        try:
            {}["missing"]
        except KeyError as exc:
            raise RuntimeError("while loading settings") from exc
    """
    write_plugin(tmp_path, "chained", script)
    async with PluginHost(plugin_dirs=[tmp_path], health_interval=0) as host:
        with pytest.raises(PluginExitedEarly) as info:
            await host.get("chained")
    tail = info.value.stderr_tail
    assert "KeyError: 'missing'" in tail and "RuntimeError: while loading settings" in tail
    process_records = tail.split("\n" + "Traceback")  # one record holds both tracebacks
    assert len(process_records) == 2 and "direct cause" in process_records[0]


def test_reattach_and_remote_settings_are_checked() -> None:
    from core_service.errors import ConfigError
    from core_service.host._host import parse_remotes

    bad_version = '{"p": {"ProtocolVersion": 9, "Addr": {"Network": "unix", "String": "/x"}}}'
    with pytest.raises(IncompatibleVersion, match="plugin p speaks protocol 9, this core speaks 1"):
        PluginHost(reattach=bad_version)
    with pytest.raises(HandshakeError, match=r"needs Addr\.Network and Addr\.String"):
        PluginHost(reattach='{"p": {"Pid": 1}}')
    with pytest.raises(HandshakeError, match="not valid JSON"):
        PluginHost(reattach="{nope")
    assert parse_remotes("a=ipv4:127.0.0.1:1,127.0.0.1:2; b=dns:///b:7000") == {
        "a": "ipv4:127.0.0.1:1,127.0.0.1:2",
        "b": "dns:///b:7000",
    }
    with pytest.raises(ConfigError, match="is not NAME=ADDRESS"):
        parse_remotes("github")
