"""What routing needs to know before it decides, looked up from the store and nothing written.

``look_up`` reads, for one envelope: the thread match (``thread_match.find_thread``), whether the
sender is a participant of a ticket whose number they typed, the matched ticket as it is, the
sender's contact, the facts the rules test (contact history, directory facts, language) and how
many automatic replies the contact got in the last hour. The router calls it inside its
transaction; ``route explain`` and ``rules replay`` call it on a read-only session. Both then hand
the same ``Situation`` to ``decide``: every routing policy exists once.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import bindparam, select

from intake.envelope import Envelope
from routing.decision import ThreadMatch
from routing.gather import gather_facts
from routing.thread_match import find_thread
from tickets.commands import ContactRef, Executor, TicketRef, count_recent_outbox, load_ticket
from tickets.models import Contact, ContactIdentity, table_of
from tickets.queries import is_participant

if TYPE_CHECKING:
    from routing.facts import Facts
    from routing.rules import RuleSet

__all__ = ["AUTO_REPLY_KINDS", "Situation", "find_contact", "look_up"]

# Outbox kinds that count against the per-contact auto-reply cap, on every channel.
AUTO_REPLY_KINDS = ("ack", "auto_reply")

_contacts = table_of(Contact)
_identities = table_of(ContactIdentity)
_FIND_CONTACT = (
    select(_contacts.c.id, _contacts.c.name)
    .join(_identities, _identities.c.contact_id == _contacts.c.id)
    .where(_identities.c.identity == bindparam("identity"))
)


@dataclass(frozen=True)
class Situation:
    now: datetime
    # The ticket this message follows up (None: a new conversation), and how it was matched.
    thread: ThreadMatch | None
    ticket: TicketRef | None
    # The message names this ticket, but its sender is a stranger to it: opens a linked ticket.
    linked_ref: str | None
    # The sender's contact when the store knows it (a new sender: None, created when applied).
    contact: ContactRef | None
    facts: Facts
    auto_replies_last_hour: int
    # Whether the sender is one of our own identities (an adapter's address, number or bot).
    ours: bool = False

    @property
    def ticket_before(self) -> dict[str, Any] | None:
        """The matched ticket as follow-up rules see it: as it was before this message."""
        t = self.ticket
        if t is None:
            return None
        return {"status": t.status, "priority": t.priority, "queue": t.queue, "ref": t.ref}


def find_contact(conn: Executor, identity: str) -> ContactRef | None:
    row = conn.execute(_FIND_CONTACT, {"identity": identity}).first()
    return None if row is None else ContactRef(row[0], row[1] or "", identity)


def look_up(
    conn: Executor,
    envelope: Envelope,
    ruleset: RuleSet | None,
    *,
    now: datetime,
    foreign_token_policy: str,
    ours: bool = False,
) -> Situation:
    """Everything ``decide`` needs, read inside the caller's transaction (or a read-only session)."""
    match = find_thread(conn, envelope)
    linked_ref: str | None = None
    ticket: TicketRef | None = None
    thread: ThreadMatch | None = None
    if match is not None:
        thread, ticket_id = match
        if thread.via == "subject-token" and foreign_token_policy == "new_ticket":
            sender = envelope.sender
            if not is_participant(conn, ticket_id, identity=sender.identity, address=sender.address):
                # Anyone can type a ticket number; a stranger's message must not land in (and be
                # answered on) someone else's ticket. It opens its own, linked to that one.
                linked_ref, thread = thread.ticket_ref, None
        if thread is not None:
            ticket = load_ticket(conn, ticket_id)
            if ticket is None:  # deleted between the two reads: treat as new
                thread = None
    identity = envelope.sender.identity
    contact = find_contact(conn, identity)
    if ticket is not None and ruleset is None:
        from routing.facts import Facts

        facts = Facts(event="follow_up", now=now, ticket={"status": ticket.status, "ref": ticket.ref})
    elif ticket is not None:
        facts_contact = ContactRef(ticket.contact_id, "", identity)
        facts = gather_facts(
            conn, envelope, facts_contact, ruleset, now=now, event="follow_up",
            ticket={"status": ticket.status, "priority": ticket.priority, "queue": ticket.queue,
                    "ref": ticket.ref},
        )
    else:
        # A sender the store does not know yet: created when applied, with no history; id 0 is
        # no contact's, so the history lookup finds nothing, as it would then.
        facts = gather_facts(conn, envelope, contact or ContactRef(0, envelope.sender.name, identity),
                             ruleset, now=now)
    sent = 0
    if contact is not None:
        sent = count_recent_outbox(conn, contact_id=contact.id, kinds=AUTO_REPLY_KINDS,
                                   since=now - timedelta(hours=1))
    return Situation(
        now=now,
        thread=thread,
        ticket=ticket,
        linked_ref=linked_ref,
        contact=contact,
        facts=facts,
        auto_replies_last_hour=sent,
        ours=ours,
    )
