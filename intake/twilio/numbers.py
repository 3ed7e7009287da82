"""Phone numbers as Twilio writes them, normalised to E.164 with ``phonenumbers``.

Twilio sends ``+4915112345678`` for SMS and voice and ``whatsapp:+4915112345678`` for WhatsApp.
Contacts are keyed by the E.164 number alone (``phone:+49151...``), so one person is one contact
whether they text, message on WhatsApp or call.
"""

from __future__ import annotations

from dataclasses import dataclass

import phonenumbers

__all__ = ["TwilioAddress", "conversation_key", "message_key", "outbound_key", "parse_address", "to_e164"]

WHATSAPP_PREFIX = "whatsapp:"


def to_e164(number: str, region: str | None = None) -> str:
    """``number`` in E.164 (``+4915112345678``); ValueError saying why when it is not a number.

    ``region`` is the country assumed for a number written without ``+`` (the channels file's
    numbers; Twilio itself always sends E.164).
    """
    text = number.strip()
    try:
        parsed = phonenumbers.parse(text, None if text.startswith("+") else region)
    except phonenumbers.NumberParseException as exc:
        raise ValueError(f"{number!r} is not a phone number ({exc}); write it as +<country><number>") from None
    if not phonenumbers.is_possible_number(parsed):
        raise ValueError(f"{number!r} is not a possible phone number; write it as +<country><number>")
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


@dataclass(frozen=True)
class TwilioAddress:
    """A ``From``/``To`` value split into its channel and its E.164 number."""

    channel: str  # "sms" or "whatsapp"
    number: str

    @property
    def wire(self) -> str:
        """The form Twilio's API takes back (``whatsapp:+49...`` or ``+49...``)."""
        return f"{WHATSAPP_PREFIX}{self.number}" if self.channel == "whatsapp" else self.number


def parse_address(value: str, region: str | None = None) -> TwilioAddress:
    text = value.strip()
    if text.lower().startswith(WHATSAPP_PREFIX):
        return TwilioAddress("whatsapp", to_e164(text[len(WHATSAPP_PREFIX):], region))
    return TwilioAddress("sms", to_e164(text, region))


def conversation_key(contact: str, business: str) -> str:
    """The thread key of a contact's conversation with one of our numbers, on every Twilio
    channel: an SMS, a WhatsApp message and a voicemail to the same number continue one ticket."""
    return f"twilio:{contact}>{business}"


def outbound_key(idempotency_key: str) -> str:
    """The thread key of one outbound message: its status callbacks find the ticket by it."""
    return f"twilio:out:{idempotency_key}"


def message_key(message_sid: str) -> str:
    """The thread key of one inbound message: its media, fetched later, join its ticket by it."""
    return f"twilio:msg:{message_sid}"
