"""The aiohttp application: routes, bearer-token auth, JSON errors, request metrics."""

from __future__ import annotations

import hmac
import ipaddress
import logging
from typing import Any

from aiohttp import web

from core_service import metrics
from core_service.api._errors import error_response, to_response
from core_service.api._openapi import full_path
from core_service.api._routes import CORE, ROUTES, Handler
from core_service.api._service import Core

log = logging.getLogger("dtm.api")
TOKEN = web.AppKey("token", str)


def is_loopback(host: str) -> bool:
    if host in ("localhost", ""):
        return host == "localhost"
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@web.middleware
async def errors_and_metrics(request: web.Request, handler: Handler) -> web.StreamResponse:
    route = (
        request.match_info.route.resource.canonical if request.match_info.route.resource else "-"
    )
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        code = {404: "not_found", 405: "method_not_allowed", 413: "too_large"}.get(
            exc.status, "http_error"
        )
        response = error_response(exc.status, code, exc.reason or exc.text or str(exc))
        if "Allow" in exc.headers:  # RFC 9110: a 405 names the methods that are allowed
            response.headers["Allow"] = exc.headers["Allow"]
    except Exception as exc:
        response = to_response(exc)
        if response.status >= 500:
            log.error("%s %s failed", request.method, request.path, exc_info=exc)
    metrics.http_requests.inc(request.method, route, str(response.status))
    return response


@web.middleware
async def bearer_auth(request: web.Request, handler: Handler) -> web.StreamResponse:
    token = request.app[TOKEN]
    public = getattr(request.match_info.handler, "__public__", False)
    if token and not public:
        given = request.headers.get("Authorization", "")
        scheme, _, value = given.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(value.strip(), token):
            return error_response(
                401, "unauthorized", "a valid `Authorization: Bearer TOKEN` header is required"
            )
    return await handler(request)


def make_app(core: Core, token: str = "") -> web.Application:
    app = web.Application(
        middlewares=[errors_and_metrics, bearer_auth], client_max_size=2 * 1024 * 1024
    )
    app[CORE] = core
    app[TOKEN] = token
    for route in ROUTES:
        handler: Any = route.handler
        if route.public:
            handler = _public(handler)
        app.router.add_route(route.method, full_path(route.path), handler)

    async def on_startup(app: web.Application) -> None:
        await core.start()

    async def on_cleanup(app: web.Application) -> None:
        await core.stop()

    app.on_startup.append(on_startup)
    app.on_cleanup.append(on_cleanup)
    return app


def _public(handler: Handler) -> Handler:
    async def wrapped(request: web.Request) -> web.StreamResponse:
        return await handler(request)

    wrapped.__public__ = True  # type: ignore[attr-defined]
    wrapped.__name__ = handler.__name__
    return wrapped
