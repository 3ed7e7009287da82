"""route(intake_id): one logged message becomes a ticket change, in one transaction.

The steps, all inside one ``Database.write_connection()`` transaction:

1. claim the intake row (``pending`` → ``routed``); if it is not pending, someone routed it
   already and nothing happens — routing the same row twice changes nothing;
2. look up every thread key the envelope offers and pick a match (``routing.thread_match``);
3. follow-up: append the message to that ticket, record its keys, reopen it, run follow-up rules;
   new conversation: find or create the contact, gather facts, evaluate the rules, create the
   ticket, claim its thread keys, assign it, and write the acknowledgement to the outbox;
4. commit. Two workers racing on one new conversation collide on a thread key (or the contact's
   identity); the loser's transaction rolls back whole and is retried, and then finds the
   winner's ticket.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, bindparam, update
from sqlalchemy.exc import IntegrityError, OperationalError

from config.settings import Settings
from intake.envelope import Channel, Envelope
from routing.acknowledgement import (
    default_ack,
    email_ack_payload,
    reply_subject,
    suppression_reason,
)
from routing.assignment import choose_assignee
from routing.decision import Actions, Decision, DecisionKind
from routing.gather import gather_facts
from routing.thread_match import find_thread, own_keys
from tickets.commands import (
    ContactRef,
    TicketRef,
    add_message,
    add_outbox,
    add_thread_keys,
    claim_thread_keys,
    count_recent_outbox,
    create_ticket,
    find_or_create_contact,
    load_ticket,
    update_ticket,
)
from tickets.db import Database
from tickets.models import (
    Direction,
    IntakeRow,
    IntakeState,
    OutboxRow,
    OutboxState,
    Status,
    TicketMessage,
    table_of,
    utcnow,
)
from tickets.queries import is_participant

if TYPE_CHECKING:
    from routing.facts import Facts
    from routing.rules import RuleSet

__all__ = ["Routed", "Router", "new_message_id"]

log = logging.getLogger(__name__)

DEFAULT_QUEUE = "general"
AUTO_REPLY_KINDS = ("ack", "auto_reply")
_REOPEN_ON_REPLY = {Status.PENDING.value, Status.RESOLVED.value, Status.CLOSED.value}

_intake = table_of(IntakeRow)
_messages = table_of(TicketMessage)
_outbox = table_of(OutboxRow)


_CLAIM = (
    update(_intake)
    .where(_intake.c.id == bindparam("iid"), _intake.c.state == IntakeState.PENDING.value)
    .values(state=IntakeState.ROUTED.value, routed_at=bindparam("now"))
    .returning(_intake.c.envelope)
)
_LINK_INTAKE = update(_intake).where(_intake.c.id == bindparam("iid")).values(ticket_id=bindparam("tid"))


def new_message_id(domain: str) -> str:
    return f"<{secrets.token_hex(16)}@{domain}>"


@dataclass(frozen=True)
class Routed:
    intake_id: int
    ticket_id: int
    ticket_ref: str
    decision: Decision
    new_ticket: bool
    outbox_ids: tuple[int, ...] = ()


class _Retry(Exception):
    """A concurrent worker won a race on a unique key; start the transaction over."""


@dataclass
class Router:
    db: Database
    settings: Settings
    rules: Callable[[], "RuleSet | None"] = lambda: None
    clock: Callable[[], datetime] = utcnow
    max_attempts: int = 8
    _own_domains: tuple[str, ...] = field(init=False)

    def __post_init__(self) -> None:
        self._own_domains = tuple(
            dict.fromkeys((*self.settings.smtp_domains, self.settings.effective_message_id_domain))
        )

    def route(self, intake_id: int) -> Routed | None:
        """Route one intake row. None when it was already routed or is quarantined."""
        for attempt in range(1, self.max_attempts + 1):
            try:
                with self.db.write_connection() as conn:
                    return self._route_once(conn, intake_id)
            except (_Retry, IntegrityError) as exc:
                log.debug("intake %s: retrying after a race (%s), attempt %d", intake_id, exc, attempt)
            except OperationalError as exc:
                # PostgreSQL serialisation/deadlock errors are transient; anything else is not.
                if "deadlock" not in str(exc).lower() and "could not serialize" not in str(exc).lower():
                    raise
                log.debug("intake %s: retrying after %s", intake_id, exc)
        raise RuntimeError(f"intake {intake_id}: gave up after {self.max_attempts} racing attempts")

    # ------------------------------------------------------------------------------------------
    def _route_once(self, conn: Connection, intake_id: int) -> Routed | None:
        now = self.clock()
        claimed = conn.execute(_CLAIM, {"iid": intake_id, "now": now}).first()
        if claimed is None or claimed[0] is None:
            return None
        envelope = Envelope.model_validate(claimed[0])

        keys = own_keys(envelope)
        match = find_thread(conn, envelope)

        linked_ref: str | None = None
        if match is not None and match[0].via == "subject-token" and self.settings.foreign_token_policy == "new_ticket":
            sender = envelope.sender
            if not is_participant(conn, match[1], identity=sender.identity, address=sender.address):
                # Anyone can type a ticket number; a stranger's message must not land in (and be
                # answered on) someone else's ticket. It opens its own, linked to that one.
                linked_ref, match = match[0].ticket_ref, None

        if match is not None:
            thread, ticket_id = match
            ticket = load_ticket(conn, ticket_id)
            assert ticket is not None
            decision = self._follow_up(conn, envelope, ticket, keys).model_copy(update={"thread": thread})
            self._record(conn, intake_id, envelope, ticket.id, decision)
            notified = self._notify(conn, envelope, ticket.id, ticket.ref, ticket.queue, decision.actions.notify,
                                    what="New reply on")
            return Routed(intake_id, ticket.id, ticket.ref, decision, new_ticket=False, outbox_ids=notified)

        return self._new_ticket(conn, intake_id, envelope, keys, now, linked_ref=linked_ref)

    def _follow_up(self, conn: Connection, envelope: Envelope, ticket: TicketRef, keys: list[str]) -> Decision:
        add_thread_keys(conn, ticket.id, keys)
        notes: list[str] = []
        if envelope.loop.is_bounce:
            failed = _mark_bounced(conn, envelope.loop.bounced_message_ids)
            notes.append(f"delivery failure report; {failed} outbound message(s) marked failed")
            return Decision(kind=DecisionKind.FOLLOW_UP, event="bounce", notes=tuple(notes))
        changes: dict[str, Any] = {"last_inbound_at": envelope.received_at}
        # Follow-up rules see the ticket as it was before this message (e.g. "reopened after
        # resolved": ticket.status is still resolved here).
        before = {"status": ticket.status, "priority": ticket.priority, "queue": ticket.queue, "ref": ticket.ref}
        if ticket.status in _REOPEN_ON_REPLY:
            notes.append(f"reopened from {ticket.status} by the customer's reply")
            changes["status"] = Status.OPEN.value
        applied: tuple[Any, ...] = ()
        actions = Actions()
        ruleset = self.rules()
        if ruleset is not None:
            contact = ContactRef(ticket.contact_id, "", envelope.sender.identity)
            facts = gather_facts(
                conn, envelope, contact, ruleset, now=self.clock(), event="follow_up", ticket=before
            )
            evaluation = ruleset.evaluate(envelope, facts)
            applied, actions = evaluation.applied, evaluation.actions
            changes.update(_changes_from(ticket, actions))
        update_ticket(conn, ticket.id, **changes)
        return Decision(
            kind=DecisionKind.FOLLOW_UP, event="follow_up", rules=applied, actions=actions, notes=tuple(notes)
        )

    def _new_ticket(
        self,
        conn: Connection,
        intake_id: int,
        envelope: Envelope,
        keys: list[str],
        now: datetime,
        *,
        linked_ref: str | None = None,
    ) -> Routed:
        sender = envelope.sender
        contact = find_or_create_contact(
            conn, identity=sender.identity, kind=sender.kind.value, address=sender.address, name=sender.name
        )
        ruleset = self.rules()
        facts = gather_facts(conn, envelope, contact, ruleset, now=now)
        applied: tuple[Any, ...] = ()
        if ruleset is not None:
            evaluation = ruleset.evaluate(envelope, facts)
            applied, actions = evaluation.applied, evaluation.actions
        else:
            actions = Actions(queue=DEFAULT_QUEUE, priority="normal")
        queue = actions.queue or DEFAULT_QUEUE
        notes: list[str] = []
        stored_facts = facts_record(facts)
        if linked_ref:
            stored_facts["linked_ticket"] = linked_ref
            notes.append(f"names {linked_ref}, but the sender is not on that ticket: opened a linked ticket")
        assignee = choose_assignee(conn, ruleset, queue=queue, assign=actions.assign)
        ticket_id, ref = create_ticket(
            conn,
            prefix=self.settings.ticket_prefix,
            contact_id=contact.id,
            channel=envelope.channel.value,
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
        try:
            claim_thread_keys(conn, ticket_id, keys)
        except IntegrityError as exc:
            raise _Retry("thread key taken by a concurrent worker") from exc

        if actions.spam:
            suppressed: str | None = "marked as spam"
        else:
            sent = count_recent_outbox(
                conn, contact_id=contact.id, kinds=AUTO_REPLY_KINDS, since=now - timedelta(hours=1)
            )
            suppressed = suppression_reason(
                envelope,
                auto_reply=actions.auto_reply,
                own_domains=self._own_domains,
                own_addresses=(self.settings.support_address,),
                sent_last_hour=sent,
                limit_per_hour=self.settings.auto_reply_limit_per_hour,
            )
        decision = Decision(
            kind=DecisionKind.NEW_TICKET,
            rules=applied,
            actions=actions,
            auto_reply_suppressed=suppressed,
            notes=tuple(notes),
        )
        self._record(conn, intake_id, envelope, ticket_id, decision)
        outbox_ids: tuple[int, ...] = ()
        if suppressed is None:
            outbox_ids = (
                self._acknowledge(conn, envelope, ticket_id, ref, queue, contact, ruleset, actions, facts),
            )
        else:
            log.info("%s: no acknowledgement: %s", ref, suppressed)
        if not actions.spam:
            outbox_ids += self._notify(conn, envelope, ticket_id, ref, queue, actions.notify, what="New ticket")
        return Routed(intake_id, ticket_id, ref, decision, new_ticket=True, outbox_ids=outbox_ids)

    def _notify(
        self,
        conn: Connection,
        envelope: Envelope,
        ticket_id: int,
        ref: str,
        queue: str,
        addresses: tuple[str, ...],
        *,
        what: str,
    ) -> tuple[int, ...]:
        """Tell the people a rule names (``notify:``) about the message: one email each.

        Notifications go to our own staff, so neither the robot checks nor the auto-reply cap
        apply; their Message-IDs lead back to the ticket like any of ours.
        """
        ids = []
        for address in addresses:
            message_id = new_message_id(self.settings.effective_message_id_domain)
            sender = envelope.sender.name or envelope.sender.address
            text = (
                f"{what} {ref} in queue {queue}\n"
                f"From: {sender} via {envelope.channel.value}\n"
                f"Subject: {envelope.subject}\n\n"
                f"{envelope.text}\n"
            )
            payload = {
                "from": self.settings.support_address,
                "to": address,
                "subject": f"[{ref}] {what}: {envelope.subject}"[:250],
                "text": text,
                "ticket_ref": ref,
                "auto_submitted": "auto-generated",
            }
            ids.append(add_outbox(conn, ticket_id=ticket_id, contact_id=None, channel="email", kind="notify",
                                  recipient=address, message_id=message_id, payload=payload))
        return tuple(ids)

    def _record(
        self, conn: Connection, intake_id: int, envelope: Envelope, ticket_id: int, decision: Decision
    ) -> None:
        add_message(
            conn,
            ticket_id,
            direction=Direction.INBOUND,
            channel=envelope.channel.value,
            text=envelope.text,
            full_text=envelope.full_text,
            html=envelope.html,
            sender=envelope.sender.address,
            recipients=[p.address for p in envelope.recipients],
            subject=envelope.subject,
            attachments=[a.model_dump(mode="json") for a in envelope.attachments],
            message_id=envelope.thread_hints.message_id,
            intake_id=intake_id,
            decision=decision.model_dump(mode="json"),
            created_at=envelope.received_at,
        )
        conn.execute(_LINK_INTAKE, {"iid": intake_id, "tid": ticket_id})

    def _acknowledge(
        self,
        conn: Connection,
        envelope: Envelope,
        ticket_id: int,
        ref: str,
        queue: str,
        contact: ContactRef,
        ruleset: "RuleSet | None",
        actions: Actions,
        facts: "Facts",
    ) -> int:
        content = default_ack(ref=ref, customer_name=envelope.sender.name, subject=envelope.subject)
        template = actions.auto_reply if isinstance(actions.auto_reply, str) else None
        if ruleset is not None and template:
            _subject, body = ruleset.render_auto_reply(
                template,
                facts.language,
                {
                    "ticket_ref": ref,
                    "customer_name": envelope.sender.name or envelope.sender.address,
                    "queue": queue,
                    "queue_name": _queue_name(ruleset, queue),
                    "subject": envelope.subject,
                    "due": "",
                },
            )
            # The subject stays "[OD-n] Re: <theirs>" so the customer's client threads it.
            content = type(content)(subject=reply_subject(ref, envelope.subject), text=body)
        message_id = new_message_id(self.settings.effective_message_id_domain)
        from_address = self._support_address_for(envelope)
        payload = email_ack_payload(envelope, from_address=from_address, content=content, ref=ref)
        outbox_id = add_outbox(
            conn,
            ticket_id=ticket_id,
            contact_id=contact.id,
            channel=envelope.channel.value,
            kind="ack",
            recipient=envelope.sender.address,
            message_id=message_id,
            payload=payload,
        )
        add_message(
            conn,
            ticket_id,
            direction=Direction.OUTBOUND,
            channel=envelope.channel.value,
            text=content.text,
            sender=from_address,
            recipients=[envelope.sender.address],
            subject=content.subject,
            message_id=message_id,
        )
        return outbox_id

    def _support_address_for(self, envelope: Envelope) -> str:
        """The support address the customer wrote to, when it is one of ours."""
        if envelope.channel is Channel.EMAIL:
            for party in envelope.recipients:
                domain = party.address.rpartition("@")[2].lower()
                if domain in self.settings.smtp_domains:
                    return party.address
        return self.settings.support_address


def _mark_bounced(conn: Connection, message_ids: tuple[str, ...]) -> int:
    if not message_ids:
        return 0
    result = conn.execute(
        update(_outbox)
        .where(_outbox.c.message_id.in_(message_ids))
        .values(state=OutboxState.FAILED.value, last_error="bounced: the receiving system reported a delivery failure")
    )
    return int(result.rowcount)


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


def _queue_name(ruleset: "RuleSet", queue: str) -> str:
    found = ruleset.queues.get(queue)
    return getattr(found, "name", queue) if found is not None else queue


def facts_record(facts: "Facts") -> dict[str, Any]:
    """The facts as stored on the ticket: the agent's at-a-glance view of the customer, and what
    ``omnidesk rules replay`` re-evaluates the rules with (``Facts.from_dict``)."""
    return facts.to_dict()
