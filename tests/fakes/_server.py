"""What every fake upstream API shares: a real aiohttp server on port 0, a request log, faults."""

from __future__ import annotations

import base64
import math
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NamedTuple, Self

from aiohttp import web

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
# Headers whose values are credentials: the log keeps the scheme, never the value.
_SECRET_HEADERS = ("authorization", "private-token", "job-token")


class ApiError(Exception):
    """Raised by a handler: the fake answers `status` with `payload` as JSON (or text)."""

    def __init__(self, status: int, payload: Any) -> None:
        super().__init__(status, payload)
        self.status = status
        self.payload = payload

    def response(self) -> web.Response:
        if isinstance(self.payload, str):
            return web.Response(status=self.status, text=self.payload)
        return web.json_response(self.payload, status=self.status)


class RecordedRequest(NamedTuple):
    """One request as the fake saw it (faulted ones included)."""

    method: str
    path: str  # as sent on the wire, percent-escapes kept, without the query
    headers: Mapping[str, str]  # credential values replaced by "***"
    query: Mapping[str, str]
    body: bytes


@dataclass(frozen=True)
class Page:
    items: list[Any]
    page: int
    per_page: int
    total: int
    last: int  # the number of the last page (1 when there are no items)


def now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def iso(value: datetime | str | None) -> str:
    """An ISO 8601 UTC timestamp as GitHub/GitLab print them (now when value is None)."""
    if value is None:
        return now_iso()
    if isinstance(value, str):
        return value
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_iso(value: str) -> datetime:
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def b64(data: bytes, *, wrap: int = 0) -> str:
    text = base64.b64encode(data).decode()
    if not wrap:
        return text
    # GitHub wraps base64 content at 60 characters, each line ending in a newline.
    return "".join(text[i : i + wrap] + "\n" for i in range(0, len(text), wrap))


