"""Remote repositories: clones from file:// and http:// URLs (with a password and a proxy),
refreshing a clone, clear errors that never show a password, and /test-connection."""

from __future__ import annotations

import base64
import shutil
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from plugin_sdk import InvalidOptions, PluginUnavailable
from plugin_sdk.testing import run_subtask, serve_in_process
from plugins.gitextractor import GitExtractor
from plugins.gitextractor._source import Target
from tests.plugins.gitextractor._support import git, run_task, sample_repo

PASSWORD = "s3cr@t:pw"  # characters a URL must percent-encode
QUOTED = "s3cr%40t%3Apw"


def bare_copy(tmp_path: Path) -> tuple[Path, Path]:
    """A sample working copy and a bare repository cloned from it, served by the tests."""
    work = sample_repo(tmp_path / "work").path
    bare = tmp_path / "srv" / "src.git"
    git(tmp_path, "clone", "-q", "--bare", str(work), str(bare))
    git(bare, "update-server-info")  # what git's "dumb" HTTP protocol serves
    return work, bare


class DumbHttpGit:
    """Bare repositories under `root` over git's dumb HTTP protocol, behind basic auth.

    It also serves proxy-form requests (`GET http://host/path`), so it can stand in for
    an HTTP proxy in front of a host that does not exist.
    """

    def __init__(self, root: Path, user: str, password: str) -> None:
        self.root = root
        self.expected = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
        self.seen: list[tuple[str, str]] = []  # (host, path) of each request
        self.url = ""
        self._runner: web.AppRunner | None = None

    async def __aenter__(self) -> DumbHttpGit:
        async def handle(request: web.Request) -> web.StreamResponse:
            self.seen.append((request.host, request.path))
            if request.headers.get("Authorization") != self.expected:
                return web.Response(status=401, headers={"WWW-Authenticate": 'Basic realm="git"'})
            file = (self.root / request.path.lstrip("/")).resolve()
            if not file.is_relative_to(self.root) or not file.is_file():
                return web.Response(status=404)
            return web.Response(body=file.read_bytes(), content_type="text/plain")

        app = web.Application()
        app.router.add_route("GET", "/{tail:.*}", handle)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[tuple[Path, Path, DumbHttpGit]]:
    work, bare = bare_copy(tmp_path)
    async with DumbHttpGit(bare.parent.resolve(), "ada", PASSWORD) as server:
        yield work, bare, server


def refs_of(path: Path) -> dict[str, str]:
    out = git(path, "for-each-ref", "--format=%(refname) %(objectname)", "refs/heads", "refs/tags")
    return dict(line.split(" ") for line in out.splitlines())


async def test_clone_from_a_file_url_and_refresh_it(tmp_path: Path) -> None:
    work, bare = bare_copy(tmp_path)
    url = f"file://{bare}"
    async with serve_in_process(GitExtractor()) as client:
        task = await client.prepare_task_data({"url": url})
        clone = Path(task["path"])
        assert clone.is_dir() and not clone.is_relative_to(tmp_path)  # a clone, not the source
        assert (task["repoId"], task["name"]) == (f"gitextractor:GitRepo:0:{url}", "src")
        assert task["params"] == f'{{"RepoId":"gitextractor:GitRepo:0:{url}"}}'
        tables = await run_task(client, {"url": url})
        assert len(tables["commits"]) == int(git(bare, "rev-list", "--all", "--count"))
        refs = {r["id"].removeprefix(f"{task['repoId']}:"): r for r in tables["refs"]}
        assert {name: r["commit_sha"] for name, r in refs.items() if r["ref_type"] == "BRANCH"} \
            == {n: s for n, s in refs_of(bare).items() if n.startswith("refs/heads/")}  # fmt: skip
        assert [n for n, r in refs.items() if r["is_default"]] == ["refs/heads/main"]
        assert tables["repos"][0]["url"] == url

        # A new task for the same URL fetches into the same clone: new commits, a new
        # default branch, deleted branches gone.
        (work / "new.txt").write_text("new\n")
        git(work, "add", "new.txt")
        git(work, "commit", "-q", "-m", "after the first clone")
        git(work, "push", "-q", str(bare), "main")
        git(bare, "symbolic-ref", "HEAD", "refs/heads/feature")
        git(bare, "branch", "-D", "stale")
        again = await client.prepare_task_data({"url": url})
        assert again["path"] == task["path"]
        assert refs_of(clone) == refs_of(bare)
        result = await run_subtask(client, "collect_refs", options={"url": url}, task_data=again)
        default = [r["data"]["ref_name"] for r in result.rows["_raw_gitextractor_refs"]
                   if r["data"]["is_head"]]  # fmt: skip
        assert default == ["refs/heads/feature"]


async def test_subtasks_clone_again_when_the_prepared_clone_is_gone(tmp_path: Path) -> None:
    _, bare = bare_copy(tmp_path)
    options = {"url": f"file://{bare}"}
    async with serve_in_process(GitExtractor()) as prepared_elsewhere:
        task = await prepared_elsewhere.prepare_task_data(options)
    # Another replica prepared the task, or this one restarted: the clone is not here.
    shutil.rmtree(task["path"])
    async with serve_in_process(GitExtractor()) as client:
        result = await run_subtask(client, "collect_commits", options=options, task_data=task)
    assert result.records == int(git(bare, "rev-list", "--all", "--count"))


