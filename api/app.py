"""Mount the agent API on the HTTP app: its routers, the request id, the JSON error shape."""

from __future__ import annotations

import importlib
import logging
import re
import uuid
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exception_handlers import request_validation_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.context import ApiContext
from api.errors import ApiError

__all__ = ["API_PREFIX", "REQUEST_ID_HEADER", "install_api"]

log = logging.getLogger(__name__)

API_PREFIX = "/api"
REQUEST_ID_HEADER = "X-Request-ID"
# One module per resource, each with a ``router``: a new resource is a new module listed here.
_RESOURCES = ("api.tickets", "api.contacts", "api.agents")
# A caller's own request id is kept when it is a plausible id (so logs correlate), else replaced.
_SANE_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


class RequestIdMiddleware:
    """Give every request an id, echo it in the response header, keep it for error bodies.

    Plain ASGI rather than ``BaseHTTPMiddleware``: it wraps every request of every channel's
    endpoint too, and must cost next to nothing.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = ""
        for name, value in scope.get("headers", ()):
            if name == b"x-request-id":
                given = value.decode("latin-1")
                break
        request_id = given if _SANE_ID.match(given) else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        header = (b"x-request-id", request_id.encode("ascii"))

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), header]
            await send(message)

        await self.app(scope, receive, send_with_id)


def request_id(request: Request) -> str:
    return str(getattr(request.state, "request_id", "") or "")


def error_body(request: Request, code: str, message: str, details: Any = None) -> dict[str, Any]:
    error: dict[str, Any] = {"code": code, "message": message, "request_id": request_id(request)}
    if details is not None:
        error["details"] = details
    return {"error": error}


def install_api(app: FastAPI, ctx: ApiContext) -> None:
    app.state.api_context = ctx
    app.add_middleware(RequestIdMiddleware)
    for name in _RESOURCES:
        module = importlib.import_module(name)
        app.include_router(module.router, prefix=API_PREFIX)

    @app.exception_handler(ApiError)
    async def on_api_error(request: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse(error_body(request, exc.code, exc.message, exc.details), status_code=exc.status,
                            headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def on_invalid(request: Request, exc: RequestValidationError) -> Any:
        if not request.url.path.startswith(API_PREFIX + "/"):
            return await request_validation_exception_handler(request, exc)
        details = [
            {"where": ".".join(str(p) for p in e.get("loc", ())), "message": e.get("msg", "")}
            for e in exc.errors()
        ]
        summary = "; ".join(f"{d['where']}: {d['message']}" for d in details[:5])
        return JSONResponse(error_body(request, "invalid", f"the request is not valid: {summary}", details),
                            status_code=422)

    @app.exception_handler(Exception)
    async def on_crash(request: Request, exc: Exception) -> JSONResponse:
        log.exception("API request %s failed", request_id(request))
        return JSONResponse(
            error_body(request, "internal_error",
                       "the server failed on this request; it is logged under this request id"),
            status_code=500,
        )
