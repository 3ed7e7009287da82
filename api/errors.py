"""Every error the agent API answers with, as one tree; each maps to a status and a code.

    ApiError                      500 internal_error
    ├── Unauthorized              401 unauthorized     (no token, or one that is not valid)
    ├── Forbidden                 403 forbidden        (the role may not do this)
    ├── NotFound                  404 not_found        (no such ticket, contact, agent)
    ├── Conflict                  409 conflict         (the change contradicts the ticket's state)
    ├── PreconditionFailed        412 version_mismatch (If-Match names an older version)
    └── Invalid                   422 invalid          (a value the API cannot accept)

The body is always ``{"error": {"code", "message", "request_id"[, "details"]}}``; the message says
what to do. Request validation errors from FastAPI are reported in the same shape.
"""

from __future__ import annotations

from typing import Any, ClassVar

__all__ = ["ApiError", "Conflict", "Forbidden", "Invalid", "NotFound", "PreconditionFailed", "Unauthorized"]


class ApiError(Exception):
    status: ClassVar[int] = 500
    default_code: ClassVar[str] = "internal_error"

    def __init__(self, message: str, *, code: str | None = None, details: Any = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code or self.default_code
        self.details = details
        self.headers = headers or {}


class Unauthorized(ApiError):
    status = 401
    default_code = "unauthorized"


class Forbidden(ApiError):
    status = 403
    default_code = "forbidden"


class NotFound(ApiError):
    status = 404
    default_code = "not_found"


class Conflict(ApiError):
    status = 409
    default_code = "conflict"


class PreconditionFailed(ApiError):
    status = 412
    default_code = "version_mismatch"


class Invalid(ApiError):
    status = 422
    default_code = "invalid"
