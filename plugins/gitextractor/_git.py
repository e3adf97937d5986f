"""Running the real `git` binary: short commands captured, long ones streamed piece by piece.

Every git process runs in a session of its own: with no controlling terminal, ssh or a
credential prompt fails at once instead of waiting for a person who is not there, and the
whole process group (git, ssh, remote helpers) is killed when the caller stops reading or
is cancelled. Configuration reaches git through GIT_CONFIG_* variables rather than `-c` in
argv, so a proxy's or a credential helper's settings never show in a process list.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
from collections.abc import AsyncGenerator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from plugin_sdk import PluginUnavailable

# Variables that would point git at another repository than the one we name.
_REPO_ENV = frozenset(
    {
        "GIT_DIR",
        "GIT_WORK_TREE",
        "GIT_INDEX_FILE",
        "GIT_OBJECT_DIRECTORY",
        "GIT_ALTERNATE_OBJECT_DIRECTORIES",
        "GIT_COMMON_DIR",
        "GIT_NAMESPACE",
        "GIT_PREFIX",
    }
)
# Settings that change what `git log` prints, pinned so a person's ~/.gitconfig cannot
# break the parser (signatures) or change the numbers (root diffs, diff algorithm).
READ_CONFIG: tuple[tuple[str, str], ...] = (
    ("log.showSignature", "false"),
    ("log.showRoot", "true"),
    ("diff.algorithm", "myers"),
)
_CHUNK = 1 << 16
_STDERR_TAIL = 4000  # bytes of stderr kept for an error message

Config = Sequence[tuple[str, str]]


class GitFailed(Exception):
    """A git command exited with an error; `stderr` holds the end of what it said."""

    def __init__(self, args: Sequence[str], returncode: int, stderr: str) -> None:
        self.command = next((a for a in args if not a.startswith("-")), "git")
        self.returncode = returncode
        self.stderr = stderr
        super().__init__(f"`git {self.command}` exited with {returncode}: {stderr}")


def _environment(config: Config, extra: Mapping[str, str] | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _REPO_ENV}
    env["GIT_TERMINAL_PROMPT"] = "0"
    env["LC_ALL"] = "C"  # git's messages in one language, as they are shown to people
    # Keep the configuration the environment already passes; ours comes after it.
    first = int(env.get("GIT_CONFIG_COUNT") or 0)
    for i, (key, value) in enumerate(config, start=first):
        env[f"GIT_CONFIG_KEY_{i}"], env[f"GIT_CONFIG_VALUE_{i}"] = key, value
    env["GIT_CONFIG_COUNT"] = str(first + len(config))
    env.update(extra or {})
    return env


async def _spawn(
    args: Sequence[str],
    cwd: Path,
    config: Config,
    env: Mapping[str, str] | None,
    stdin: bool,
) -> asyncio.subprocess.Process:
    exe = shutil.which("git")
    if exe is None:
        raise PluginUnavailable("the `git` program is not on PATH; install git and retry")
    return await asyncio.create_subprocess_exec(
        exe,
        *args,
        cwd=cwd,
        env=_environment(config, env),
        stdin=asyncio.subprocess.PIPE if stdin else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        start_new_session=True,
    )


async def _stop(proc: asyncio.subprocess.Process) -> None:
    """Kill the process group if git still runs (the caller gave up on it), then reap it.

    Reading its pipes to their end (short: the writers are dead) is what lets asyncio
    close them; a pipe paused while full would otherwise stay open until collected.
    """
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
    await proc.communicate()


async def run(
    *args: str,
    cwd: Path,
    config: Config = (),
    env: Mapping[str, str] | None = None,
    input: bytes | None = None,
) -> str:
    """Run git to the end for a short answer; raise GitFailed when it fails."""
    proc = await _spawn(args, cwd, config, env, input is not None)
    try:
        out, err = await proc.communicate(input)
    finally:
        await _stop(proc)
    if proc.returncode:
        raise GitFailed(args, proc.returncode, _tail(err))
    return out.decode("utf-8", "replace")


async def stream(
    *args: str,
    cwd: Path,
    sep: bytes,
    config: Config = (),
    input: bytes | None = None,
) -> AsyncGenerator[str, None]:
    """Yield git's output split at `sep` while git produces it, never the whole of it.

    Reading only as fast as the caller consumes leaves git blocked on a full pipe when
    the caller is slow, so memory stays at one chunk plus one piece. Close the generator
    (`contextlib.aclosing`) to stop early: git is then killed.
    """
    proc = await _spawn(args, cwd, config, None, input is not None)
    assert proc.stdout is not None and proc.stderr is not None
    stderr = asyncio.ensure_future(_drain(proc.stderr))
    try:
        if input is not None:
            await _feed(proc, input)
        pending = bytearray()
        while chunk := await proc.stdout.read(_CHUNK):
            pending += chunk
            start = 0
            while (end := pending.find(sep, start)) >= 0:
                yield pending[start:end].decode("utf-8", "replace")
                start = end + 1
            del pending[:start]
        if pending:
            yield pending.decode("utf-8", "replace")
        code = await proc.wait()
        if code:
            raise GitFailed(args, code, _tail(await stderr))
    finally:
        stderr.cancel()  # _stop reads what is left: one reader at a time
        with contextlib.suppress(asyncio.CancelledError):
            await stderr
        await _stop(proc)


async def _feed(proc: asyncio.subprocess.Process, data: bytes) -> None:
    # git reads all of stdin (`--stdin`) before it writes anything, so writing it whole
    # first cannot deadlock; a git that dies early is reported by its exit status.
    assert proc.stdin is not None
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
        proc.stdin.write(data)
        await proc.stdin.drain()
    proc.stdin.close()


async def _drain(reader: asyncio.StreamReader) -> bytes:
    """Read stderr as it comes (a full stderr pipe would stall git), keeping only its end."""
    kept = b""
    while chunk := await reader.read(_CHUNK):
        kept = (kept + chunk)[-_STDERR_TAIL:]
    return kept


def _tail(err: bytes) -> str:
    return err[-_STDERR_TAIL:].decode("utf-8", "replace").strip()


@dataclass(frozen=True)
class Repo:
    """A git directory (bare, or the .git of a working copy) that the subtasks read."""

    git_dir: Path

    def _args(self, args: Sequence[str]) -> list[str]:
        # An explicit --git-dir: git never searches upwards into some other repository.
        return [f"--git-dir={self.git_dir}", *args]

    async def run(self, *args: str, input: bytes | None = None) -> str:
        return await run(*self._args(args), cwd=self.git_dir, config=READ_CONFIG, input=input)

    def stream(
        self, *args: str, sep: bytes, input: bytes | None = None
    ) -> AsyncGenerator[str, None]:
        return stream(*self._args(args), cwd=self.git_dir, sep=sep, config=READ_CONFIG, input=input)
