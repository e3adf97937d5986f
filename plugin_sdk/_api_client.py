"""ApiClient: the HTTP client plugins use for DevOps tools' REST APIs (retries, limits, paging).

It follows what DevLake's ApiClient users kept asking for: one pooled aiohttp session per
client, exponential backoff with full jitter, the rate-limit headers of GitHub and GitLab
obeyed before the server has to refuse, the three pagination styles those APIs use, and
HTTP failures turned into the SDK's error tree in one place (`_status_error`), with the
token masked everywhere it could leak (log lines, exception text, URLs).

Retries follow urllib3's rule: a refused request (429, a rate-limit 403, a 503 with
Retry-After, a connection that never opened) is retried whatever the method; a request the
server may already have acted on (other 5xx, a time-out, a dropped connection) is retried
only when the method is idempotent, so a POST that created a repository behind a 502 is
never sent twice: it raises PluginUnavailable, retriable, for the caller to read and decide.
"""

from __future__ import annotations

import asyncio
import email.utils
import hashlib
import json as jsonlib
import logging
import random
import re
import time
from collections.abc import AsyncIterator, Callable, Collection, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from http import HTTPStatus
from typing import Any

import aiohttp
from multidict import CIMultiDict
from yarl import URL

from plugin_sdk._errors import (
    AlreadyExists,
    InvalidOptions,
    PermissionDenied,
    PluginError,
    PluginInternalError,
    PluginUnavailable,
    ResourceNotFound,
)
from plugin_sdk._serve import mask, register_secret

log = logging.getLogger("plugin_sdk.api")

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"})
# Query parameters that carry credentials in some APIs (GitLab accepts ?private_token=).
SECRET_PARAMS = frozenset({"token", "access_token", "private_token", "client_secret", "password"})
# GitHub: "If you receive a secondary rate limit without retry-after, wait at least a minute."
RATE_LIMIT_FALLBACK_WAIT = 60.0
# Reset values below this are delta-seconds (IETF RateLimit draft), not epoch seconds.
_EPOCH_FLOOR = 1_000_000_000
_BODY_EXCERPT = 200
_SECRET_HEADER = re.compile(r"authorization|token|key|secret|password", re.IGNORECASE)
_LINK_RE = re.compile(r"<([^>]*)>\s*((?:;\s*[^;,]+)*)")
_REL_RE = re.compile(r"""rel\s*=\s*"?([^";]+)"?""", re.IGNORECASE)


@dataclass(frozen=True)
class HttpResponse:
    """One HTTP answer, fully read. `body` is the parsed JSON when the server sent JSON."""

    status: int
    headers: Mapping[str, str]  # case-insensitive
    body: Any
    text: str
    url: str

    def link(self, rel: str) -> str | None:
        """The absolute URL of the RFC 8288 `Link` with this rel ("next", "last"...), if any."""
        return parse_links(self.headers.get("Link", ""), self.url).get(rel)


def parse_links(header: str, base: str) -> dict[str, str]:
    """rel -> absolute URL for a `Link: <url>; rel="next", <url>; rel="last"` header."""
    links: dict[str, str] = {}
    for target, attrs in _LINK_RE.findall(header):
        match = _REL_RE.search(attrs)
        if match:
            url = str(URL(base).join(URL(target))) if base else target
            for rel in match.group(1).split():
                links.setdefault(rel.lower(), url)
    return links


def mask_url(url: str | URL) -> str:
    """The URL with registered secrets, credential query values and userinfo hidden."""
    try:
        parsed = url if isinstance(url, URL) else URL(url)
        if parsed.password is not None:
            parsed = parsed.with_password("***")
        if any(key.lower() in SECRET_PARAMS for key in parsed.query):
            parsed = parsed.with_query(
                [(k, "***" if k.lower() in SECRET_PARAMS else v) for k, v in parsed.query.items()]
            )
        text = str(parsed)
    except (ValueError, TypeError):
        text = str(url)
    return mask(text)


class ApiClient:
    """An async client for one REST API; use `async with ApiClient(...) as api:`.

    `path` arguments are joined to `base_url` by concatenation (so a GitLab base ending in
    /api/v4 keeps it), or used as they are when absolute (a `next` link). Credentials are
    only sent to the origin of `base_url`, never to another host a link points at.
    """

    def __init__(
        self,
        base_url: str,
        *,
        token: str | None = None,
        auth_scheme: str = "Bearer",
        basic_auth: tuple[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float = 30.0,
        max_retries: int = 5,
        backoff_base: float = 0.5,
        backoff_max: float = 30.0,
        max_retry_after: float = 120.0,
        rate_limit_per_hour: int | None = None,
        concurrency: int = 8,
        proxy: str | None = None,
        user_agent: str = "devstream",
    ) -> None:
        base = URL(base_url.rstrip("/")) if base_url else URL()
        if base.scheme not in ("http", "https") or not base.host:
            raise InvalidOptions(f"base_url {mask_url(base_url)!r} is not an http(s) URL")
        if token and basic_auth:
            raise InvalidOptions("give either token or basic_auth, not both")
        if max_retries < 0 or concurrency < 1 or timeout <= 0:
            raise InvalidOptions("max_retries must be >= 0, concurrency >= 1 and timeout > 0")
        if rate_limit_per_hour is not None and rate_limit_per_hour <= 0:
            raise InvalidOptions("rate_limit_per_hour must be positive")
        self.base_url = str(base)
        self._base = base
        self._timeout = timeout
        self.max_retries = max_retries
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.max_retry_after = max_retry_after
        self._proxy = proxy
        self._headers: CIMultiDict[str] = CIMultiDict({"User-Agent": user_agent})
        for key, value in (headers or {}).items():
            self._headers[key] = value
            if _SECRET_HEADER.search(key):  # PRIVATE-TOKEN, X-Api-Key, Authorization...
                register_secret(value)
                register_secret(value.rsplit(" ", 1)[-1])
        self._auth: str | None = None
        if token:
            register_secret(token)
            self._auth = f"{auth_scheme} {token}" if auth_scheme else token
        elif basic_auth:
            register_secret(basic_auth[1])
            self._auth = aiohttp.BasicAuth(*basic_auth).encode()
            register_secret(self._auth.split(" ", 1)[1])  # the base64 form leaks it too
        if proxy:
            proxy_url = URL(proxy)
            if proxy_url.password:
                register_secret(proxy_url.password)
        # Even spacing (a bucket of one token) rather than a burst of a whole hour's quota.
        self._interval = 3600.0 / rate_limit_per_hour if rate_limit_per_hour else 0.0
        self._next_slot = 0.0
        # Monotonic time before which no request may go out: one shared block, because a
        # rate limit belongs to the token, not to the coroutine that discovered it.
        self._blocked_until = 0.0
        self._semaphore = asyncio.Semaphore(concurrency)
        self._session: aiohttp.ClientSession | None = None
        self._closed = False
        self._stats = {"requests": 0, "retries": 0, "rate_limited_waits": 0, "bytes": 0}
        self._waited = 0.0

    # -- lifecycle ---------------------------------------------------------------------

    async def __aenter__(self) -> ApiClient:
        self._open()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the session; safe to call more than once."""
        self._closed = True
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    def _open(self) -> aiohttp.ClientSession:
        if self._closed:
            raise RuntimeError(f"ApiClient for {mask_url(self._base)} is closed")
        if self._session is None:
            # Created here, inside the running loop, as aiohttp requires. trust_env stays off:
            # a proxy is configured per client, and ~/.netrc must not add credentials.
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self._timeout), trust_env=False
            )
        return self._session

    @property
    def stats(self) -> dict[str, float]:
        """Counters: requests sent, retries, rate-limit waits (and their seconds), body bytes."""
        return {**self._stats, "rate_limited_seconds": round(self._waited, 3)}

    # -- requests ----------------------------------------------------------------------

    async def get(self, path: str, **kw: Any) -> HttpResponse:
        return await self.request("GET", path, **kw)

    async def post(self, path: str, **kw: Any) -> HttpResponse:
        return await self.request("POST", path, **kw)

    async def put(self, path: str, **kw: Any) -> HttpResponse:
        return await self.request("PUT", path, **kw)

    async def patch(self, path: str, **kw: Any) -> HttpResponse:
        return await self.request("PATCH", path, **kw)

    async def delete(self, path: str, **kw: Any) -> HttpResponse:
        return await self.request("DELETE", path, **kw)

    async def get_or_none(self, path: str, **kw: Any) -> HttpResponse | None:
        """GET, or None when the server answers 404."""
        ok = {404, *(kw.pop("ok_statuses", None) or ())}
        resp = await self.request("GET", path, ok_statuses=ok, **kw)
        return None if resp.status == 404 else resp

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        data: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        ok_statuses: Collection[int] | None = None,
    ) -> HttpResponse:
        """Send one request, retrying what is safe to retry; statuses >= 400 raise.

        `ok_statuses` lists extra statuses to return instead of raising (e.g. {404, 409}).
        """
        if json is not None and data is not None:
            raise ValueError("give json or data, not both")
        method = method.upper()
        url = self.url_for(path, params)
        send_headers = CIMultiDict(self._headers)  # a caller's "user-agent" replaces ours
        if self._auth and url.origin() == self._base.origin():
            send_headers["Authorization"] = self._auth
        for key, value in (headers or {}).items():
            send_headers[key] = value
        if json is not None:
            send_headers.setdefault("Content-Type", "application/json")
            data = jsonlib.dumps(json).encode()
        accepted = frozenset(ok_statuses or ())
        attempt = 0
        while True:
            await self._wait_for_turn(method, url)
            try:
                resp = await self._send(method, url, send_headers, data)
            except (TimeoutError, aiohttp.ClientConnectionError, aiohttp.ClientPayloadError) as exc:
                # A connection that never opened never reached the server: safe for any method.
                safe = method in IDEMPOTENT_METHODS or isinstance(exc, aiohttp.ClientConnectorError)
                if isinstance(exc, aiohttp.ClientSSLError) or not safe:
                    raise self._network_error(method, url, exc, retried=False) from exc
                if attempt >= self.max_retries:
                    raise self._network_error(method, url, exc, retried=True) from exc
                attempt += 1
                await self._backoff(method, url, _describe(exc), attempt)
                continue
            except aiohttp.ClientError as exc:  # too many redirects, an invalid URL...
                raise PluginInternalError(
                    f"{method} {mask_url(url)} failed: {mask(_describe(exc))}",
                    details={"url": mask_url(url), "method": method},
                ) from exc
            self._note_rate_limit(resp)
            if resp.status < 400 or resp.status in accepted:
                return resp
            wait = self._rate_limit_wait(resp)
            if wait is not None:
                # Refused by a rate limit: the server did nothing, so any method may retry.
                if wait > self.max_retry_after:
                    raise self._too_long(method, url, resp, wait)
                if attempt >= self.max_retries:
                    raise self._status_error(method, url, resp, exhausted=True)
                attempt += 1
                self._stats["retries"] += 1
                log.info(
                    "%s %s -> %d: rate limited; retry %d/%d after %.1fs",
                    method, mask_url(url), resp.status, attempt, self.max_retries, wait,
                )  # fmt: skip
                self._block_for(wait)
                continue
            if resp.status not in RETRY_STATUSES:
                raise self._status_error(method, url, resp)
            if attempt >= self.max_retries:
                raise self._status_error(method, url, resp, exhausted=True)
            if resp.status != 429 and method not in IDEMPOTENT_METHODS:
                raise self._status_error(method, url, resp)
            attempt += 1
            await self._backoff(method, url, f"{resp.status} {_reason(resp.status)}", attempt)

    def url_for(self, path: str, params: Mapping[str, Any] | None = None) -> URL:
        """The absolute URL a request for `path` with `params` goes to."""
        if path.startswith(("http://", "https://")):
            url = URL(path)
        elif path:
            url = URL(f"{self.base_url}/{path.lstrip('/')}")
        else:
            url = self._base
        if params:
            url = url.update_query({k: _param(v) for k, v in params.items() if v is not None})
        return url

    async def _send(
        self, method: str, url: URL, headers: CIMultiDict[str], data: bytes | None
    ) -> HttpResponse:
        session = self._open()
        async with self._semaphore:
            self._stats["requests"] += 1
            started = time.monotonic()
            async with session.request(
                method, url, headers=headers, data=data, proxy=self._proxy
            ) as raw:
                content = await raw.read()
                status, resp_headers, final_url = raw.status, raw.headers, str(raw.url)
                content_type, charset = raw.content_type, raw.charset
        self._stats["bytes"] += len(content)
        try:
            text = content.decode(charset or "utf-8", errors="replace")
        except LookupError:  # a charset Python does not know
            text = content.decode("utf-8", errors="replace")
        body: Any = None
        if "json" in content_type and text.strip():
            try:
                body = jsonlib.loads(text)
            except ValueError as exc:
                if status < 400:
                    raise PluginInternalError(
                        f"{method} {mask_url(url)} -> {status}: invalid JSON: {exc}",
                        details={"status": status, "url": mask_url(url)},
                    ) from None
        if log.isEnabledFor(logging.DEBUG):
            elapsed = (time.monotonic() - started) * 1000
            log.debug("%s %s -> %d (%.0f ms)", method, mask_url(url), status, elapsed)
        return HttpResponse(status, resp_headers, body, text, final_url)

    # -- waiting -----------------------------------------------------------------------

    async def _wait_for_turn(self, method: str, url: URL) -> None:
        # Loop: another coroutine may extend the block while this one sleeps.
        while (wait := self._blocked_until - time.monotonic()) > 0:
            if wait > self.max_retry_after:
                raise PluginUnavailable(
                    f"{method} {mask_url(url)}: rate limited for {wait:.0f}s more, longer than "
                    f"max_retry_after={self.max_retry_after:g}s; retry after {_at(wait)}",
                    details={"url": mask_url(url), "retry_after": round(wait, 1),
                             "retry_at": _at(wait)},
                )  # fmt: skip
            log.info("rate limited by %s: waiting %.1fs", url.host, wait)
            self._stats["rate_limited_waits"] += 1
            self._waited += wait
            await asyncio.sleep(wait)
        if self._interval:
            now = time.monotonic()
            slot = max(now, self._next_slot)
            self._next_slot = slot + self._interval
            if slot > now:
                await asyncio.sleep(slot - now)

    async def _backoff(self, method: str, url: URL, why: str, attempt: int) -> None:
        # Full jitter (AWS architecture blog): spreads the retries of many clients apart.
        delay = random.uniform(0, min(self.backoff_max, self.backoff_base * 2 ** (attempt - 1)))
        self._stats["retries"] += 1
        log.warning(
            "%s %s: %s; retry %d/%d in %.2fs",
            method, mask_url(url), mask(why), attempt, self.max_retries, delay,
        )  # fmt: skip
        await asyncio.sleep(delay)

    def _block_for(self, seconds: float) -> None:
        self._blocked_until = max(self._blocked_until, time.monotonic() + seconds)

    def _note_rate_limit(self, resp: HttpResponse) -> None:
        """Hold every request back until the reset once the quota is spent (no 403 needed)."""
        remaining = _header(resp, "X-RateLimit-Remaining", "RateLimit-Remaining")
        if remaining is None or remaining.strip() != "0":
            return
        wait = _reset_wait(resp)
        if wait is not None and wait > 0:
            self._block_for(wait)

    def _rate_limit_wait(self, resp: HttpResponse) -> float | None:
        """Seconds to wait if `resp` is a rate-limit refusal, else None."""
        if resp.status not in (403, 429, 503):
            return None
        retry_after = _retry_after(resp)
        if retry_after is not None:
            return retry_after
        remaining = _header(resp, "X-RateLimit-Remaining", "RateLimit-Remaining")
        if remaining is not None and remaining.strip() == "0":
            reset = _reset_wait(resp)
            if reset is not None:
                return max(reset, 0.0)
        if resp.status == 403 and "rate limit" in resp.text[:1000].lower():
            return RATE_LIMIT_FALLBACK_WAIT
        return None  # 429/503 without hints: an ordinary retry with backoff

    # -- errors: the one place HTTP becomes the SDK's error tree ------------------------

    def _status_error(
        self, method: str, url: URL, resp: HttpResponse, *, exhausted: bool = False
    ) -> PluginError:
        status = resp.status
        excerpt = mask(" ".join(resp.text[:_BODY_EXCERPT].split()))
        message = f"{method} {mask_url(url)} -> {status} {_reason(status)}"
        if excerpt:
            message += f": {excerpt}"
        cls: type[PluginError]
        if exhausted:
            cls = PluginUnavailable
            message += f" (gave up after {self.max_retries} retries)"
        elif status == 404:
            cls = ResourceNotFound
        elif status in (401, 403):
            cls = PermissionDenied
        elif status in (400, 422):
            cls = InvalidOptions
        elif status == 409:
            cls = AlreadyExists
        elif status in RETRY_STATUSES:
            cls = PluginUnavailable
            if method not in IDEMPOTENT_METHODS:
                message += f" (not retried: {method} is not idempotent)"
        else:
            cls = PluginInternalError
        return cls(message, details={"status": status, "url": mask_url(url), "method": method})

    def _network_error(
        self, method: str, url: URL, exc: BaseException, *, retried: bool
    ) -> PluginError:
        why = mask(_describe(exc))
        if retried:
            why += f" (gave up after {self.max_retries} retries)"
        elif not isinstance(exc, aiohttp.ClientSSLError):
            why += f" (not retried: {method} is not idempotent)"
        return PluginUnavailable(
            f"{method} {mask_url(url)} failed: {why}",
            details={"url": mask_url(url), "method": method, "error": type(exc).__name__},
        )

    def _too_long(self, method: str, url: URL, resp: HttpResponse, wait: float) -> PluginError:
        self._block_for(wait)  # later calls fail fast with the same answer
        return PluginUnavailable(
            f"{method} {mask_url(url)} -> {resp.status} {_reason(resp.status)}: rate limited; "
            f"the server asks to wait {wait:.0f}s, longer than max_retry_after="
            f"{self.max_retry_after:g}s; retry after {_at(wait)}",
            details={"status": resp.status, "url": mask_url(url), "method": method,
                     "retry_after": round(wait, 1), "retry_at": _at(wait)},
        )  # fmt: skip

    # -- pagination --------------------------------------------------------------------

    async def paginate(
        self,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        style: str = "link",
        per_page: int = 100,
        items_key: str | None = None,
        cursor_param: str = "cursor",
        next_cursor: Callable[[HttpResponse], str | None] | None = None,
        max_pages: int | None = None,
    ) -> AsyncIterator[HttpResponse]:
        """Yield each page's response, following `style`:

        - "link": RFC 8288 `Link: <...>; rel="next"` (GitHub, GitLab);
        - "page": `page`=1, 2... with `per_page` until a short or empty page; the items are
          `body[items_key]`, or the body itself, which must then be a list;
        - "cursor": `next_cursor(resp)` gives the value sent as `cursor_param`, None ends.

        `per_page` is sent as `per_page` unless `params` already has it; 0 sends nothing.
        A repeated next URL, cursor or page raises PluginInternalError (a server bug that
        would otherwise loop forever).
        """
        if style not in ("link", "page", "cursor"):
            raise ValueError(f"unknown pagination style {style!r}: use link, page or cursor")
        if style == "cursor" and next_cursor is None:
            raise ValueError("pagination style 'cursor' needs next_cursor=")
        query: dict[str, Any] = dict(params or {})
        if per_page:
            query.setdefault("per_page", per_page)
        pages = 0
        seen: set[str] = set()
        target = path
        page = int(query.get("page", 1)) if style == "page" else 0
        if style == "cursor" and query.get(cursor_param):
            seen.add(str(query[cursor_param]))
        while max_pages is None or pages < max_pages:
            if style == "page":
                query["page"] = page
            resp = await self.get(target, params=query)
            pages += 1
            yield resp
            if style == "link":
                seen.add(resp.url)
                nxt = resp.link("next")
                if nxt is None:
                    return
                _check_loop(seen, nxt, mask_url(nxt))
                target, query = nxt, {}  # the link carries the whole query
            elif style == "page":
                items = _items(resp, items_key)
                if len(items) == 0 or (per_page and len(items) < per_page):
                    return
                # A server ignoring `page` returns the same page forever.
                digest = hashlib.sha256(resp.text.encode()).hexdigest()
                _check_loop(seen, digest, f"page {page} of {mask_url(resp.url)}")
                page += 1
            else:
                assert next_cursor is not None
                cursor = next_cursor(resp)
                if not cursor:
                    return
                _check_loop(seen, cursor, f"{mask_url(resp.url)} ({cursor_param}={cursor})")
                query[cursor_param] = cursor


def _check_loop(seen: set[str], key: str, where: str) -> None:
    if key in seen:
        raise PluginInternalError(
            f"pagination loop at {where}: the server returned it before",
            details={"at": where},
        )
    seen.add(key)


def _items(resp: HttpResponse, items_key: str | None) -> list[Any]:
    items = resp.body.get(items_key) if items_key and isinstance(resp.body, dict) else resp.body
    if not isinstance(items, list):
        where = f"body[{items_key!r}]" if items_key else "the body"
        raise PluginInternalError(
            f"GET {mask_url(resp.url)}: expected a list in {where} to paginate, "
            f"got {type(items).__name__}",
            details={"url": mask_url(resp.url)},
        )
    return items


def _param(value: Any) -> Any:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, list | tuple):
        return [_param(v) for v in value]
    return value if isinstance(value, str | int | float) else str(value)


def _header(resp: HttpResponse, *names: str) -> str | None:
    for name in names:
        value = resp.headers.get(name)
        if value is not None:
            return value
    return None


def _server_now(resp: HttpResponse) -> float:
    """The server's clock, from its Date header: reset times are on that clock, not ours."""
    value = resp.headers.get("Date")
    if value:
        try:
            return email.utils.parsedate_to_datetime(value).timestamp()
        except (TypeError, ValueError, IndexError):
            pass
    return time.time()


def _retry_after(resp: HttpResponse) -> float | None:
    value = resp.headers.get("Retry-After")
    if value is None:
        return None
    value = value.strip()
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    return max(when.timestamp() - _server_now(resp), 0.0)


def _reset_wait(resp: HttpResponse) -> float | None:
    value = _header(resp, "X-RateLimit-Reset", "RateLimit-Reset")
    try:
        reset = float(value) if value is not None else None
    except ValueError:
        return None
    if reset is None:
        return None
    return reset if reset < _EPOCH_FLOOR else reset - _server_now(resp)


def _at(seconds_from_now: float) -> str:
    when = datetime.now(UTC).timestamp() + seconds_from_now
    return datetime.fromtimestamp(when, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return ""


def _describe(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return f"timed out ({type(exc).__name__})"
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
