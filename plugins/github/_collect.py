"""How the github collectors page through the API, checkpoint and stay incremental.

Two ways of paging, each written once:

- `collect_linked`: GitHub's `Link: rel="next"` pages, one after the other, with an
  optional `since` and a checkpoint after every page ({"next": <url of the next page>}),
  so a resumed run asks for the page it stopped at rather than for page 1 (the SDK then
  drops the records of that page it had already sent);
- `collect_numbered`: page-number pages of an endpoint that says how many items it holds
  (`total_count`, as Actions runs do): the first page gives the count, the others are then
  fetched a few at a time in parallel and yielded in page order, with {"page": n}
  checkpoints.

Both put the time the collection started into every checkpoint ("started"), so a run
resumed hours later still saves the original start as the next run's `since`: what
changed while the first attempt ran is asked for again, never skipped.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Iterable, Mapping
from contextlib import aclosing
from dataclasses import dataclass
from typing import Any, cast

from yarl import URL

from plugin_sdk import ApiClient, HttpResponse, PluginInternalError, Raw, SubtaskContext
from plugins.github._options import DEFAULT_ENDPOINT, latest, now

PER_PAGE = 100  # GitHub's maximum
PARALLEL_PAGES = 4  # page requests in flight at once: a burst GitHub's secondary limit allows
# What GitHub asks clients to send: the stable media type and a pinned API version.
GITHUB_HEADERS = {"Accept": "application/vnd.github+json", "X-GitHub-Api-Version": "2022-11-28"}
# Query parameters that would carry a credential if an endpoint were configured with one.
_SECRET_PARAMS = frozenset({"access_token", "token", "client_secret"})


@dataclass(frozen=True)
class Window:
    """What an incremental collection asks for and what it will save."""

    since: str | None  # ask only for what changed from then on (None: everything)
    started: str  # when this collection started: the next run's `since`
    incremental: bool = True  # whether the next run may start from `started`

    def save(self, ctx: SubtaskContext) -> None:
        """Record, for a run that succeeds, where the next one starts."""
        if self.incremental:
            ctx.set_state(since=self.started)


def window(ctx: SubtaskContext, time_after: str | None, *, incremental: bool = True) -> Window:
    """The window of this run: the last run's `since` (unless a full sync) and timeAfter."""
    started = str(resume_point(ctx).get("started") or now())
    since = ctx.state.get("since") if incremental and not ctx.full_sync else None
    return Window(latest(since, time_after), started, incremental)


def client_for(connection: Mapping[str, Any], **overrides: Any) -> ApiClient:
    """An ApiClient for a connection, as SubtaskContext.api_client builds it (token, proxy,
    rateLimitPerHour), on GitHub's endpoint unless the connection names another."""
    conn = {**connection, "endpoint": connection.get("endpoint") or DEFAULT_ENDPOINT}
    ctx = SubtaskContext(plugin="github", subtask="", options={}, task_data={}, connection=conn)
    client: ApiClient = ctx.api_client(headers=GITHUB_HEADERS, **overrides)
    return client


def resume_point(ctx: SubtaskContext) -> dict[str, Any]:
    """The checkpoint this run resumes from ({} for a fresh run)."""
    return dict(ctx.checkpoint) if isinstance(ctx.checkpoint, Mapping) else {}


def clean_url(url: str) -> str:
    """The URL a raw row records: never with credentials, even if an endpoint held some."""
    try:
        parsed = URL(url)
    except (TypeError, ValueError):
        return ""
    if parsed.user is not None or parsed.password is not None:
        parsed = parsed.with_user(None)
    if any(key.lower() in _SECRET_PARAMS for key in parsed.query):
        parsed = parsed.with_query(
            [(k, v) for k, v in parsed.query.items() if k.lower() not in _SECRET_PARAMS]
        )
    return str(parsed)


def items_of(resp: HttpResponse, key: str | None = None) -> list[Any]:
    """The list a page holds (the body, or body[key]); anything else is a server bug."""
    body = resp.body.get(key) if key and isinstance(resp.body, Mapping) else resp.body
    if not isinstance(body, list):
        where = f"body[{key!r}]" if key else "body"
        raise PluginInternalError(
            f"GET {clean_url(resp.url)}: expected a list in the {where}, got {type(body).__name__}"
        )
    return body


def _page_number(url: str) -> int:
    try:
        return int(URL(url).query.get("page", "1"))
    except ValueError:
        return 1


async def linked_pages(
    api: ApiClient, path: str, params: Mapping[str, Any] | None = None
) -> AsyncGenerator[HttpResponse, None]:
    """Every page of a Link-paginated list, closing the pager even when left early."""
    # paginate() is an async generator, typed as the iterator it is used as.
    pager = cast(
        AsyncGenerator[HttpResponse, None], api.paginate(path, params=params, per_page=PER_PAGE)
    )
    async with aclosing(pager) as pages:
        async for resp in pages:
            yield resp


