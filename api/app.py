"""Mount the agent API on the HTTP app: its routers, the request id, the JSON error shape."""

from __future__ import annotations

import functools
import importlib
import logging
import re
import uuid
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exception_handlers import http_exception_handler, request_validation_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.context import ApiContext
from api.errors import ApiError

__all__ = ["API_PREFIX", "REQUEST_ID_HEADER", "install_api"]

log = logging.getLogger(__name__)

API_PREFIX = "/api"
REQUEST_ID_HEADER = "X-Request-ID"
# One module per resource, each with a ``router``: a new resource is a new module listed here.
_RESOURCES = ("api.tickets", "api.contacts", "api.agents")
_METHODS = frozenset({"get", "put", "post", "delete", "options", "head", "patch", "trace"})
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


def is_api(request: Request) -> bool:
    path = request.url.path
    return path == API_PREFIX or path.startswith(API_PREFIX + "/")


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

    @app.exception_handler(StarletteHTTPException)
    async def on_http_error(request: Request, exc: StarletteHTTPException) -> Any:
        # Starlette's own answers (no such route, method not allowed) in the API's error shape;
        # the other paths (web form, webhooks) keep FastAPI's default.
        if not is_api(request):
            return await http_exception_handler(request, exc)
        headers = dict(exc.headers or {})
        if exc.status_code == 405:
            # Starlette names only the methods of the first route on the path; a path served by
            # several routes (GET and POST /api/agents) allows all of theirs, as documented.
            headers["Allow"] = ", ".join(_documented_methods(request)) or headers.get("Allow", "")
        code, message = _http_error(request, exc.status_code, str(exc.detail), headers.get("Allow", ""))
        return JSONResponse(error_body(request, code, message), status_code=exc.status_code, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def on_invalid(request: Request, exc: RequestValidationError) -> Any:
        if not is_api(request):
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


def _documented_methods(request: Request) -> list[str]:
    """The methods the OpenAPI description gives the request's path (cached by FastAPI). The
    description rather than the routes: FastAPI's included routers keep theirs private."""
    methods: set[str] = set()
    for template, item in request.app.openapi().get("paths", {}).items():
        if _template(template).fullmatch(request.url.path):
            methods |= {m.upper() for m in item if m in _METHODS}
    return sorted(methods)


@functools.lru_cache(maxsize=512)
def _template(path: str) -> re.Pattern[str]:
    """``/api/agents/{email}`` → a pattern; a parameter is one path segment, as Starlette's."""
    return re.compile(re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(path)))


def _http_error(request: Request, status: int, detail: str, allowed: str) -> tuple[str, str]:
    where = f"{request.method} {request.url.path}"
    if status == 404:
        return "not_found", f"no API route {where}; /openapi.json (or /docs) lists them"
    if status == 400:
        # FastAPI's answer to a body it cannot decode (not UTF-8, a broken multipart).
        return "bad_request", f"the request body cannot be read ({detail}): send JSON in UTF-8"
    if status == 405:
        return "method_not_allowed", (f"{request.method} is not allowed on {request.url.path}"
                                      + (f"; use {allowed}" if allowed else ""))
    # Anything else Starlette raises keeps its status; its detail is the best message there is.
    return f"http_{status}", detail
