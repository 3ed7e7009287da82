"""The agent API's tickets: list, read with the timeline, change, reply, note, escalate, merge, link.

Every write answers with the ticket's new version in the ``ETag`` header; send it back as
``If-Match`` and a change made meanwhile by someone else is refused with ``412`` instead of being
overwritten. Without ``If-Match`` each change still applies atomically to the current ticket.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Header, Path, Query, Response
from pydantic import BaseModel, ConfigDict, Field

from api.auth import CurrentAgent
from api.context import ApiContext, api_context
from api.errors import Conflict, Invalid, NotFound, PreconditionFailed
from api.schemas import ERROR_RESPONSES
from intake.envelope import AttachmentRef
from tickets.agents import AgentRecord
from tickets.models import Priority, Status
from tickets.replies import notify_staff, send_reply
from tickets.search import UNASSIGNED, BadCursor, BadFilter, TicketFilter, get_ticket_with_timeline, search_tickets
from tickets.work import (
    Actor,
    NotAllowed,
    TicketChange,
    TicketNotFound,
    VersionMismatch,
    WorkError,
    add_note,
    change_ticket,
    escalate,
    link_tickets,
    merge_tickets,
)

__all__ = ["router"]

router = APIRouter(tags=["tickets"], responses=ERROR_RESPONSES)

Context = Annotated[ApiContext, Depends(api_context)]
Ref = Annotated[str, Path(pattern=r"^[A-Za-z][A-Za-z0-9]{0,9}-\d{1,18}$", description="A ticket reference, e.g. OD-1042")]
IfMatch = Annotated[str | None, Header(alias="If-Match", description="The ETag of the version you read")]
StatusName = Literal["new", "open", "pending", "escalated", "resolved", "closed"]
PriorityName = Literal["low", "normal", "high", "urgent"]
MAX_ATTACHMENT_BYTES = 25 * 1024 * 1024


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


# --- response shapes ----------------------------------------------------------------------------
class TicketSummary(BaseModel):
    ref: str
    status: str
    priority: str
    queue: str
    category: str | None = None
    tags: list[str] = []
    assignee: str | None = None
    channel: str
    subject: str
    contact: str
    contact_name: str = ""
    message_count: int
    version: int
    received_at: str
    created_at: str
    updated_at: str


class TicketPage(BaseModel):
    items: list[TicketSummary]
    next_cursor: str | None = Field(None, description="Pass as ?cursor= for the next page; null on the last")


class TimelineEntry(BaseModel):
    id: int
    direction: str = Field(description="inbound, outbound, note (internal) or event (a change)")
    channel: str
    actor: str | None = Field(None, description="Who: an agent's email, customer, system")
    sender: str = ""
    recipients: list[str] = []
    subject: str = ""
    text: str = ""
    html: str | None = None
    attachments: list[dict[str, Any]] = []
    message_id: str | None = None
    event: dict[str, Any] | None = None
    created_at: str


class TicketLinkOut(BaseModel):
    ref: str
    kind: str = Field(description="related, merged or follow_up")
    direction: str = Field("", description="to: this ticket made the link (merged into it); from: the other did")


class Ticket(TicketSummary):
    sla_policy: str | None = None
    facts: dict[str, Any] = {}
    merged_into: str | None = None
    resolved_at: str | None = None
    closed_at: str | None = None
    reopened_count: int = 0
    links: list[TicketLinkOut] = []
    messages: list[TimelineEntry] = Field(description="The timeline, oldest first")
    next_after_id: int | None = Field(None, description="With timeline_limit: pass as after_id for more")


class ReplyOut(BaseModel):
    ticket: str
    version: int
    status: str
    outbox_id: int
    channel: str
    recipient: str
    message_id: str = Field(description="The channel's idempotency key (our Message-ID for email)")


class NoteOut(BaseModel):
    ticket: str
    version: int
    note_id: int
    notified: list[str]


# --- request shapes -----------------------------------------------------------------------------
class TicketPatch(_Request):
    status: StatusName | None = None
    priority: PriorityName | None = None
    queue: Annotated[str, Field(min_length=1, max_length=100)] | None = None
    assignee: str | None = Field(None, description="An agent's email; an empty string unassigns")
    category: Annotated[str, Field(max_length=100)] | None = None
    subject: Annotated[str, Field(min_length=1, max_length=2000)] | None = None
    tags: list[Annotated[str, Field(min_length=1, max_length=100)]] | None = Field(None, description="The whole list")
    add_tags: list[Annotated[str, Field(min_length=1, max_length=100)]] = []
    remove_tags: list[Annotated[str, Field(min_length=1, max_length=100)]] = []
    reason: Annotated[str, Field(max_length=2000)] | None = Field(None, description="Shown with a status change")


class AttachmentIn(_Request):
    filename: Annotated[str, Field(min_length=1, max_length=255)]
    content_type: Annotated[str, Field(min_length=3, max_length=200, pattern=r"^[\w.+-]+/[\w.+-]+$")] = "application/octet-stream"
    content_base64: str


class ReplyIn(_Request):
    text: Annotated[str, Field(min_length=1, max_length=200_000)]
    channel: Annotated[str, Field(min_length=1, max_length=20)] | None = Field(
        None, description="Reply through this channel instead of the customer's (e.g. email)")
    status: StatusName | None = Field(
        "pending", description="The status after the reply (default pending: waiting on the customer); null keeps it")
    attachments: list[AttachmentIn] = Field([], max_length=20)


class TicketNoteIn(_Request):
    text: Annotated[str, Field(min_length=1, max_length=200_000)]
    notify: list[Annotated[str, Field(min_length=3, max_length=320)]] = Field(
        [], max_length=50, description="Agents' emails to tell about the note")


class EscalateIn(_Request):
    queue: Annotated[str, Field(min_length=1, max_length=100)]
    reason: Annotated[str, Field(min_length=1, max_length=2000)]
    priority: PriorityName | None = None


class TicketMergeIn(_Request):
    into: Ref


class TicketLinkIn(_Request):
    ticket: Ref


# --- helpers ------------------------------------------------------------------------------------
def _actor(agent: AgentRecord) -> Actor:
    return Actor(agent.email, agent.name)


def _version(if_match: str | None) -> int | None:
    if if_match is None or if_match.strip() == "*":
        return None
    tag = if_match.strip().removeprefix("W/").strip('"')
    if not tag.isdigit():
        raise Invalid(f"If-Match must be the ETag the ticket was read with (e.g. \"3\"), not {if_match!r}",
                      code="bad_if_match")
    return int(tag)


@contextmanager
def _translated() -> Iterator[None]:
    """The store's errors as the API's."""
    try:
        yield
    except VersionMismatch as exc:
        raise PreconditionFailed(exc.message, details={"current_version": exc.current},
                                 headers={"ETag": f'"{exc.current}"'}) from None
    except TicketNotFound as exc:
        raise NotFound(exc.message) from None
    except NotAllowed as exc:
        raise Conflict(exc.message) from None
    except WorkError as exc:
        raise Invalid(exc.message, code=exc.code) from None


@contextmanager
def _writing(ctx: ApiContext) -> Iterator[Any]:
    """A write transaction that runs the ``on: status_changed`` rules before it commits, and
    hands the outbox rows it wrote to delivery after the commit."""
    from routing.status_rules import run_status_rules

    with _translated():
        with ctx.db.write() as session:
            session.info["outbox"] = []
            yield session
            outbox = [*session.info.pop("outbox"), *run_status_rules(session, ctx.rules(), ctx.composer)]
    if outbox:
        ctx.on_outbox(tuple(outbox))


def _check_queue(ctx: ApiContext, queue: str | None) -> None:
    """A queue the rules file does not define would strand the ticket where nobody works."""
    if queue is None:
        return
    rules = ctx.rules()
    known = set(getattr(rules, "queues", {}) or {}) if rules is not None else set()
    if known and queue not in known:
        raise Invalid(f"no queue {queue!r} in the rules file; one of {', '.join(sorted(known))}",
                      code="unknown_queue")


def _read(ctx: ApiContext, ref: str, response: Response, *, timeline_limit: int | None = None,
          after_id: int | None = None) -> dict[str, Any]:
    with ctx.db.read() as session:
        found = get_ticket_with_timeline(session, ref, timeline_limit=timeline_limit, after_id=after_id)
    if found is None:
        raise NotFound(f"no ticket {ref} (list tickets with GET /api/tickets)")
    response.headers["ETag"] = f'"{found["version"]}"'
    return found


# --- routes -------------------------------------------------------------------------------------
@router.get("/tickets", response_model=TicketPage, summary="List tickets, newest change first")
def list_tickets(
    ctx: Context,
    agent: CurrentAgent,
    status: Annotated[list[StatusName] | None, Query(description="Repeat for several")] = None,
    queue: Annotated[str | None, Query(max_length=100)] = None,
    assignee: Annotated[str | None, Query(max_length=320, description="An email, or 'unassigned'")] = None,
    priority: PriorityName | None = None,
    channel: Annotated[str | None, Query(max_length=20)] = None,
    tag: Annotated[str | None, Query(max_length=100)] = None,
    category: Annotated[str | None, Query(max_length=100)] = None,
    contact: Annotated[int | None, Query(ge=1, description="A contact id")] = None,
    q: Annotated[str | None, Query(max_length=200, description="Text in the subject")] = None,
    created_from: datetime | None = None,
    created_to: datetime | None = None,
    updated_from: datetime | None = None,
    updated_to: datetime | None = None,
    order: Annotated[Literal["updated", "created"], Query(
        description="updated: most recently changed first (a ticket changed while paging moves to the "
        "front); created: newest first, every ticket exactly once")] = "updated",
    cursor: Annotated[str | None, Query(max_length=500)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> Any:
    for name, value in (("created_from", created_from), ("created_to", created_to),
                        ("updated_from", updated_from), ("updated_to", updated_to)):
        if value is not None and value.tzinfo is None:
            raise Invalid(f"{name} needs a timezone, e.g. 2026-12-01T00:00:00Z", code="naive_datetime")
    try:
        flt = TicketFilter(
            status=tuple(status or ()), queue=queue,
            assignee=UNASSIGNED if assignee in ("none", UNASSIGNED) else assignee, priority=priority,
            channel=channel, tag=tag, category=category, contact_id=contact, text=q,
            created_from=created_from, created_to=created_to, updated_from=updated_from, updated_to=updated_to,
        )
        with ctx.db.read() as session:
            page = search_tickets(session, flt, cursor=cursor, limit=limit, order=order)
    except BadCursor as exc:
        raise Invalid(str(exc), code="bad_cursor") from None
    except BadFilter as exc:
        raise Invalid(str(exc), code="bad_filter") from None
    return {"items": page.items, "next_cursor": page.next_cursor}


@router.get("/tickets/{ref}", response_model=Ticket, summary="One ticket with its whole timeline")
def get_ticket(ref: Ref, ctx: Context, agent: CurrentAgent, response: Response,
               timeline_limit: Annotated[int | None, Query(ge=1, le=1000, description="Page the timeline")] = None,
               after_id: Annotated[int | None, Query(ge=0, le=2**62, description="The last entry id seen")] = None,
               ) -> Any:
    return _read(ctx, ref, response, timeline_limit=timeline_limit, after_id=after_id)


@router.patch("/tickets/{ref}", response_model=Ticket, summary="Change status, priority, queue, assignee, tags, ...")
def patch_ticket(ref: Ref, body: TicketPatch, ctx: Context, agent: CurrentAgent, response: Response,
                 if_match: IfMatch = None) -> Any:
    _check_queue(ctx, body.queue)
    change = TicketChange(
        status=body.status, priority=body.priority, queue=body.queue, assignee=body.assignee,
        category=body.category, subject=body.subject, tags=body.tags, add_tags=body.add_tags,
        remove_tags=body.remove_tags, reason=body.reason,
    )
    if change.is_empty():
        raise Invalid("nothing to change: name at least one field", code="empty_change")
    with _writing(ctx) as session:
        change_ticket(session, ref, change, _actor(agent), expected_version=_version(if_match))
    return _read(ctx, ref, response)


@router.post("/tickets/{ref}/replies", response_model=ReplyOut, status_code=201,
             summary="A public reply, sent through the ticket's channel (or the one named)")
def reply(ref: Ref, body: ReplyIn, ctx: Context, agent: CurrentAgent, response: Response,
          if_match: IfMatch = None) -> Any:
    refs = _attachments(ctx, body.attachments)
    with _writing(ctx) as session:
        replied = send_reply(session, ref, body.text, _actor(agent), ctx.composer, channel=body.channel,
                             attachments=refs, status_after=body.status, expected_version=_version(if_match))
        session.info["outbox"].append(replied.outbox_id)
        out = {"ticket": replied.ticket.ref, "version": replied.ticket.version,
               "status": replied.ticket.status, "outbox_id": replied.outbox_id, "channel": replied.channel,
               "recipient": replied.recipient, "message_id": replied.idempotency_key}
    response.headers["ETag"] = f'"{out["version"]}"'
    return out


def _attachments(ctx: ApiContext, given: list[AttachmentIn]) -> list[AttachmentRef]:
    blobs = ctx.blobs
    refs = []
    for item in given:
        try:
            data = base64.b64decode(item.content_base64, validate=True)
        except (binascii.Error, ValueError):
            raise Invalid(f"attachment {item.filename!r}: content_base64 is not valid base64",
                          code="bad_attachment") from None
        if len(data) > MAX_ATTACHMENT_BYTES:
            raise Invalid(f"attachment {item.filename!r} is {len(data)} bytes; the limit is "
                          f"{MAX_ATTACHMENT_BYTES}", code="attachment_too_large")
        digest = blobs.put(data)
        refs.append(AttachmentRef(sha256=digest, size=len(data), content_type=item.content_type,
                                  filename=item.filename))
    return refs


@router.post("/tickets/{ref}/notes", response_model=NoteOut, status_code=201,
             summary="An internal note: never sent to the customer")
def note(ref: Ref, body: TicketNoteIn, ctx: Context, agent: CurrentAgent, response: Response,
         if_match: IfMatch = None) -> Any:
    from tickets.agents import known_agent_emails

    with _writing(ctx) as session:
        wanted = [e.strip().lower() for e in body.notify]
        if wanted:
            unknown = sorted(set(wanted) - known_agent_emails(session))
            if unknown:
                raise Invalid(f"not active agents: {', '.join(unknown)} (notes notify agents only)",
                              code="unknown_agent")
        ticket, note_id = add_note(session, ref, body.text, _actor(agent), expected_version=_version(if_match))
        ids = notify_staff(session, ticket, [e for e in wanted if e != agent.email],
                           subject=f"[{ticket.ref}] Note from {agent.name}: {ticket.subject}",
                           text=f"{agent.name} wrote an internal note on {ticket.ref}:\n\n{body.text}\n",
                           composer=ctx.composer) if wanted else []
        session.info["outbox"].extend(ids)
        out = {"ticket": ticket.ref, "version": ticket.version, "note_id": note_id, "notified": wanted}
    response.headers["ETag"] = f'"{out["version"]}"'
    return out


@router.post("/tickets/{ref}/escalate", response_model=Ticket, summary="Escalate to another queue with a reason")
def escalate_ticket(ref: Ref, body: EscalateIn, ctx: Context, agent: CurrentAgent, response: Response,
                    if_match: IfMatch = None) -> Any:
    _check_queue(ctx, body.queue)
    with _writing(ctx) as session:
        escalate(session, ref, queue=body.queue, reason=body.reason, actor=_actor(agent), priority=body.priority,
                 expected_version=_version(if_match))
    return _read(ctx, ref, response)


@router.post("/tickets/{ref}/merge", response_model=Ticket,
             summary="Merge this ticket into another; returns the ticket merged into")
def merge(ref: Ref, body: TicketMergeIn, ctx: Context, agent: CurrentAgent, response: Response,
          if_match: IfMatch = None) -> Any:
    with _writing(ctx) as session:
        target = merge_tickets(session, ref, body.into, _actor(agent), expected_version=_version(if_match))
        target_ref = target.ref or body.into
    return _read(ctx, target_ref, response)


@router.post("/tickets/{ref}/links", response_model=Ticket, summary="Link a related ticket")
def link(ref: Ref, body: TicketLinkIn, ctx: Context, agent: CurrentAgent, response: Response) -> Any:
    with _writing(ctx) as session:
        link_tickets(session, ref, body.ticket, _actor(agent))
    return _read(ctx, ref, response)


# Keep the enums and the Literal names in step (a new status must be added to both).
assert set(StatusName.__args__) == {s.value for s in Status}  # type: ignore[attr-defined]
assert set(PriorityName.__args__) == {p.value for p in Priority}  # type: ignore[attr-defined]
