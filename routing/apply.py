"""apply(): carry out a Decision, every write in the caller's one transaction.

Follow-up: record the message's thread keys on the ticket, reopen it, apply the follow-up rules'
changes (or hand a delivery report to the outbox), add the message to the timeline, notify.
New ticket: find or create the contact, choose the assignee, create the ticket, claim its thread
keys (a key taken meanwhile means a concurrent worker won the race: ``ThreadKeyTaken``, and the
router starts over), add the message, write the acknowledgement and notifications to the outbox
through the channel's composer.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from sqlalchemy import Connection, bindparam, insert, update
from sqlalchemy.exc import IntegrityError

from intake.envelope import Envelope, Party
from intake.outbound import Draft, OutboundIntent
from routing.assignment import choose_assignee
from routing.decide import DEFAULT_QUEUE, REOPEN_ON_REPLY
from routing.decision import Actions, Decision, DecisionKind
from routing.situation import Situation
from tickets.commands import (
    ContactRef,
    TicketRef,
    add_message,
    add_outbox,
    add_thread_keys,
    claim_thread_keys,
    create_ticket,
    find_or_create_contact,
    move_thread_keys,
    tickets_by_refs,
    update_ticket,
)
from tickets.delivery import report_delivery
from tickets.models import Direction, IntakeRow, Status, Ticket, TicketLink, table_of

if TYPE_CHECKING:
    from routing.facts import Facts
    from routing.rules import RuleSet

__all__ = ["Applied", "Composer", "ThreadKeyTaken", "apply_decision"]

log = logging.getLogger(__name__)

_intake = table_of(IntakeRow)
_tickets = table_of(Ticket)
_links = table_of(TicketLink)
# Who a customer-caused timeline event names.
CUSTOMER = "customer"
# Leaving these states because the customer wrote again counts as a reopen (the reopen rate).
_REOPENED_FROM = frozenset({Status.RESOLVED.value, Status.CLOSED.value})
_LINK_INTAKE = update(_intake).where(_intake.c.id == bindparam("iid")).values(ticket_id=bindparam("tid"))


class Composer(Protocol):
    """The channels' outbound side as routing sees it (``intake.registry.Registry``)."""

    def reply_channel(self, envelope: Envelope) -> str: ...

    def compose(self, intent: OutboundIntent, *, channel: str) -> Draft: ...

    def acknowledgement(self, channel: str, *, ref: str, customer_name: str, subject: str) -> tuple[str, str]: ...

    def watchers(self, *, queue: str, event: str) -> tuple[str, ...]: ...


class ThreadKeyTaken(Exception):
    """A concurrent worker claimed one of the new ticket's thread keys first: start over."""


@dataclass(frozen=True)
class Applied:
    ticket_id: int
    ticket_ref: str
    new_ticket: bool
    outbox_ids: tuple[int, ...] = ()


@dataclass(frozen=True)
class Context:
    """What apply needs beside the decision: the store's prefix, the composer, the rules."""

    ticket_prefix: str
    composer: Composer
    ruleset: RuleSet | None
    staff_channel: str = "email"


def apply_decision(
    conn: Connection,
    ctx: Context,
    *,
    intake_id: int,
    envelope: Envelope,
    situation: Situation,
    decision: Decision,
) -> Applied:
    if decision.kind is DecisionKind.FOLLOW_UP and situation.ticket is not None:
        return _follow_up(conn, ctx, intake_id, envelope, situation.ticket, decision)
    return _new_ticket(conn, ctx, intake_id, envelope, situation, decision)


def _follow_up(
    conn: Connection, ctx: Context, intake_id: int, envelope: Envelope, ticket: TicketRef, decision: Decision
) -> Applied:
    add_thread_keys(conn, ticket.id, envelope.recorded_keys)
    if envelope.delivery_report is not None:
        report = envelope.delivery_report
        report_delivery(conn, keys=report.keys, state=report.state, detail=report.detail)
    else:
        changes: dict[str, Any] = {"last_inbound_at": envelope.received_at}
        if ticket.status in REOPEN_ON_REPLY or ticket.status == Status.CLOSED.value:
            # (A closed ticket reaches here only when the closed_ticket_reply setting says reopen.)
            changes["status"] = Status.OPEN.value
            if ticket.status in _REOPENED_FROM:
                changes.update(reopened_count=_tickets.c.reopened_count + 1, resolved_at=None, closed_at=None)
        rule_changes = _changes_from(ticket, decision.actions)
        changes.update(rule_changes)
        if changes.get("status", ticket.status) != ticket.status:
            changes["version"] = _tickets.c.version + 1
            by_rule = "status" in rule_changes
            names = ", ".join(r.name for r in decision.rules) if by_rule else ""
            add_message(conn, ticket.id, direction=Direction.EVENT, channel=envelope.channel,
                        actor="rules" if by_rule else CUSTOMER, sender=envelope.sender.address,
                        created_at=envelope.received_at,
                        text=(f"The customer's message moved the ticket from {ticket.status} to {changes['status']}"
                              + (f" (rule: {names})" if by_rule else "")),
                        event={"type": "status", "from": ticket.status, "to": changes["status"],
                               "reason": f"rule: {names}" if by_rule else "customer reply"})
        update_ticket(conn, ticket.id, **changes)
    _record(conn, intake_id, envelope, ticket.id, decision)
    targets = decision.actions.notify
    if envelope.delivery_report is None:
        targets = (*targets, *ctx.composer.watchers(queue=ticket.queue, event="follow_up"))
    notified = _notify(conn, ctx, envelope, ticket.id, ticket.ref, ticket.queue, targets,
                       what="New reply on", essentials={"priority": ticket.priority, "status": ticket.status,
                                                        "event": "follow_up"})
    return Applied(ticket.id, ticket.ref, new_ticket=False, outbox_ids=notified)


def _new_ticket(
    conn: Connection, ctx: Context, intake_id: int, envelope: Envelope, situation: Situation, decision: Decision
) -> Applied:
    sender = envelope.sender
    known = situation.contact  # read in this same transaction by look_up
    if known is not None and (known.name or not sender.name):
        contact = known
    else:
        contact = find_or_create_contact(
            conn, identity=sender.identity, kind=sender.kind, address=sender.address, name=sender.name
        )
    actions = decision.actions
    queue = actions.queue or DEFAULT_QUEUE
    stored_facts = situation.facts.to_dict()
    if decision.linked_ticket:
        stored_facts["linked_ticket"] = decision.linked_ticket
    assignee = choose_assignee(conn, ctx.ruleset, queue=queue, assign=actions.assign)
    ticket_id, ref = create_ticket(
        conn,
        prefix=ctx.ticket_prefix,
        contact_id=contact.id,
        channel=envelope.channel,
        subject=envelope.subject,
        queue=queue,
        priority=actions.priority or "normal",
        status=Status.CLOSED.value if actions.spam else Status.NEW.value,
        received_at=envelope.received_at,
        category=actions.category,
        tags=actions.tags,
        assignee=assignee,
        sla_policy=actions.sla,
        facts=stored_facts,
    )
    if decision.follows_closed:
        # The message cites the closed ticket's messages: those keys stay there, its own are new;
        # a conversation key moves on to the new ticket (the conversation's latest).
        conversation = [k.key for k in envelope.thread_keys if k.conversation and k.record]
        add_thread_keys(conn, ticket_id, [k for k in envelope.recorded_keys if k not in set(conversation)])
        old = situation.ticket.id if situation.ticket is not None else None
        if conversation and old is not None and not move_thread_keys(conn, conversation, from_ticket=old,
                                                                     to_ticket=ticket_id):
            raise ThreadKeyTaken("a concurrent worker moved the conversation on first")
    else:
        try:
            claim_thread_keys(conn, ticket_id, envelope.recorded_keys)
        except IntegrityError as exc:
            raise ThreadKeyTaken("thread key taken by a concurrent worker") from exc
    _record(conn, intake_id, envelope, ticket_id, decision)
    if decision.linked_ticket:
        _link_new(conn, ticket_id, ref, decision.linked_ticket, envelope,
                  kind="follow_up" if decision.follows_closed else "related")
    outbox_ids: tuple[int, ...] = ()
    if decision.auto_reply_suppressed is None:
        outbox_ids = (_acknowledge(conn, ctx, envelope, ticket_id, ref, queue, contact, actions, situation.facts),)
    else:
        log.info("%s: no acknowledgement: %s", ref, decision.auto_reply_suppressed)
    if not actions.spam:
        targets = (*actions.notify, *ctx.composer.watchers(queue=queue, event="new_ticket"))
        outbox_ids += _notify(conn, ctx, envelope, ticket_id, ref, queue, targets, what="New ticket",
                              essentials={"priority": actions.priority or "normal", "status": "new",
                                          "sla_policy": actions.sla, "assignee": assignee, "event": "new_ticket"})
    return Applied(ticket_id, ref, new_ticket=True, outbox_ids=outbox_ids)


def _link_new(conn: Connection, ticket_id: int, ref: str, other_ref: str, envelope: Envelope, *, kind: str) -> None:
    """Tie a new ticket to the one its message named or followed, on both timelines."""
    found = tickets_by_refs(conn, [other_ref])
    other_id = found.get(other_ref.upper())
    if other_id is None:
        return
    conn.execute(insert(_links).values(ticket_id=ticket_id, other_id=other_id, kind=kind, created_by=CUSTOMER,
                                       created_at=envelope.received_at))
    why = "is closed" if kind == "follow_up" else "was named by a sender who is not on it"
    for one, two, text in ((ticket_id, other_ref, f"Opened from {other_ref}, which {why}"),
                           (other_id, ref, f"The customer wrote again: {ref} was opened (this ticket {why})")):
        add_message(conn, one, direction=Direction.EVENT, channel=envelope.channel, actor=CUSTOMER,
                    sender=envelope.sender.address, text=text, created_at=envelope.received_at,
                    event={"type": "linked", "ticket": two, "kind": kind})


def _record(conn: Connection, intake_id: int, envelope: Envelope, ticket_id: int, decision: Decision) -> None:
    # A delivery report (a bounce, a provider's status callback) is not the customer speaking: it is
    # kept on the timeline, whole, as an event, and is no message of the conversation.
    report = envelope.delivery_report
    add_message(
        conn,
        ticket_id,
        direction=Direction.INBOUND if report is None else Direction.EVENT,
        actor=None if report is None else envelope.channel,
        event=None if report is None else {"type": "delivery_report", "state": report.state,
                                           "detail": report.detail},
        channel=envelope.channel,
        text=envelope.text,
        full_text=envelope.full_text,
        html=envelope.html,
        sender=envelope.sender.address,
        recipients=[p.address for p in envelope.recipients],
        subject=envelope.subject,
        attachments=[a.model_dump(mode="json") for a in envelope.attachments],
        message_id=envelope.external_id,
        intake_id=intake_id,
        decision=decision.model_dump(mode="json"),
        created_at=envelope.received_at,
    )
    conn.execute(_LINK_INTAKE, {"iid": intake_id, "tid": ticket_id})


def _write(conn: Connection, draft: Draft, *, ticket_id: int, contact_id: int | None, kind: str,
           timeline: bool) -> int:
    outbox_id = add_outbox(
        conn,
        ticket_id=ticket_id,
        contact_id=contact_id,
        channel=draft.channel,
        kind=kind,
        recipient=draft.recipient,
        idempotency_key=draft.idempotency_key,
        payload=draft.payload,
        thread_keys=draft.thread_keys,
    )
    if timeline:
        add_message(
            conn,
            ticket_id,
            direction=Direction.OUTBOUND,
            channel=draft.channel,
            text=draft.text,
            sender=draft.sender,
            recipients=[draft.recipient],
            subject=draft.subject,
            message_id=draft.idempotency_key,
        )
    return outbox_id


def _acknowledge(
    conn: Connection,
    ctx: Context,
    envelope: Envelope,
    ticket_id: int,
    ref: str,
    queue: str,
    contact: ContactRef,
    actions: Actions,
    facts: Facts,
) -> int:
    channel = ctx.composer.reply_channel(envelope)
    subject, text = ctx.composer.acknowledgement(
        channel, ref=ref, customer_name=envelope.sender.name, subject=envelope.subject
    )
    template = actions.auto_reply if isinstance(actions.auto_reply, str) else None
    if ctx.ruleset is not None and template:
        subject, text = ctx.ruleset.render_auto_reply(
            template,
            facts.language,
            {
                "ticket_ref": ref,
                "customer_name": envelope.sender.name or envelope.sender.address,
                "queue": queue,
                "queue_name": _queue_name(ctx.ruleset, queue),
                "subject": envelope.subject,
                "due": "",
            },
            channel=channel,
        )
    intent = OutboundIntent(
        kind="ack", ticket_ref=ref, to=envelope.sender, subject=subject, text=text,
        answering=envelope, business=envelope.business,
    )
    draft = ctx.composer.compose(intent, channel=channel)
    return _write(conn, draft, ticket_id=ticket_id, contact_id=contact.id, kind="ack", timeline=True)


def _notify(
    conn: Connection,
    ctx: Context,
    envelope: Envelope,
    ticket_id: int,
    ref: str,
    queue: str,
    targets: tuple[str, ...],
    *,
    what: str,
    essentials: dict[str, Any] | None = None,
) -> tuple[int, ...]:
    """Tell the people a rule names (``notify:``) about the message.

    Notifications go to our own staff, so neither the robot checks nor the auto-reply cap apply;
    a target is an email address, or ``kind:address`` for another channel's staff address.
    """
    ids = []
    details = {
        "ref": ref, "queue": queue, "channel": envelope.channel, "subject": envelope.subject,
        "customer": envelope.sender.name or envelope.sender.address, "customer_address": envelope.sender.address,
        "first_lines": "\n".join(envelope.text.strip().splitlines()[:5])[:500], **(essentials or {}),
    }
    for target in dict.fromkeys(targets):
        kind, address = _staff_address(target)
        sender = envelope.sender.name or envelope.sender.address
        text = (
            f"{what} {ref} in queue {queue}\n"
            f"From: {sender} via {envelope.channel}\n"
            f"Subject: {envelope.subject}\n\n"
            f"{envelope.text}\n"
        )
        intent = OutboundIntent(
            kind="notify", ticket_ref=ref, to=Party(address=address, kind=kind),
            subject=f"[{ref}] {what}: {envelope.subject}"[:250], text=text, details=details,
        )
        channel = ctx.staff_channel if kind == "email" else kind
        draft = ctx.composer.compose(intent, channel=channel)
        ids.append(_write(conn, draft, ticket_id=ticket_id, contact_id=None, kind="notify", timeline=False))
    return tuple(ids)


def _staff_address(target: str) -> tuple[str, str]:
    """``ana@example.com`` is an email address; ``slack:#ops`` names another channel's."""
    kind, sep, rest = target.partition(":")
    if sep and "@" not in kind and kind.isidentifier() and kind.islower():
        return kind, rest
    return "email", target


def _changes_from(ticket: TicketRef, actions: Actions) -> dict[str, Any]:
    """The columns a follow-up rule's actions change on an existing ticket."""
    changes: dict[str, Any] = {}
    for name in ("status", "priority", "queue", "category"):
        value = getattr(actions, name)
        if value:
            changes[name] = value
    if actions.tags:
        changes["tags"] = list(dict.fromkeys([*ticket.tags, *actions.tags]))
    return changes


def _queue_name(ruleset: RuleSet, queue: str) -> str:
    found = ruleset.queues.get(queue)
    return getattr(found, "name", queue) if found is not None else queue
