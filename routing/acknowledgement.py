"""Whether a new ticket's acknowledgement may go out: one policy for every channel.

Pure; ``decide`` calls it, so routing, ``route explain`` and ``rules replay`` agree. What the
acknowledgement *says* is the channel's (``Adapter.acknowledgement``) or the rules file's template.
"""

from __future__ import annotations

from intake.envelope import Envelope

__all__ = ["suppression_reason"]


def suppression_reason(
    envelope: Envelope,
    *,
    auto_reply: str | bool | None,
    ours: bool,
    sent_last_hour: int,
    limit_per_hour: int,
) -> str | None:
    """Why no acknowledgement may go out, or None when one should.

    ``envelope.automated`` is the adapter's verdict (RFC 3834 headers, bounces, bots); ``ours``
    says the sender is one of our own identities on any channel. The cap counts automatic
    replies to the contact on every channel.
    """
    if auto_reply is False:
        return "a rule set auto_reply: false"
    if envelope.automated:
        return f"automated message ({envelope.automated})"
    if ours:
        return f"automated message (our own address {envelope.sender.address})"
    if not envelope.sender.address:
        return "no sender address"
    if sent_last_hour >= limit_per_hour:
        return f"auto-reply cap reached ({sent_last_hour} in the last hour, limit {limit_per_hour})"
    return None
