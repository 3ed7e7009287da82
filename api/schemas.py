"""Shapes shared by every resource: the error body, and the error responses OpenAPI documents."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

__all__ = ["ERROR_RESPONSES", "ErrorBody", "ErrorDetail"]


class ErrorDetail(BaseModel):
    code: str = Field(description="Stable, for programs: not_found, version_mismatch, invalid, ...")
    message: str = Field(description="For people: what went wrong and what to do")
    request_id: str = Field(description="Quote it when reporting a problem; it is in the server log")
    details: Any = None


class ErrorBody(BaseModel):
    error: ErrorDetail


def _error(description: str) -> dict[str, Any]:
    return {"model": ErrorBody, "description": description}


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: _error("No API token, or one that is not valid"),
    403: _error("The agent's role may not do this"),
    404: _error("No such resource"),
    409: _error("The change contradicts the resource's state"),
    412: _error("If-Match names an older version: read again and redo the change"),
    422: _error("A value the API cannot accept"),
}
