"""The agent API's contacts resource: ``/api/contacts``.

A contact is named in the path by its id, an email address, a phone number (with its country
code; ``+`` may be sent as is or as ``%2B``), a Slack user id, or ``kind:address``. Every route
needs an agent's token. Each route is one call of ``tickets.contacts`` in one transaction.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Path, Query, Response
from pydantic import BaseModel, ConfigDict, Field

from api.auth import CurrentAgent, require_agent
from api.context import ApiContext, api_context
from api.errors import ApiError, Conflict, Invalid, NotFound
from api.schemas import ErrorBody
from tickets.contacts import (
    DEFAULT_LIMIT,
    IDENTITY_KINDS,
    ContactDetail,
    ContactError,
    ContactPage,
    ContactSummary,
    HistoryPage,
    IdentityKind,
    MergeResult,
    add_identity,
    contact_history,
    list_contacts,
    merge_contacts,
    resolve_contact,
    show_contact,
)

__all__ = ["router"]


_ERRORS = {
    401: "no API token, or one that is not valid",
    404: "no contact goes by that id or address",
    409: "the identity belongs to another contact: merge the two instead",
    422: "a value the API cannot accept: the message says which, and what to send",
}


def _documented(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` for the error statuses a route answers with."""
    return {status: {"model": ErrorBody, "description": _ERRORS[status]} for status in statuses}


router = APIRouter(prefix="/contacts", tags=["contacts"], dependencies=[Depends(require_agent)],
                   responses=_documented(401))

Ctx = Annotated[ApiContext, Depends(api_context)]
ContactKey = Annotated[str, Path(
    description="the contact's id, an email address, a phone number (+4915112345678), a Slack user id "
                "(U024BE7LH) or kind:address",
    examples=["12", "ana@example.com", "+4915112345678"],
)]
Limit = Annotated[int, Query(ge=1, le=200, description="rows per page")]
Cursor = Annotated[str | None, Query(max_length=200, description="next_cursor of the previous page")]

_API_ERRORS: dict[str, type[ApiError]] = {"not_found": NotFound, "conflict": Conflict, "invalid": Invalid}


@contextmanager
def _answering() -> Iterator[None]:
    """The store's contact errors as the API's, with their code and message as they are."""
    try:
        yield
    except ContactError as exc:
        raise _API_ERRORS[exc.reason](exc.message, code=exc.code, details=exc.details) from None


class IdentityIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: IdentityKind = Field(description=f"one of {', '.join(IDENTITY_KINDS)}")
    address: str = Field(min_length=1, max_length=320,
                         description="ana@example.com, +4915112345678 (E.164, spaces allowed), U024BE7LH")


class ContactMergeIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    into: str = Field(min_length=1, max_length=320,
                      description="the contact that remains: its id, an email address or a phone number")


@router.get("", response_model=ContactPage, responses=_documented(422),
            summary="List and search contacts, newest first")
def list_route(
    ctx: Ctx,
    q: Annotated[str | None, Query(max_length=320,
                                   description="part of a name or of any email, phone or Slack id")] = None,
    cursor: Cursor = None,
    limit: Limit = DEFAULT_LIMIT,
) -> ContactPage:
    with _answering(), ctx.db.read() as session:
        return list_contacts(session, q, cursor=cursor, limit=limit)


@router.get("/{contact}", response_model=ContactDetail, responses=_documented(404, 422),
            summary="One contact: identities, ticket counts and the first page of its history")
def show_route(ctx: Ctx, contact: ContactKey, history_limit: Limit = DEFAULT_LIMIT) -> ContactDetail:
    with _answering(), ctx.db.read() as session:
        return show_contact(session, contact, history_limit=history_limit)


@router.get("/{contact}/history", response_model=HistoryPage, responses=_documented(404, 422),
            summary="Every ticket of the contact across channels, newest first")
def history_route(ctx: Ctx, contact: ContactKey, cursor: Cursor = None, limit: Limit = DEFAULT_LIMIT) -> HistoryPage:
    with _answering(), ctx.db.read() as session:
        return contact_history(session, resolve_contact(session, contact), cursor=cursor, limit=limit)


@router.post(
    "/{contact}/identities", response_model=ContactSummary, status_code=201,
    responses={200: {"model": ContactSummary, "description": "the contact has this identity already"},
               **_documented(404, 409, 422)},
    summary="Add an email address, phone number or Slack user to a contact",
)
def add_identity_route(ctx: Ctx, contact: ContactKey, body: Annotated[IdentityIn, Body()],
                       response: Response) -> ContactSummary:
    with _answering(), ctx.db.write() as session:
        summary, added = add_identity(session, resolve_contact(session, contact), body.kind, body.address)
    if not added:
        response.status_code = 200
    return summary


@router.post(
    "/{contact}/merge", response_model=MergeResult,
    responses=_documented(404, 422),
    summary="Merge this contact into another: its identities and tickets move there, it is deleted",
)
def merge_route(ctx: Ctx, agent: CurrentAgent, contact: ContactKey, body: Annotated[ContactMergeIn, Body()]) -> MergeResult:
    with _answering(), ctx.db.write() as session:
        source = resolve_contact(session, contact)
        target = resolve_contact(session, body.into)
        return merge_contacts(session, source, target, actor=agent.email)