async def test_http_clone_with_a_password_through_a_proxy(
    served: tuple[Path, Path, DumbHttpGit],
) -> None:
    _, bare, server = served
    # repo.invalid does not exist: only the proxy can answer for it.
    url = f"http://ada:{QUOTED}@repo.invalid/src.git"
    async with serve_in_process(GitExtractor()) as client:
        task = await client.prepare_task_data({"url": url, "proxy": server.url})
        assert task["repoId"] == "gitextractor:GitRepo:0:http://repo.invalid/src.git"
        clone = Path(task["path"])
        assert refs_of(clone) == refs_of(bare)
        # The password is in no file the clone keeps.
        for file in clone.rglob("*"):
            if file.is_file() and file.stat().st_size < 1 << 20:
                assert PASSWORD.encode() not in file.read_bytes()
                assert QUOTED.encode() not in file.read_bytes()
    assert server.seen and all(host == "repo.invalid" for host, _ in server.seen)


async def test_clone_errors_name_the_url_but_never_the_password(
    served: tuple[Path, Path, DumbHttpGit],
) -> None:
    _, _, server = served
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        closed = sock.getsockname()[1]
    async with serve_in_process(GitExtractor()) as client:
        url = f"http://ada:{QUOTED}@127.0.0.1:{closed}/src.git"
        with pytest.raises(PluginUnavailable) as unreachable:  # retriable: the network
            await client.prepare_task_data({"url": url})
        wrong = f"{server.url.replace('://', '://ada:wrong-' + QUOTED + '@')}/src.git"
        with pytest.raises(InvalidOptions) as refused:  # not retriable: the credentials
            await client.prepare_task_data({"url": wrong})
        missing = f"{server.url.replace('://', f'://ada:{QUOTED}@')}/nothing.git"
        with pytest.raises(InvalidOptions) as absent:
            await client.prepare_task_data({"url": missing})
    assert f"cannot clone http://127.0.0.1:{closed}/src.git" in str(unreachable.value)
    assert f"cannot clone {server.url}/src.git" in str(refused.value)
    assert f"cannot clone {server.url}/nothing.git" in str(absent.value)
    for error in (unreachable.value, refused.value, absent.value):
        text = str(error) + repr(error.details)
        assert "s3cr" not in text and "ada:" not in text


async def test_test_connection(tmp_path: Path, served: tuple[Path, Path, DumbHttpGit]) -> None:
    work, bare, server = served
    listed = [line for line in git(work, "ls-remote", str(work)).splitlines()
              if not line.endswith("^{}")]  # fmt: skip

    async def call(body: Any, path: str = "/test-connection") -> tuple[int, Any]:
        response = await client.handle_api("POST", path, body=body)
        return response.status, response.body

    async with serve_in_process(GitExtractor()) as client:
        assert await call({"url": str(work)}) == (
            200, {"ok": True, "refs": len(listed), "message": f"{len(listed)} refs at {work}"},
        )  # fmt: skip
        status, body = await call({"url": f"file://{bare}"})
        assert (status, body["ok"], body["refs"]) == (200, True, len(refs_of(bare)) + 1)  # HEAD
        authed = server.url.replace("://", f"://ada:{QUOTED}@") + "/src.git"
        assert (await call({"url": authed}))[0] == 200
        status, body = await call({"url": authed.replace(QUOTED, "nope")})
        assert status == 400 and body["ok"] is False and "nope" not in body["message"]
        status, body = await call({"url": str(tmp_path / "nowhere")})
        assert status == 400 and "does not appear to be a git repository" in body["message"]
        assert (await call({}))[0] == 400
        assert (await call({"url": "--upload-pack=touch /tmp/x"}))[0] == 400
        assert (await call({"url": str(work)}, "/nothing"))[0] == 404


@pytest.mark.parametrize(
    ("given", "url", "name", "user", "password"),
    [
        ("https://tok@github.com/apache/devlake.git", "https://github.com/apache/devlake.git",
         "devlake", "tok", ""),
        ("https://u:p%40ss@h.example/a/b/", "https://h.example/a/b/", "b", "u", "p@ss"),
        ("ssh://git:pw@h.example:2222/a/b.git", "ssh://git@h.example:2222/a/b.git", "b", "", ""),
        ("git@github.com:apache/devlake.git", "git@github.com:apache/devlake.git", "devlake",
         "", ""),
        ("http://[::1]:8080/r.git", "http://[::1]:8080/r.git", "r", "", ""),
        ("file:///srv/git/x.git", "file:///srv/git/x.git", "x", "", ""),
    ],
)  # fmt: skip
def test_urls_lose_their_credentials(
    given: str, url: str, name: str, user: str, password: str
) -> None:
    target = Target.from_options({"url": given}, {"id": 3}, "gitextractor")
    assert (target.url, target.name, target.remote) == (url, name, True)
    assert (target.username, target.password) == (user, password)
    assert target.repo_id == f"gitextractor:GitRepo:3:{url}"


def test_local_paths_are_made_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    target = Target.from_options({"url": "repo/.git", "name": ""}, {}, "gitextractor")
    assert (target.url, target.name, target.remote) == (str(tmp_path / "repo/.git"), "repo", False)
