"""Shapes shared by every resource: the error body, the error responses OpenAPI documents, and
the bases of request models.

A route (or a router) lists the errors it answers with, ``responses=error_responses(404, 409)``,
or takes them all, ``responses=ERROR_RESPONSES``. Every one is documented with ``ErrorBody``, the
one shape ``api.app`` answers errors with, validation errors (``422``) included, so a client
generated from ``/openapi.json`` parses every error the same way.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["ERROR_RESPONSES", "ErrorBody", "ErrorDetail", "QueryParams", "RequestBody", "error_responses"]


class ErrorDetail(BaseModel):
    code: str = Field(description="Stable, for programs: not_found, version_mismatch, invalid, ... or a "
                                  "narrower code such as agent_exists")
    message: str = Field(description="For people: what went wrong and what to do")
    request_id: str = Field(description="Quote it when reporting a problem; it is in the server log "
                                        "and the X-Request-ID header")
    details: Any = Field(None, description="More where there is more: for invalid requests a list of "
                                           "{where, message}, one per bad field")


class ErrorBody(BaseModel):
    error: ErrorDetail


class RequestBody(BaseModel):
    """A base for request bodies: an unknown field is an error (422) rather than ignored, so a
    typo ("team" for "teams") is reported instead of silently doing nothing; and values are
    taken as the schema types them (strict: ``"active": 0`` or ``"limit": "5"`` is an error, not
    a guess)."""

    model_config = ConfigDict(extra="forbid", strict=True)


class QueryParams(BaseModel):
    """A base for a route's query parameters (``Annotated[Model, Query()]``): an unknown one is
    an error (422), so ``?includeInactive=true`` does not silently mean the default."""

    model_config = ConfigDict(extra="forbid")


def _error(description: str) -> dict[str, Any]:
    return {"model": ErrorBody, "description": description}


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: _error("No API token, or one that is not valid (unknown, revoked, or its agent is inactive): "
                "send 'Authorization: Bearer od_…'"),
    403: _error("The agent's role may not do this"),
    404: _error("No such resource"),
    409: _error("The change contradicts the resource's state"),
    412: _error("If-Match names an older version: read again and redo the change"),
    422: _error("A value the API cannot accept"),
}
# Not in ERROR_RESPONSES (only routes with a body answer it): a body that cannot be decoded.
_BAD_BODY: dict[int | str, dict[str, Any]] = {400: _error("The body cannot be read at all: send JSON in UTF-8")}


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The documented error responses for ``statuses``, for a route's or router's ``responses=``."""
    known: dict[int | str, dict[str, Any]] = {**ERROR_RESPONSES, **_BAD_BODY}
    unknown = [s for s in statuses if s not in known]
    if unknown:
        raise ValueError(f"no documented error response for {unknown}; known: {sorted(map(str, known))}")
    return {status: known[status] for status in statuses}
