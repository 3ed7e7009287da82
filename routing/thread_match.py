"""Thread matching: is this message a follow-up of a ticket we already have?

The adapter chose the message's thread keys (``Envelope.thread_keys``: opaque, namespaced strings
in the order it trusts them: an email's own Message-ID, ``In-Reply-To``, ``References``; a phone
conversation; a Slack thread); this module only looks them up. ``candidate_keys`` lists them, the
store maps them to tickets in one query (``tickets.commands.tickets_by_keys``) plus one for the
ticket numbers the message names, and ``match_thread`` picks the winner: the first key found, in
the adapter's order, else a ticket number such as ``[OD-1042]`` — last, because anyone can type it.
"""

from __future__ import annotations

from collections.abc import Mapping

from intake.envelope import Envelope
from routing.decision import ThreadMatch
from tickets.commands import Executor, ref_of_ticket, tickets_by_keys, tickets_by_refs

__all__ = ["candidate_keys", "find_thread", "match_thread", "own_keys"]


def candidate_keys(envelope: Envelope) -> list[tuple[str, str]]:
    """(via, key) pairs in the order they are trusted."""
    return [(k.via, k.key) for k in envelope.thread_keys]


def own_keys(envelope: Envelope) -> list[str]:
    """Keys to record against the ticket this message lands on (its own id and every id it cites).

    Recording the cited ids is what lets a later-arriving parent (or sibling) find the thread.
    """
    return list(envelope.recorded_keys)


def match_thread(
    envelope: Envelope,
    found_keys: Mapping[str, int],
    found_refs: Mapping[str, int],
) -> tuple[ThreadMatch, int] | None:
    """The best match and its ticket id, or None for a new conversation.

    ``found_keys``: thread key -> ticket id for the keys that exist; ``found_refs``: ticket ref ->
    ticket id for the refs named in the message. A match by key carries no ticket ref yet
    (``find_thread`` fills it in).
    """
    for via, key in candidate_keys(envelope):
        ticket_id = found_keys.get(key)
        if ticket_id is not None:
            return ThreadMatch(ticket_ref="", via=via, key=key), ticket_id
    for ref in envelope.ticket_refs:
        ticket_id = found_refs.get(ref.upper())
        if ticket_id is not None:
            return ThreadMatch(ticket_ref=ref.upper(), via="subject-token", key=ref.upper()), ticket_id
    return None


def find_thread(conn: Executor, envelope: Envelope) -> tuple[ThreadMatch, int] | None:
    """Look up every key and ticket number the envelope offers (two queries) and match them.

    ``conn`` is a Connection or a Session; nothing is written. Routing and ``route explain``
    both call this, so an explanation shows exactly the match routing would make.
    """
    found_keys = tickets_by_keys(conn, [key for _, key in candidate_keys(envelope)])
    found_refs = tickets_by_refs(conn, envelope.ticket_refs)
    match = match_thread(envelope, found_keys, found_refs)
    if match is None or match[0].ticket_ref:
        return match
    thread, ticket_id = match
    return thread.model_copy(update={"ticket_ref": ref_of_ticket(conn, ticket_id)}), ticket_id
