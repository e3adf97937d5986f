"""The core's REST API (aiohttp), under /api/v1, with its OpenAPI document."""

from core_service.api._app import is_loopback, make_app
from core_service.api._openapi import document
from core_service.api._routes import ROUTES
from core_service.api._service import Core

__all__ = ["ROUTES", "Core", "document", "is_loopback", "make_app"]