async def collect_linked(
    ctx: SubtaskContext,
    api: ApiClient,
    path: str,
    params: Mapping[str, Any],
    win: Window,
    *,
    input: Any = None,
    older: Callable[[Any], bool] | None = None,
) -> AsyncIterator[Raw]:
    """Yield every item of a Link-paginated list, checkpointing after each page.

    `older(item)`, for lists sorted newest first that have no `since` parameter (pull
    requests), says an item is older than the window: it and what follows are not
    yielded, and no further page is asked for.
    """
    resume = resume_point(ctx)
    if resume:
        if not resume.get("next"):  # the run resumed from had fetched the last page
            win.save(ctx)
            return
        path, params = str(resume["next"]), {}  # a next link carries the whole query
    async for resp in linked_pages(api, path, params):
        items = items_of(resp)
        kept = items
        if older is not None:
            kept = [i for i in items if not older(i)]  # sorted: the tail is all older
        for item in kept:
            yield Raw(item, url=clean_url(resp.url), input=input)
        nxt = resp.link("next") if len(kept) == len(items) else None
        ctx.checkpoint_here({"next": nxt, "started": win.started})
        done = (_page_number(resp.url) - 1) * PER_PAGE + len(kept)
        # rel="last" bounds the total from above; the last page makes it exact.
        last = resp.link("last")
        ctx.progress(done, _page_number(last) * PER_PAGE if nxt and last else done)
        if nxt is None:
            break
    win.save(ctx)


async def collect_numbered(
    ctx: SubtaskContext,
    api: ApiClient,
    path: str,
    params: Mapping[str, Any],
    items_key: str,
    win: Window,
    *,
    input: Any = None,
    parallel: int = PARALLEL_PAGES,
) -> AsyncIterator[Raw]:
    """Yield every item of a page-numbered list that reports `total_count`, in page order,
    fetching up to `parallel` pages at once once the first page gave the count."""
    query = {**params, "per_page": PER_PAGE}

    async def fetch(page: int) -> HttpResponse:
        return await api.get(path, params={**query, "page": page})

    first = int(resume_point(ctx).get("page") or 1)
    head = await fetch(first)
    total = int(head.body.get("total_count") or 0) if isinstance(head.body, Mapping) else 0
    last = max(math.ceil(total / PER_PAGE), first)
    pages = in_order(fetch, range(first + 1, last + 1), parallel, ready={first: head})
    async with aclosing(pages):
        async for page, resp in pages:
            items = items_of(resp, items_key)
            for item in items:
                yield Raw(item, url=clean_url(resp.url), input=input)
            ctx.checkpoint_here({"page": page + 1, "started": win.started})
            ctx.progress(min((page - 1) * PER_PAGE + len(items), total), total)
    win.save(ctx)


async def in_order(
    fetch: Callable[[int], Awaitable[HttpResponse]],
    pages: Iterable[int],
    parallel: int,
    *,
    ready: Mapping[int, HttpResponse] | None = None,
) -> AsyncGenerator[tuple[int, HttpResponse], None]:
    """(page, response) in page order, with up to `parallel` requests in flight.

    A sliding window rather than gather(): memory stays at `parallel` pages however many
    there are, and the first page is yielded while later ones are still on the wire.
    """
    queue = iter(pages)
    pending: deque[tuple[int, asyncio.Task[HttpResponse]]] = deque()

    def top_up() -> None:
        while len(pending) < parallel and (page := next(queue, None)) is not None:
            pending.append((page, asyncio.ensure_future(fetch(page))))

    try:
        top_up()  # first: later pages load while the caller handles the ready ones
        for page, resp in (ready or {}).items():
            yield page, resp
        while pending:
            page, task = pending.popleft()
            resp = await task
            top_up()  # before yielding: the next requests run while the caller works
            yield page, resp
    finally:
        for _, task in pending:
            task.cancel()
        await asyncio.gather(*(task for _, task in pending), return_exceptions=True)


class Pacer:
    """Spaces the clients of a parent-driven collector by the connection's rateLimitPerHour.

    Such a collector is called once per parent row with no hook at the end of the run to
    close a shared client, so each call opens (and closes) its own ApiClient; an ApiClient
    only spaces its own requests, so without this the first request of every parent would
    go out at once. Keyed by connection: the limit belongs to the token.
    """

    def __init__(self) -> None:
        self._next: dict[tuple[int, str], float] = {}

    @staticmethod
    def _interval(ctx: SubtaskContext) -> float:
        rate = ctx.connection.get("rateLimitPerHour")
        return 3600.0 / int(rate) if rate else 0.0

    def _key(self, ctx: SubtaskContext) -> tuple[int, str]:
        return ctx.connection_id, str(ctx.connection.get("endpoint") or "")

    async def wait(self, ctx: SubtaskContext) -> None:
        delay = self._next.get(self._key(ctx), 0.0) - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)

    def used(self, ctx: SubtaskContext) -> None:
        interval = self._interval(ctx)
        if interval:
            self._next[self._key(ctx)] = time.monotonic() + interval
