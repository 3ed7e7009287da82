"""Outbound intents -> drafts of Twilio messages (the outbox row's payload).

The draft names everything the sender needs, fixed inside the routing (or reply) transaction:
the ``To``/``From`` in Twilio's form, the text, the status callback URL (carrying the outbox
idempotency key, so a callback finds the row even before the sender recorded Twilio's SID), and
for WhatsApp when the 24-hour window is already closed, the template to send instead (or the
reason nothing can be sent).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

from intake.envelope import PartyKind
from intake.outbound import Draft, OutboundIntent
from intake.twilio.errors import WINDOW_CLOSED, describe_error
from intake.twilio.numbers import TwilioAddress, conversation_key, outbound_key, to_e164
from intake.twilio.settings import NumberSpec

__all__ = ["WHATSAPP_WINDOW", "compose_message"]

TWILIO_CHANNELS = ("sms", "whatsapp")
# WhatsApp lets a business answer freely for 24 hours after the customer's last message.
WHATSAPP_WINDOW = timedelta(hours=24)
# Twilio refuses bodies above 1600 characters (SMS) / 4096 (WhatsApp): cut with a visible mark
# rather than have the whole reply refused.
_MAX_BODY = {"sms": 1600, "whatsapp": 4096}


def _channel_of(intent: OutboundIntent) -> str:
    answering = intent.answering
    if answering is not None and answering.channel in TWILIO_CHANNELS:
        return answering.channel
    # With nothing to answer (a reply to the contact's phone identity) a text message is what
    # every phone can receive.
    return "sms"


def _business(intent: OutboundIntent, channel: str, numbers: dict[str, NumberSpec]) -> str | None:
    for party in (intent.business, intent.answering.business if intent.answering else None):
        if party is not None and party.kind == PartyKind.PHONE and party.address.startswith("+"):
            return party.address
    # No conversation to continue: the first configured number that serves the channel.
    return next((n for n, spec in numbers.items() if channel in spec.channels), None)


def _fill(template: str, values: dict[str, str]) -> str:
    out = template
    for name, value in values.items():
        out = out.replace("{" + name + "}", value)
    return out


def compose_message(
    intent: OutboundIntent, *, numbers: dict[str, NumberSpec], base_url: str, now: datetime | None = None,
    last_whatsapp: datetime | None = None,
) -> Draft | None:
    """The draft of ``intent`` as a Twilio message, or None when it cannot reach ``intent.to``.

    ``last_whatsapp``: when the customer last wrote on WhatsApp (the 24-hour window opens there).
    """
    if intent.to.kind != PartyKind.PHONE:
        return None
    try:
        number = to_e164(intent.to.address)
    except ValueError:
        return None
    channel = _channel_of(intent)
    business = _business(intent, channel, numbers)
    if business is None:
        return None
    to, sender = TwilioAddress(channel, number), TwilioAddress(channel, business)
    key = f"twilio-{uuid.uuid4().hex}"
    text = intent.text.strip()
    limit = _MAX_BODY[channel]
    if len(text) > limit:
        text = text[: limit - 2].rstrip() + " …"
    payload: dict[str, Any] = {
        "to": to.wire,
        "from": sender.wire,
        "body": text,
        "status_callback": f"{base_url}/intake/twilio/status?outbox={quote(key)}",
        "ticket_ref": intent.ticket_ref,
        "composed_at": (now or datetime.now(UTC)).isoformat(),
    }
    if channel == "whatsapp":
        payload.update(_window(last_whatsapp, numbers.get(business), intent, now or datetime.now(UTC)))
    return Draft(
        channel=channel,
        recipient=number,
        idempotency_key=key,
        payload=payload,
        # The status callbacks find the ticket by the first; the customer's answer continues the
        # conversation by the second (left alone where it already leads to another ticket).
        thread_keys=(outbound_key(key), conversation_key(number, business)),
        sender=business,
        subject="",
        text=text,
    )


def _window(last: datetime | None, spec: NumberSpec | None, intent: OutboundIntent,
            now: datetime) -> dict[str, Any]:
    """Whether the WhatsApp 24-hour window is open; when closed, the template or the refusal."""
    if last is not None and now - last < WHATSAPP_WINDOW:
        return {"window_closes_at": (last + WHATSAPP_WINDOW).isoformat()}
    template = spec.whatsapp_template if spec is not None else None
    if template is None:
        since = f"since {(last + WHATSAPP_WINDOW).isoformat()}" if last else "(no recent message from the customer)"
        return {"window_closed": f"WhatsApp window closed {since}: {describe_error(WINDOW_CLOSED)}"}
    values = {"ticket_ref": intent.ticket_ref, "customer_name": intent.to.name or ""}
    return {"template": {"content_sid": template.content_sid,
                         "variables": {k: _fill(v, values) for k, v in template.variables.items()}}}
