"""The agent's ticket list: filters, keyset pages newest first, and one ticket with its timeline.

``search_tickets`` pages by (sort value, id), newest first, with an opaque cursor that names the
last row shown: the next page is "everything before that row", read from an index at the same
cost on page 1 and page 1,000 (no OFFSET). What a cursor means while tickets change:

* A ticket created while someone pages lands before the first page, never on a later one, so it
  neither shifts nor repeats the rows still to come.
* ``order="created"``: created_at never changes, so paging to the end visits every ticket that
  existed (and matched) when paging began exactly once, whatever is updated meanwhile.
* ``order="updated"`` (the default, an agent's live view): a ticket updated while someone pages
  moves to the front. If the pager had already seen it, it is not shown again; if not, it is
  skipped by the pages still to come (it is on page 1 now). No ticket is ever shown twice, since
  updated_at only moves forward (on one clock: hosts with skewed clocks could move it back).

What a page costs (PostgreSQL; ``Ticket.__table_args__`` has the indexes). The indexes lead
with status, queue, assignee and contact and go on with (updated_at, id): a view filtered by any
of these reads its page straight from one index, on page 1 as on page 1,000, at any table size.
The other filters (priority, channel, tag, category, the created range under the updated order)
are checked on the rows that index, or the plain (updated_at, id) / (created_at, id) one,
yields: cheap while matches are common among those rows, and a walk through many of them when
they are rare (e.g. status in three values with priority=urgent at a million tickets: ~3,500
rows for a page, ~10-100 ms depending on the cache). Text search uses the trigram index on
subjects when PostgreSQL has pg_trgm (words of three or more characters); without it, and for
shorter words, it reads rows the same way. bench/README.md (the ticket_api figure) has the
measurements.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, get_args

from sqlalchemy import (
    ColumnElement,
    bindparam,
    case,
    func,
    literal,
    or_,
    select,
    tuple_,
    type_coerce,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Session

from tickets.models import (
    Contact,
    ContactIdentity,
    Priority,
    Status,
    Ticket,
    TicketLink,
    TicketMessage,
    table_of,
)
from tickets.queries import MESSAGE_DIRECTIONS, summary_of, timeline_entry

__all__ = [
    "MAX_LIMIT",
    "UNASSIGNED",
    "BadCursor",
    "BadFilter",
    "Order",
    "TicketFilter",
    "TicketPage",
    "get_ticket_with_timeline",
    "search_tickets",
]

Order = Literal["updated", "created"]
# ``assignee=UNASSIGNED`` asks for tickets nobody owns; an agent's email always has an "@".
UNASSIGNED = "unassigned"
MAX_LIMIT = 200

_STATUSES = frozenset(s.value for s in Status)
_PRIORITIES = frozenset(p.value for p in Priority)
_ORDERS = frozenset(get_args(Order))
_tickets = table_of(Ticket)
_contacts = table_of(Contact)
_identities = table_of(ContactIdentity)
_messages = table_of(TicketMessage)


class BadFilter(ValueError):
    """A filter, order or limit that cannot be searched (an unknown status, a naive datetime)."""


class BadCursor(ValueError):
    """A cursor that this search did not make (edited, truncated, or from the other order)."""

    def __init__(self, detail: str) -> None:
        super().__init__(f"bad cursor ({detail}); start again without a cursor")


@dataclass(frozen=True)
class TicketFilter:
    """What an agent's view narrows the list to; every field given must match (AND).

    ``status`` is one status or several (any of them). ``assignee`` is an agent's email, or
    ``UNASSIGNED``. ``tag`` matches a ticket carrying that tag among others. The date ranges
    are half-open, ``from <= t < to``, on UTC-aware datetimes. ``text`` matches tickets whose
    subject contains every word of it, case-insensitively (on SQLite for ASCII letters only),
    anywhere in the subject, so "INV-1042" finds "Invoice INV-1042 shows the wrong VAT". It
    does not search message bodies, notes, contact names or addresses, tags or the reference
    (open a known reference with ``get_ticket_with_timeline``): those would need a full-text
    index over the messages, which the store does not keep. Merged tickets (whose messages now
    live on the ticket they were merged into) are left out unless ``include_merged``.
    """

    status: str | Sequence[str] | None = None
    queue: str | None = None
    assignee: str | None = None
    priority: str | None = None
    channel: str | None = None
    tag: str | None = None
    category: str | None = None
    contact_id: int | None = None
    text: str | None = None
    created_from: datetime | None = None
    created_to: datetime | None = None
    updated_from: datetime | None = None
    updated_to: datetime | None = None
    include_merged: bool = False

    def __post_init__(self) -> None:
        # Normalised once so the dataclass stays hashable and the query builder sees one shape.
        statuses = (self.status,) if isinstance(self.status, str) else tuple(self.status or ())
        unknown = sorted(set(statuses) - _STATUSES)
        if unknown:
            raise BadFilter(f"unknown status {', '.join(unknown)}; one of {', '.join(sorted(_STATUSES))}")
        object.__setattr__(self, "status", tuple(dict.fromkeys(statuses)) or None)
        if self.priority is not None and self.priority not in _PRIORITIES:
            raise BadFilter(f"unknown priority {self.priority}; one of {', '.join(sorted(_PRIORITIES))}")
        for name in ("created_from", "created_to", "updated_from", "updated_to"):
            value = getattr(self, name)
            if value is not None and value.tzinfo is None:
                raise BadFilter(f"{name} has no time zone; give a UTC-aware datetime")
        text = " ".join((self.text or "").split())
        object.__setattr__(self, "text", text or None)

    @property
    def statuses(self) -> tuple[str, ...]:
        return self.status if isinstance(self.status, tuple) else ()


@dataclass(frozen=True)
class TicketPage:
    items: list[dict[str, Any]]
    # Pass it back as ``cursor`` for the next page; None on the last page.
    next_cursor: str | None


def _like_escape(word: str) -> str:
    return word.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _conditions(flt: TicketFilter, dialect: str) -> list[ColumnElement[bool]]:
    where: list[ColumnElement[bool]] = []
    if flt.statuses:
        where.append(_tickets.c.status.in_(flt.statuses) if len(flt.statuses) > 1
                     else _tickets.c.status == flt.statuses[0])
    for col, value in ((_tickets.c.queue, flt.queue), (_tickets.c.priority, flt.priority),
                       (_tickets.c.channel, flt.channel), (_tickets.c.category, flt.category),
                       (_tickets.c.contact_id, flt.contact_id)):
        if value is not None:
            where.append(col == value)
    if flt.assignee is not None:
        where.append(_tickets.c.assignee.is_(None) if flt.assignee == UNASSIGNED else _tickets.c.assignee == flt.assignee)
    if flt.tag is not None:
        where.append(_has_tag(flt.tag, dialect))
    for word in (flt.text or "").split():
        # On PostgreSQL the trigram index answers this for a rare word; for a common one the
        # planner rather walks the sort index, where matches come soon. LIKE's wildcards in the
        # word are escaped: "50%" means those three characters.
        where.append(_tickets.c.subject.ilike(f"%{_like_escape(word)}%", escape="\\"))
    for stamp, lo, hi in ((_tickets.c.created_at, flt.created_from, flt.created_to),
                          (_tickets.c.updated_at, flt.updated_from, flt.updated_to)):
        if lo is not None:
            where.append(stamp >= lo)
        if hi is not None:
            where.append(stamp < hi)
    if not flt.include_merged:
        where.append(_tickets.c.merged_into_id.is_(None))
    return where


def _has_tag(tag: str, dialect: str) -> ColumnElement[bool]:
    if dialect == "postgresql":
        return type_coerce(_tickets.c.tags, JSONB).contains([tag])
    # SQLite, the store's other database: the list's elements as a table.
    each = func.json_each(_tickets.c.tags).table_valued("value")
    return select(literal(1)).select_from(each).where(each.c.value == tag).exists()


def _encode_cursor(order: Order, value: datetime, ticket_id: int) -> str:
    raw = json.dumps({"o": order, "v": value.isoformat(), "i": ticket_id}, separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def _decode_cursor(cursor: str, order: Order) -> tuple[datetime, int]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        data = json.loads(raw)
    except (binascii.Error, ValueError) as exc:  # ValueError covers bad UTF-8 and bad JSON
        raise BadCursor("not a cursor this list made") from exc
    if not isinstance(data, dict) or set(data) != {"o", "v", "i"}:
        raise BadCursor("not a cursor this list made")
    if data["o"] != order:
        raise BadCursor(f"it pages order={data['o']}, this list is order={order}")
    ticket_id = data["i"]
    if not isinstance(ticket_id, int) or isinstance(ticket_id, bool) or not isinstance(data["v"], str):
        raise BadCursor("not a cursor this list made")
    try:
        value = datetime.fromisoformat(data["v"])
    except ValueError as exc:
        raise BadCursor("its position is not a timestamp") from exc
    if value.tzinfo is None:
        raise BadCursor("its position has no time zone")
    return value, ticket_id


# What a ticket's summary needs around its own columns. The contact's name and first address,
# the ref a ticket was merged into and its message count are subqueries per row, not joins:
# PostgreSQL evaluates such costly output columns after the sort and the LIMIT, so for the
# page's rows only (no count over all messages), whatever plan it picks for the filter.
_merged_into = _tickets.alias("merged_into")
_AROUND = (
    select(_contacts.c.name).where(_contacts.c.id == _tickets.c.contact_id)
    .scalar_subquery().label("contact_name"),
    select(_identities.c.address).where(_identities.c.contact_id == _tickets.c.contact_id)
    .order_by(_identities.c.id).limit(1).scalar_subquery().label("contact_address"),
    select(_merged_into.c.ref).where(_merged_into.c.id == _tickets.c.merged_into_id)
    .scalar_subquery().label("merged_into"),
    # Messages in and out, as everywhere: notes and events are no messages of the conversation.
    select(func.count()).select_from(_messages).where(_messages.c.ticket_id == _tickets.c.id,
                                                      _messages.c.direction.in_(MESSAGE_DIRECTIONS))
    .scalar_subquery().label("message_count"),
)
# Statements built once: constructing a 20-column statement per call cost more than running
# it. A list item reads no ``facts``, which can be large.
_PAGE = select(
    *(_tickets.c[name] for name in (
        "id", "ref", "status", "priority", "queue", "category", "tags", "assignee", "channel",
        "subject", "received_at", "created_at", "updated_at", "version",
    )),
    *_AROUND,
)
_ONE = select(_tickets, *_AROUND).where(_tickets.c.ref == bindparam("ref"))
_TIMELINE = (select(_messages)
             .where(_messages.c.ticket_id == bindparam("tid"), _messages.c.id > bindparam("after"))
             .order_by(_messages.c.id))
_TIMELINE_PAGE = _TIMELINE.limit(bindparam("limit"))
_links = table_of(TicketLink)
_outgoing = _links.c.ticket_id == bindparam("tid")
_LINKS = (
    select(_links.c.kind, _outgoing.label("outgoing"), _links.c.created_at, _tickets.c.ref)
    # The other end of the link, whichever side this ticket is on.
    .join(_tickets, _tickets.c.id == case((_outgoing, _links.c.other_id), else_=_links.c.ticket_id))
    .where(or_(_outgoing, _links.c.other_id == bindparam("tid")))
    .order_by(_links.c.created_at, _tickets.c.id)
)


def _summary(row: Any) -> dict[str, Any]:
    """``ticket_summary``'s shape plus ``version`` and ``merged_into``, from a row with the
    ticket's columns and ``_AROUND``'s."""
    out = summary_of(row, contact=row.contact_address or "", contact_name=row.contact_name or "",
                     message_count=row.message_count)
    out["version"] = row.version
    out["merged_into"] = row.merged_into
    return out


def search_tickets(
    session: Session,
    flt: TicketFilter | None = None,
    *,
    cursor: str | None = None,
    limit: int = 50,
    order: Order = "updated",
) -> TicketPage:
    """One page of the tickets matching ``flt``, newest first by ``order``.

    Items have the shape of ``tickets.queries.ticket_summary`` plus ``version`` and
    ``merged_into`` (the ref of the ticket a merged one was merged into, else None).
    One statement per page whatever its size.
    """
    if order not in _ORDERS:
        raise BadFilter(f"unknown order {order}; one of {', '.join(sorted(_ORDERS))}")
    if not 1 <= limit <= MAX_LIMIT:
        raise BadFilter(f"limit must be between 1 and {MAX_LIMIT}, not {limit}")
    flt = flt or TicketFilter()
    sort = _tickets.c.updated_at if order == "updated" else _tickets.c.created_at
    where = _conditions(flt, session.get_bind().dialect.name)
    if cursor is not None:
        value, last_id = _decode_cursor(cursor, order)
        # A row comparison, so PostgreSQL starts the index scan right after the cursor's row.
        where.append(tuple_(sort, _tickets.c.id) < tuple_(literal(value, sort.type), literal(last_id)))
    # Core rows, not ORM objects: building and tracking 50 Ticket, Contact and identity objects
    # was most of a page's time.
    rows = session.execute(
        _PAGE.where(*where).order_by(sort.desc(), _tickets.c.id.desc()).limit(limit + 1)
    ).all()
    rows, more = rows[:limit], len(rows) > limit
    items = [_summary(r) for r in rows]
    next_cursor = None
    if more:
        last = rows[-1]
        next_cursor = _encode_cursor(order, last.updated_at if order == "updated" else last.created_at, last.id)
    return TicketPage(items=items, next_cursor=next_cursor)


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def get_ticket_with_timeline(
    session: Session,
    ref: str,
    *,
    timeline_limit: int | None = None,
    after_id: int | None = None,
) -> dict[str, Any] | None:
    """One ticket with its timeline, oldest entry first; None when no ticket has this ref.

    Like ``tickets.queries.get_ticket``, and each entry also has its ``id``, ``actor`` and
    ``event``; the ticket also has ``version``, ``merged_into`` (a ref), ``resolved_at``,
    ``closed_at``, ``reopened_count`` and ``links``: each linked ticket's ``ref`` and ``kind``,
    with ``direction`` "to" when this ticket made the link (a merged ticket links "to" the one it
    was merged into) and "from" when the other did. A merged ticket is still readable by its ref.

    Long timelines page by id: ``timeline_limit`` entries after ``after_id``; ``next_after_id``
    is the id to pass for the next page (None when the timeline has no more). ``message_count``
    always counts the whole timeline's messages in and out. Three statements: the ticket, its entries, its links.
    """
    if timeline_limit is not None and timeline_limit < 1:
        raise BadFilter(f"timeline_limit must be at least 1, not {timeline_limit}")
    ticket = session.execute(_ONE, {"ref": ref.upper()}).first()
    if ticket is None:
        return None
    params = {"tid": ticket.id, "after": after_id if after_id is not None else 0}
    # Core rows, not ORM objects: a 1,000-entry timeline would otherwise spend most of its time
    # building and tracking objects nobody changes.
    if timeline_limit is None:
        entries = session.execute(_TIMELINE, params).all()
    else:
        entries = session.execute(_TIMELINE_PAGE, params | {"limit": timeline_limit + 1}).all()
    more = timeline_limit is not None and len(entries) > timeline_limit
    entries = entries[:timeline_limit]
    out = _summary(ticket)
    out.update(
        sla_policy=ticket.sla_policy,
        facts=ticket.facts or {},
        resolved_at=_iso(ticket.resolved_at),
        closed_at=_iso(ticket.closed_at),
        reopened_count=ticket.reopened_count,
        links=[
            {"ref": other, "kind": kind, "direction": "to" if outgoing else "from", "created_at": _iso(at)}
            for kind, outgoing, at, other in session.execute(_LINKS, {"tid": ticket.id})
        ],
        messages=[timeline_entry(m) | {"id": m.id, "actor": m.actor, "event": m.event} for m in entries],
        next_after_id=entries[-1].id if more else None,
    )
    return out