class FakeServer:
    """A real aiohttp.web server on 127.0.0.1, port 0; use `async with` or start()/stop().

    Fault knobs act on the next requests in the order they were asked for, before
    authentication, so a test can count attempts in `requests`.
    """

    api_prefix = ""  # path under the root where the API lives ("/api/v4" for GitLab)

    def __init__(self, *, token: str, login: str) -> None:
        self.token = token
        self.login = login
        self.requests: list[RecordedRequest] = []
        self.root = ""  # http://127.0.0.1:PORT once started
        self.rate_limit_limit = 5000
        self.rate_limit_remaining = 5000
        self.rate_limit_reset = int(time.time()) + 3600
        self._faults: deque[tuple[str, float]] = deque()
        self._ids = 1000
        self.app = web.Application(middlewares=[self._middleware])
        self._add_routes(self.app.router)
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        """The base URL of the API, as a client is configured with."""
        return self.root + self.api_prefix

    async def start(self) -> None:
        self._runner = web.AppRunner(self.app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        host, port = self._runner.addresses[0][:2]
        self.root = f"http://{host}:{port}"

    async def stop(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    # -- fault knobs -------------------------------------------------------------------

    def fail_next(self, n: int = 1, status: int = 502) -> None:
        """The next n requests answer `status` (a server error by default)."""
        self._faults.extend(("fail", status) for _ in range(n))

    def drop_next(self, n: int = 1) -> None:
        """The next n requests get their connection closed without any response.

        aiohttp itself resends an idempotent request once when a reused keep-alive
        connection drops, so count attempts in `requests`, not in a client's retries.
        """
        self._faults.extend(("drop", 0) for _ in range(n))

    def secondary_limit_next(self, n: int = 1, retry_after: float = 1) -> None:
        """The next n requests are refused by the upstream's throttle, with Retry-After."""
        self._faults.extend(("throttle", retry_after) for _ in range(n))

    throttle_next = secondary_limit_next

    def requests_to(self, path: str, method: str | None = None) -> list[RecordedRequest]:
        """The logged requests whose path (under the API prefix) is `path`."""
        full = self.api_prefix + path
        return [r for r in self.requests if r.path == full and method in (None, r.method)]

    # -- hooks for the fakes -----------------------------------------------------------

    def _add_routes(self, router: web.UrlDispatcher) -> None:
        raise NotImplementedError

    def _authenticated(self, request: web.Request) -> bool:
        raise NotImplementedError

    def _unauthorized(self) -> web.Response:
        raise NotImplementedError

    def _not_found(self) -> web.Response:
        raise NotImplementedError

    def _throttled(self, retry_after: float) -> web.Response:
        raise NotImplementedError

    def _rate_limit_refusal(self) -> web.Response:
        raise NotImplementedError

    def _rate_limit_headers(self) -> dict[str, str]:
        raise NotImplementedError

    def _server_error(self, status: int) -> web.Response:
        return web.json_response({"message": f"{status} Server Error"}, status=status)

    # -- shared machinery --------------------------------------------------------------

    def next_id(self) -> int:
        self._ids += 1
        return self._ids

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        body = await request.read()  # cached: handlers can read it again
        headers = {
            k: (v.split(" ", 1)[0] + " ***" if " " in v else "***")
            if k.lower() in _SECRET_HEADERS
            else v
            for k, v in request.headers.items()
        }
        path = request.rel_url.raw_path
        self.requests.append(
            RecordedRequest(request.method, path, headers, dict(request.query), body)
        )
        if self._faults:
            kind, arg = self._faults.popleft()
            if kind == "drop":
                assert request.transport is not None
                request.transport.close()
                return web.Response(status=500)  # never sent: the connection is gone
            response = self._server_error(int(arg)) if kind == "fail" else self._throttled(arg)
        elif not self._authenticated(request):
            response = self._unauthorized()
        elif (refusal := self._spend_rate_limit()) is not None:
            response = refusal
        else:
            try:
                response = await handler(request)  # type: ignore[assignment]
            except ApiError as exc:
                response = exc.response()
            except (web.HTTPNotFound, web.HTTPMethodNotAllowed):
                response = self._not_found()
        response.headers.update(self._rate_limit_headers())
        return response

    def _spend_rate_limit(self) -> web.Response | None:
        now = time.time()
        if now >= self.rate_limit_reset:  # a new window
            self.rate_limit_remaining = self.rate_limit_limit
            self.rate_limit_reset = int(now) + 3600
        if self.rate_limit_remaining <= 0:
            return self._rate_limit_refusal()
        self.rate_limit_remaining -= 1
        return None

    def seconds_to_reset(self) -> int:
        return max(math.ceil(self.rate_limit_reset - time.time()), 0)

    def paginate(
        self, request: web.Request, items: Sequence[Any], *, default: int, maximum: int = 100
    ) -> Page:
        per_page = _int(request.query.get("per_page"), default)
        per_page = default if per_page < 1 else min(per_page, maximum)
        page = max(_int(request.query.get("page"), 1), 1)
        last = max(math.ceil(len(items) / per_page), 1)
        chunk = list(items[(page - 1) * per_page : page * per_page])
        return Page(chunk, page, per_page, len(items), last)

    def link_header(self, request: web.Request, page: Page) -> dict[str, str]:
        """RFC 8288 Link (absolute URLs, as both upstreams send), only when there is paging."""
        rels: list[tuple[str, int]] = []
        if page.page > 1:
            rels += [("prev", min(page.page - 1, page.last)), ("first", 1)]
        if page.page < page.last:
            rels = [("next", page.page + 1), ("last", page.last), *rels]
        if not rels:
            return {}
        url = request.url.with_scheme("http")
        parts = [f'<{url.update_query(page=n)}>; rel="{rel}"' for rel, n in rels]
        return {"Link": ", ".join(parts)}


def _int(value: str | None, default: int) -> int:
    try:
        return int(value) if value is not None else default
    except ValueError:
        return default


async def read_params(request: web.Request) -> dict[str, Any]:
    """Body parameters, JSON or form-encoded, falling back to the query (as GitLab does)."""
    params: dict[str, Any] = dict(request.query)
    if request.body_exists:
        if request.content_type == "application/json":
            try:
                data = await request.json()
            except ValueError:
                raise ApiError(400, {"message": "Problems parsing JSON"}) from None
            if isinstance(data, dict):
                params.update(data)
        else:
            params.update(await request.post())
    return params
