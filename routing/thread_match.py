"""Thread matching: is this message a follow-up of a ticket we already have?

Pure functions. ``candidate_keys`` lists, in priority order, every key the envelope offers; the
router looks them all up in one query (``tickets.commands.tickets_by_keys``) plus the ticket
numbers it names, and ``match_thread`` picks the winner. Order of trust:

1. the message's own Message-ID — a reply to it arrived first and recorded it (arrival order
   must not matter);
2. ``In-Reply-To``;
3. ``References``, nearest ancestor first;
4. for a bounce, the Message-ID of ours it reports on;
5. a channel conversation key (Slack thread, phone conversation);
6. a ticket number token such as ``[OD-1042]`` in the subject — last, because anyone can type it.
"""

from __future__ import annotations

from collections.abc import Mapping

from intake.envelope import Envelope
from routing.decision import ThreadMatch
from tickets.commands import Executor, message_key, ref_of_ticket, tickets_by_keys, tickets_by_refs

__all__ = ["candidate_keys", "conversation_key", "find_thread", "match_thread", "own_keys"]


def conversation_key(envelope: Envelope) -> str | None:
    hint = envelope.thread_hints.conversation
    return f"conv:{envelope.channel.value}:{hint}" if hint else None


def candidate_keys(envelope: Envelope) -> list[tuple[str, str]]:
    """(via, key) pairs in the order they are trusted."""
    hints = envelope.thread_hints
    out: list[tuple[str, str]] = []
    if hints.message_id:
        out.append(("own-message-id", message_key(hints.message_id)))
    out.extend(("in-reply-to", message_key(mid)) for mid in hints.in_reply_to)
    out.extend(("references", message_key(mid)) for mid in reversed(hints.references))
    # A delivery report names the message of ours that bounced: it belongs on that ticket.
    out.extend(("bounce", message_key(mid)) for mid in envelope.loop.bounced_message_ids)
    conv = conversation_key(envelope)
    if conv:
        out.append(("conversation", conv))
    return out


def own_keys(envelope: Envelope) -> list[str]:
    """Keys to record against the ticket this message lands on: its own id and every id it cites.

    Recording the cited ids is what lets a later-arriving parent (or sibling) find the thread.
    """
    hints = envelope.thread_hints
    keys = [message_key(m) for m in (hints.message_id, *hints.in_reply_to, *hints.references) if m]
    conv = conversation_key(envelope)
    if conv:
        keys.append(conv)
    return list(dict.fromkeys(keys))


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
    for ref in envelope.thread_hints.ticket_refs:
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
    found_refs = tickets_by_refs(conn, envelope.thread_hints.ticket_refs)
    match = match_thread(envelope, found_keys, found_refs)
    if match is None or match[0].ticket_ref:
        return match
    thread, ticket_id = match
    return thread.model_copy(update={"ticket_ref": ref_of_ticket(conn, ticket_id)}), ticket_id
