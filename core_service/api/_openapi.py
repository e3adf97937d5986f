"""The OpenAPI 3.1 document of the REST API, made from the route table."""

from __future__ import annotations

import re
from typing import Any

from core_service import __version__

ROOT_PATHS = {"/healthz", "/readyz", "/metrics"}
PREFIX = "/api/v1"
ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message"],
            "properties": {
                "code": {"type": "string"},
                "message": {"type": "string"},
                "details": {},
            },
        }
    },
}


def full_path(path: str) -> str:
    return path if path in ROOT_PATHS else PREFIX + path


def openapi_path(path: str) -> str:
    """aiohttp's {path:.+} becomes OpenAPI's {path}."""
    return re.sub(r"\{(\w+):[^}]+\}", r"{\1}", full_path(path))


def document(routes: list[Any]) -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        path = openapi_path(route.path)
        params = [
            {
                "name": name,
                "in": "path",
                "required": True,
                "schema": (
                    {"type": "string", "pattern": "^[0-9]{1,12}$"}
                    if name == "id"
                    else {"type": "string", "minLength": 1}
                ),
            }
            for name in re.findall(r"\{(\w+)\}", path)
        ]
        ok_schema: dict[str, Any] = (
            {"type": "string"} if route.produces != "application/json" else {}
        )
        responses: dict[str, Any] = {
            "200": {"description": "OK", "content": {route.produces: {"schema": ok_schema}}},
            "400": _error("the request is not valid"),
            "404": _error("not found"),
        }
        if route.body is not None:
            responses["413"] = _error("the body is larger than the server accepts (2 MiB)")
        for status, what in route.responses.items():
            responses[str(status)] = (
                _error(what)
                if status >= 400
                else {"description": what, "content": {"application/json": {"schema": {}}}}
            )
        if not route.public:
            responses["401"] = _error("a bearer token is required")
        op: dict[str, Any] = {
            "operationId": f"{route.method.lower()}_{route.handler.__name__}",
            "summary": route.summary,
            "tags": list(route.tags),
            "parameters": params,
            "responses": responses,
        }
        if route.body is not None:
            op["requestBody"] = {
                "required": bool(route.body.get("required")),
                "content": {"application/json": {"schema": route.body}},
            }
        if route.public:
            op["security"] = []
        paths.setdefault(path, {})[route.method.lower()] = op
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "DevStream core API",
            "version": __version__,
            "description": "Plugins, connections, pipelines and the toolchain of one DevStream "
            "core. A bearer token is required whenever the core listens beyond loopback.",
        },
        "servers": [{"url": "/"}],
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {"Error": ERROR},
        },
        "security": [{"bearer": []}],
        "paths": paths,
    }


def _error(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }
