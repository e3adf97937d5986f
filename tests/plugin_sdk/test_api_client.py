"""ApiClient against the fake GitHub and GitLab: auth, paging, retries, rate limits, errors."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from email.utils import formatdate
from urllib.parse import quote

import pytest
from aiohttp import web

from plugin_sdk import (
    AlreadyExists,
    ApiClient,
    HttpResponse,
    InvalidOptions,
    PermissionDenied,
    PluginError,
    PluginInternalError,
    PluginUnavailable,
    ResourceNotFound,
)
from plugin_sdk._api_client import _reset_wait, _retry_after
from tests.fakes import FakeGitHub, FakeGitLab, blob_sha

FAST = {"backoff_base": 0.01, "backoff_max": 0.05}


@pytest.fixture
async def gh() -> AsyncIterator[FakeGitHub]:
    async with FakeGitHub() as fake:
        yield fake


@pytest.fixture
async def api(gh: FakeGitHub) -> AsyncIterator[ApiClient]:
    async with ApiClient(gh.url, token=gh.token, **FAST) as client:
        yield client


@contextlib.asynccontextmanager
async def serve(*routes: web.RouteDef) -> AsyncIterator[str]:
    """A throwaway upstream for behaviours the fakes have no reason to offer."""
    app = web.Application()
    app.add_routes(routes)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    host, port = runner.addresses[0][:2]
    try:
        yield f"http://{host}:{port}"
    finally:
        await runner.cleanup()


def pages_of(gh: FakeGitHub, path: str) -> list[str | None]:
    return [r.query.get("page") for r in gh.requests_to(path)]


# -- auth and errors --------------------------------------------------------------------


async def test_token_is_sent_in_the_authorization_header(gh: FakeGitHub) -> None:
    for scheme in ("Bearer", "token"):
        async with ApiClient(gh.url, token=gh.token, auth_scheme=scheme) as api:
            resp = await api.get("/user")
        assert resp.status == 200 and resp.body["login"] == "octocat"
        assert gh.requests[-1].headers["Authorization"] == f"{scheme} ***"
        assert gh.requests[-1].headers["User-Agent"] == "devstream"


async def test_bad_token_is_permission_denied(gh: FakeGitHub) -> None:
    async with ApiClient(gh.url, token="ghp_wrong_token_value", **FAST) as api:
        with pytest.raises(PermissionDenied) as err:
            await api.get("/user")
    assert err.value.details["status"] == 401
    assert "-> 401 Unauthorized: " in str(err.value) and "Bad credentials" in str(err.value)
    assert len(gh.requests) == 1  # never retried


async def test_404_is_resource_not_found_with_the_url(gh: FakeGitHub, api: ApiClient) -> None:
    with pytest.raises(ResourceNotFound) as err:
        await api.get("/repos/octocat/nothing")
    url = f"{gh.url}/repos/octocat/nothing"
    assert str(err.value).startswith(f"GET {url} -> 404 Not Found: {{")
    assert err.value.details == {"status": 404, "url": url, "method": "GET"}
    assert await api.get_or_none("/repos/octocat/nothing") is None


async def test_statuses_map_onto_the_error_tree(gh: FakeGitHub, api: ApiClient) -> None:
    await api.post("/user/repos", json={"name": "dup"})
    with pytest.raises(InvalidOptions, match=r"422 Unprocessable Entity.*already exists"):
        await api.post("/user/repos", json={"name": "dup"})
    body = {"message": "m", "content": "", "sha": "0" * 40}
    await api.put("/repos/octocat/dup/contents/a.txt", json={"message": "m", "content": ""})
    with pytest.raises(AlreadyExists, match="409 Conflict"):
        await api.put("/repos/octocat/dup/contents/a.txt", json=body)
    resp = await api.get("/repos/octocat/nothing", ok_statuses={404})
    assert resp.status == 404 and resp.body["message"] == "Not Found"


async def test_token_never_leaks_into_errors_or_logs(
    gh: FakeGitHub, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="plugin_sdk.api")
    token = "ghp_Zq8dVx1stinctive93Tok3n"
    gh.token = token

    async def echo(request: web.Request) -> web.Response:  # a server that echoes credentials
        return web.Response(status=400, text=f"bad request from {request.headers['Authorization']}")

    errors: list[PluginError] = []
    async with serve(web.get("/echo", echo)) as echo_url:
        async with ApiClient(gh.url, token=token, max_retries=2, **FAST) as api:
            gh.fail_next(5)
            for call in (
                api.get("/user"),  # retried, then gives up
                api.get("/repos/octocat/none", params={"access_token": token}),
            ):
                with pytest.raises(PluginError) as err:
                    await call
                errors.append(err.value)
        async with ApiClient(echo_url, token=token) as api:
            with pytest.raises(InvalidOptions) as err:
                await api.get("/echo")
            errors.append(err.value)
    assert "access_token=***" in str(errors[1]) and "Bearer ***" in str(errors[2])
    texts = [str(e) + repr(e.details) for e in errors] + [r.getMessage() for r in caplog.records]
    assert caplog.records and not [t for t in texts if token in t]


# -- pagination -------------------------------------------------------------------------


async def test_link_pagination_reads_each_page_once(gh: FakeGitHub, api: ApiClient) -> None:
    for i in range(250):
        gh.add_issue("octocat/big", f"issue {i}")
    sizes = [
        len(page.body)
        async for page in api.paginate("/repos/octocat/big/issues", params={"state": "all"})
    ]
    assert sizes == [100, 100, 50]
    assert pages_of(gh, "/repos/octocat/big/issues") == [None, "2", "3"]
    assert all(r.query["state"] == "all" for r in gh.requests)  # the links keep the query


async def test_page_pagination_stops_at_a_short_or_empty_page(
    gh: FakeGitHub, api: ApiClient
) -> None:
    for i in range(250):
        gh.add_commit("octocat/log", f"commit {i}")
    pages = [p async for p in api.paginate("/repos/octocat/log/commits", style="page")]
    assert [len(p.body) for p in pages] == [100, 100, 50]
    for i in range(50):
        gh.add_commit("octocat/log", f"more {i}")
    gh.requests.clear()
    pages = [p async for p in api.paginate("/repos/octocat/log/commits", style="page")]
    assert [len(p.body) for p in pages] == [100, 100, 100, 0]
    assert pages_of(gh, "/repos/octocat/log/commits") == ["1", "2", "3", "4"]


async def test_page_pagination_reads_items_under_a_key(gh: FakeGitHub, api: ApiClient) -> None:
    for _ in range(5):
        gh.add_run("octocat/ci")
    pages = [
        p.body["workflow_runs"]
        async for p in api.paginate(
            "/repos/octocat/ci/actions/runs", style="page", per_page=2, items_key="workflow_runs"
        )
    ]
    assert [len(p) for p in pages] == [2, 2, 1]
    assert len({run["id"] for page in pages for run in page}) == 5


async def test_max_pages_stops_early(gh: FakeGitHub, api: ApiClient) -> None:
    for i in range(30):
        gh.add_issue("octocat/some", f"issue {i}")
    pages = [p async for p in api.paginate("/repos/octocat/some/issues", per_page=5, max_pages=2)]
    assert len(pages) == 2 and len(gh.requests_to("/repos/octocat/some/issues")) == 2


async def test_cursor_pagination() -> None:
    items = list(range(7))

    async def listing(request: web.Request) -> web.Response:
        start = int(request.query.get("after", "0"))
        chunk = items[start : start + 3]
        nxt = str(start + 3) if start + 3 < len(items) else None
        return web.json_response({"values": chunk, "next": nxt})

    async with serve(web.get("/things", listing)) as url, ApiClient(url) as api:
        got = [
            p.body["values"]
            async for p in api.paginate(
                "/things", style="cursor", cursor_param="after", per_page=0,
                next_cursor=lambda r: r.body["next"],
            )
        ]  # fmt: skip
    assert got == [[0, 1, 2], [3, 4, 5], [6]]


async def test_pagination_loops_are_detected() -> None:
    async def ping_pong(request: web.Request) -> web.Response:
        other = "2" if request.query.get("page", "1") == "1" else "1"
        link = f'<{request.url.update_query(page=other)}>; rel="next"'
        return web.json_response([1], headers={"Link": link})

    async def same_page(request: web.Request) -> web.Response:
        return web.json_response([1, 2])  # ignores `page`

    routes = (web.get("/link", ping_pong), web.get("/page", same_page))
    async with serve(*routes) as url, ApiClient(url) as api:
        with pytest.raises(PluginInternalError, match=r"pagination loop at .*/link"):
            async for _ in api.paginate("/link"):
                pass
        with pytest.raises(PluginInternalError, match="pagination loop at page 2"):
            async for _ in api.paginate("/page", style="page", per_page=2):
                pass
        with pytest.raises(PluginInternalError, match=r"pagination loop .*\(cursor=abc\)"):
            async for _ in api.paginate("/page", style="cursor", next_cursor=lambda r: "abc"):
                pass
        with pytest.raises(ValueError, match="needs next_cursor"):
            async for _ in api.paginate("/page", style="cursor"):
                pass


# -- retries ----------------------------------------------------------------------------


async def test_server_errors_are_retried_then_succeed(gh: FakeGitHub, api: ApiClient) -> None:
    gh.fail_next(3, status=502)
    resp = await api.get("/user")
    assert resp.status == 200
    assert len(gh.requests_to("/user")) == 4
    assert api.stats["retries"] == 3 and api.stats["requests"] == 4


async def test_exhausted_retries_are_retriable_unavailable(gh: FakeGitHub) -> None:
    gh.fail_next(10, status=503)
    async with ApiClient(gh.url, token=gh.token, max_retries=2, **FAST) as api:
        with pytest.raises(PluginUnavailable) as err:
            await api.get("/user")
    assert err.value.retriable is True
    assert "503 Service Unavailable" in str(err.value) and "gave up after 2 retries" in str(
        err.value
    )
    assert len(gh.requests) == 3


async def test_a_dropped_connection_is_retried(gh: FakeGitHub, api: ApiClient) -> None:
    gh.drop_next(3)
    resp = await api.get("/user")
    assert resp.status == 200
    assert len(gh.requests_to("/user")) == 4
    assert api.stats["retries"] >= 1


async def test_a_post_the_server_may_have_acted_on_is_not_resent(
    gh: FakeGitHub, api: ApiClient
) -> None:
    gh.fail_next(1, status=502)
    with pytest.raises(PluginUnavailable, match="not retried: POST is not idempotent"):
        await api.post("/user/repos", json={"name": "once"})
    gh.drop_next(1)
    with pytest.raises(PluginUnavailable, match="ServerDisconnectedError"):
        await api.post("/user/repos", json={"name": "once"})
    assert len(gh.requests_to("/user/repos")) == 2
    gh.secondary_limit_next(1, retry_after=0.05)  # a refusal: safe to send again
    assert (await api.post("/user/repos", json={"name": "once"})).status == 201


async def test_a_timeout_is_retried() -> None:
    calls = 0

    async def slow_once(request: web.Request) -> web.Response:
        nonlocal calls
        calls += 1
        if calls == 1:
            await asyncio.sleep(0.3)
        return web.json_response({"calls": calls})

    async with serve(web.get("/slow", slow_once)) as url:
        async with ApiClient(url, timeout=0.1, **FAST) as api:
            resp = await api.get("/slow")
    assert resp.body == {"calls": 2} and api.stats["retries"] == 1


# -- rate limits ------------------------------------------------------------------------


async def test_secondary_rate_limit_is_waited_out(gh: FakeGitHub, api: ApiClient) -> None:
    gh.secondary_limit_next(1, retry_after=1)
    started = time.monotonic()
    resp = await api.get("/user")
    elapsed = time.monotonic() - started
    assert resp.status == 200
    assert api.stats["rate_limited_waits"] == 1 and api.stats["retries"] == 1
    assert api.stats["rate_limited_seconds"] >= 0.99
    assert elapsed >= 0.99  # asyncio's timer may fire within its clock resolution


async def test_retry_after_beyond_the_cap_raises_at_once(gh: FakeGitHub) -> None:
    gh.secondary_limit_next(1, retry_after=300)
    async with ApiClient(gh.url, token=gh.token, max_retry_after=5, **FAST) as api:
        started = time.monotonic()
        with pytest.raises(PluginUnavailable) as err:
            await api.get("/user")
        assert time.monotonic() - started < 5
        assert "wait 300s" in str(err.value) and "max_retry_after=5s" in str(err.value)
        assert "retry after 20" in str(err.value)  # an ISO timestamp
        assert err.value.details["retry_after"] == 300 and err.value.retriable
        with pytest.raises(PluginUnavailable, match=r"rate limited for 30\ds more"):
            await api.get("/user")  # fails fast too: the limit belongs to the token
    assert len(gh.requests) == 1


async def test_remaining_zero_waits_for_the_reset_before_the_next_request(
    gh: FakeGitHub, api: ApiClient
) -> None:
    gh.rate_limit_remaining = 1
    gh.rate_limit_reset = int(time.time()) + 2  # a whole second away at least
    first = await api.get("/user")
    assert first.headers["X-RateLimit-Remaining"] == "0"
    second = await api.get("/user")
    assert second.status == 200 and second.headers["X-RateLimit-Remaining"] == "4999"
    assert len(gh.requests) == 2  # waited instead of being refused
    assert api.stats["rate_limited_waits"] == 1


async def test_primary_rate_limit_403_waits_for_the_reset(gh: FakeGitHub, api: ApiClient) -> None:
    gh.rate_limit_remaining = 0
    gh.rate_limit_reset = int(time.time()) + 2  # a whole second away at least
    resp = await api.get("/user")
    assert resp.status == 200
    assert len(gh.requests) == 2 and api.stats["rate_limited_waits"] == 1


async def test_a_far_reset_is_reported_not_slept(gh: FakeGitHub, api: ApiClient) -> None:
    gh.rate_limit_remaining = 0
    gh.rate_limit_reset = int(time.time()) + 3600
    with pytest.raises(PluginUnavailable, match=r"wait 3\d\d\ds, longer than max_retry_after"):
        await api.get("/user")


async def test_403_is_a_rate_limit_only_when_github_says_so() -> None:
    async def forbidden(request: web.Request) -> web.Response:
        message = request.query.get("message", "Resource not accessible by integration")
        return web.json_response({"message": message}, status=403)

    async with serve(web.get("/f", forbidden)) as url:
        async with ApiClient(url, max_retry_after=5, **FAST) as api:
            with pytest.raises(PermissionDenied, match=r"403 Forbidden: .*not accessible"):
                await api.get("/f")
            # GitHub: a secondary limit without Retry-After means "wait at least a minute".
            with pytest.raises(PluginUnavailable, match="wait 60s"):
                await api.get("/f", params={"message": "You have exceeded a secondary rate limit"})


def test_retry_after_and_reset_headers_are_read_on_the_server_clock() -> None:
    now = time.time()
    server_date = formatdate(now - 100, usegmt=True)  # the server's clock lags ours by 100s
    later = formatdate(now - 100 + 30, usegmt=True)
    resp = HttpResponse(429, {"Retry-After": later, "Date": server_date}, None, "", "http://x/")
    assert 29 <= _retry_after(resp) <= 31  # type: ignore[operator]
    reset = HttpResponse(200, {"X-RateLimit-Reset": str(int(now - 100 + 20)),
                               "Date": server_date}, None, "", "http://x/")  # fmt: skip
    assert 18 <= _reset_wait(reset) <= 21  # type: ignore[operator]
    delta = HttpResponse(200, {"RateLimit-Reset": "42"}, None, "", "http://x/")
    assert _reset_wait(delta) == 42  # the IETF draft sends seconds, not an epoch


async def test_rate_limit_per_hour_spaces_requests(gh: FakeGitHub) -> None:
    async with ApiClient(gh.url, token=gh.token, rate_limit_per_hour=36_000) as api:
        started = time.monotonic()
        await asyncio.gather(*(api.get("/user") for _ in range(4)))
    assert time.monotonic() - started >= 0.29  # three intervals of 0.1s


async def test_concurrency_bounds_requests_in_flight() -> None:
    in_flight = peak = 0

    async def slow(request: web.Request) -> web.Response:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        await asyncio.sleep(0.02)
        in_flight -= 1
        return web.json_response({})

    async with serve(web.get("/slow", slow)) as url, ApiClient(url, concurrency=3) as api:
        await asyncio.gather(*(api.get("/slow") for _ in range(12)))
    assert peak == 3


# -- URLs and lifecycle -----------------------------------------------------------------


async def test_paths_params_and_credentials_stay_on_the_base_origin(gh: FakeGitHub) -> None:
    seen: list[str | None] = []

    async def other(request: web.Request) -> web.Response:
        seen.append(request.headers.get("Authorization"))
        return web.json_response(dict(request.query))

    async with serve(web.get("/q", other)) as other_url:
        async with ApiClient(gh.url + "/", token=gh.token) as api:
            assert (await api.get(gh.url + "/user")).status == 200  # absolute, same origin
            assert gh.requests[-1].headers["Authorization"] == "Bearer ***"
            resp = await api.get(f"{other_url}/q?a=1", params={"b": True, "c": None, "d": 2})
    assert resp.body == {"a": "1", "b": "true", "d": "2"}
    assert seen == [None]  # another host never sees the token


async def test_aclose_is_idempotent(gh: FakeGitHub) -> None:
    never_opened = ApiClient(gh.url, token=gh.token)
    await never_opened.aclose()
    await never_opened.aclose()
    api = ApiClient(gh.url, token=gh.token)
    async with api:
        await api.get("/user")
    await api.aclose()
    await api.aclose()
    with pytest.raises(RuntimeError, match="closed"):  # used once, like httpx's clients
        await api.get("/user")


def test_constructor_rejects_bad_settings() -> None:
    with pytest.raises(InvalidOptions, match="not an http"):
        ApiClient("api.github.com")
    with pytest.raises(InvalidOptions, match="not both"):
        ApiClient("https://x", token="t0ken", basic_auth=("u", "pw"))


def test_http_response_links() -> None:
    link = '<https://x/a?page=2>; rel="next", </a?page=9>; rel="last prev"'
    resp = HttpResponse(200, {"Link": link}, None, "", "https://x/a")
    assert resp.link("next") == "https://x/a?page=2"
    assert resp.link("last") == resp.link("prev") == "https://x/a?page=9"
    assert resp.link("first") is None


# -- the fakes behave like the services -------------------------------------------------


async def test_fake_github_contents_api_lifecycle(gh: FakeGitHub, api: ApiClient) -> None:
    repo = (await api.post("/user/repos", json={"name": "site", "auto_init": True})).body
    assert repo["full_name"] == "octocat/site" and repo["owner"]["login"] == "octocat"
    assert repo["html_url"] == f"{gh.root}/octocat/site" and repo["default_branch"] == "main"
    path = "/repos/octocat/site/contents/docs/index.md"

    def put(text: str, **extra: str) -> dict[str, str]:
        return {"message": "m", "content": base64.b64encode(text.encode()).decode(), **extra}

    created = await api.put(path, json=put("v1"))
    assert created.status == 201 and created.body["content"]["sha"] == blob_sha(b"v1")
    got = (await api.get(path)).body
    assert base64.b64decode(got["content"]) == b"v1" and got["sha"] == blob_sha(b"v1")
    with pytest.raises(InvalidOptions, match='\\\\"sha\\\\" wasn'):
        await api.put(path, json=put("v2"))  # updating needs the current sha
    with pytest.raises(AlreadyExists, match="409"):
        await api.put(path, json=put("v2", sha=blob_sha(b"stale")))
    updated = await api.put(path, json=put("v2", sha=got["sha"]))
    assert updated.status == 200 and updated.body["content"]["sha"] == blob_sha(b"v2")
    gh.add_commit("octocat/site", "on dev", files={"docs/index.md": "dev"}, branch="dev")
    assert base64.b64decode((await api.get(path, params={"ref": "dev"})).body["content"]) == b"dev"
    tree = (await api.get("/repos/octocat/site/git/trees/main", params={"recursive": 1})).body
    assert {(e["type"], e["path"]) for e in tree["tree"]} == {
        ("blob", "README.md"), ("tree", "docs"), ("blob", "docs/index.md"),
    }  # fmt: skip
    with pytest.raises(InvalidOptions):
        await api.delete(path, json={"message": "rm"})
    await api.delete(path, json={"message": "rm", "sha": blob_sha(b"v2")})
    assert await api.get_or_none(path) is None
    commits = (await api.get("/repos/octocat/site/commits")).body
    assert [c["commit"]["message"] for c in commits] == ["rm", "m", "m", "Initial commit"]
    assert (await api.delete("/repos/octocat/site")).status == 204
    with pytest.raises(ResourceNotFound):
        await api.get("/repos/octocat/site")


async def test_fake_github_issues_include_pulls_and_honour_since(
    gh: FakeGitHub, api: ApiClient
) -> None:
    gh.add_issue("o/r", "old", updated_at="2024-01-01T00:00:00Z", created_at="2024-01-01T00:00:00Z")
    gh.add_issue("o/r", "closed", state="closed", created_at="2024-02-01T00:00:00Z")
    pull = gh.add_pull("o/r", "feature", commits=["one", "two"], merged_at="2024-03-01T00:00:00Z")
    everything = (await api.get("/repos/o/r/issues", params={"state": "all"})).body
    assert [i["title"] for i in everything] == ["feature", "closed", "old"]
    assert "pull_request" in everything[0] and "pull_request" not in everything[1]
    since = await api.get("/repos/o/r/issues", params={"state": "all", "since": "2024-01-15"})
    assert [i["title"] for i in since.body] == ["feature", "closed"]
    open_only = (await api.get("/repos/o/r/issues")).body  # state=open by default
    assert [i["title"] for i in open_only] == ["old"]
    pulls = (await api.get("/repos/o/r/pulls", params={"state": "closed"})).body
    assert pulls[0]["number"] == pull["number"] == 3 and pulls[0]["merged_at"]
    commits = (await api.get(f"/repos/o/r/pulls/{pull['number']}/commits")).body
    assert [c["commit"]["message"] for c in commits] == ["one", "two"]


async def test_fake_gitlab_files_and_projects() -> None:
    async with FakeGitLab() as gl:
        headers = {"PRIVATE-TOKEN": gl.token}
        async with ApiClient(gl.url, headers=headers, **FAST) as api:
            group = gl.add_group("platform")
            project = await api.post("/projects", json={"name": "Svc", "namespace_id": group["id"]})
            assert project.status == 201
            assert project.body["path_with_namespace"] == "platform/svc"
            pid = quote("platform/svc", safe="")
            path = f"/projects/{pid}/repository/files/{quote('src/app.py', safe='')}"
            write = {"branch": "main", "commit_message": "add", "content": "print(1)"}
            assert (await api.post(path, json=write)).status == 201
            with pytest.raises(InvalidOptions, match="A file with this name already exists"):
                await api.post(path, json=write)
            got = (await api.get(path, params={"ref": "main"})).body
            assert base64.b64decode(got["content"]) == b"print(1)"
            assert got["blob_id"] == blob_sha(b"print(1)") and got["last_commit_id"]
            stale = {**write, "content": "print(2)", "last_commit_id": "0" * 40}
            with pytest.raises(InvalidOptions, match="changed since you started"):
                await api.put(path, json=stale)
            await api.put(path, json={**stale, "last_commit_id": got["last_commit_id"]})
            gl.throttle_next(1, retry_after=0.05)
            await api.delete(path, json={"branch": "main", "commit_message": "rm"})
            with pytest.raises(InvalidOptions, match="doesn't exist"):
                await api.put(path, json=write)
            for i in range(45):
                gl.add_commit("platform/svc", f"c{i}")
            pages = [p async for p in api.paginate(f"/projects/{pid}/repository/commits")]
            assert [len(p.body) for p in pages] == [48]  # 45 + add, update, rm
            pages = [
                p async for p in api.paginate(f"/projects/{pid}/repository/commits", per_page=20)
            ]
            assert [p.headers["X-Page"] for p in pages] == ["1", "2", "3"]
            assert pages[0].headers["X-Total"] == "48" and "RateLimit-Remaining" in pages[0].headers
            assert (await api.delete(f"/projects/{project.body['id']}")).status == 202
            with pytest.raises(ResourceNotFound, match="404 Project Not Found"):
                await api.get(f"/projects/{pid}")
        assert all(r.headers.get("PRIVATE-TOKEN") == "***" for r in gl.requests)
