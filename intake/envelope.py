"""The Envelope: one normalised inbound message, whatever channel brought it.

Every adapter turns what its channel delivered into an ``Envelope``; routing, the store and the
workers read nothing else. The model is frozen (a message does not change after it arrived) and
versioned (``schema_version``) because envelopes are stored as JSON in the intake log and read back
by later releases: ``load_envelope`` reads every version ever stored (version 1, the email-only
shape, is upgraded by ``intake.envelope_v1``).

Version 2 holds only what every channel has. What is particular to one channel (email headers and
RFC 3834 signals, Twilio's request parameters, a Slack event's ids) sits in ``details``, a block
the channel's adapter writes from a typed model of its own and reads back with the same model;
the core never looks inside it.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

__all__ = [
    "ENVELOPE_SCHEMA_VERSION",
    "AttachmentRef",
    "Channel",
    "DeliveryReport",
    "Envelope",
    "Party",
    "PartyKind",
    "ThreadKey",
    "load_envelope",
]

ENVELOPE_SCHEMA_VERSION: Literal[2] = 2

# A channel or party kind is a short lower-case word chosen by its adapter ("email", "webform",
# "sms", "whatsapp", "voice", "slack"): a new channel needs no edit here.
_WORD = r"^[a-z][a-z0-9_-]{0,19}$"


class Channel:
    """Names of the channels shipped with Omnidesk (adapters may add others)."""

    EMAIL = "email"
    WEBFORM = "webform"
    WHATSAPP = "whatsapp"
    SMS = "sms"
    VOICE = "voice"
    SLACK = "slack"


class PartyKind:
    """Namespaces of addresses (a contact identity is ``kind:address``)."""

    EMAIL = "email"
    PHONE = "phone"  # E.164, e.g. +4915112345678
    SLACK = "slack"  # Slack user id, e.g. U024BE7LH


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Party(_Frozen):
    """A sender or recipient: an address in its kind's own namespace."""

    address: str
    name: str = ""
    kind: str = Field(default=PartyKind.EMAIL, pattern=_WORD)

    @field_validator("address")
    @classmethod
    def _normalise(cls, value: str) -> str:
        return value.strip()

    @property
    def identity(self) -> str:
        """The key a contact is found by: ``email:ana@example.com``, ``phone:+4915...``.

        Email addresses compare case-insensitively in practice (RFC 5321 allows case-sensitive
        local parts, but no mail system we talk to uses them); phone and Slack ids are exact.
        """
        address = self.address.lower() if self.kind == PartyKind.EMAIL else self.address
        return f"{self.kind}:{address}"


class AttachmentRef(_Frozen):
    """An attachment or inline image, its bytes in the blob store under ``sha256``."""

    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    size: int = Field(ge=0)
    content_type: str = "application/octet-stream"
    filename: str = ""
    inline: bool = False
    content_id: str | None = None


class ThreadKey(_Frozen):
    """One key that may tie this message to an existing conversation, chosen by the adapter.

    ``key`` is opaque and namespaced by the adapter (``email:mid:<a@b>``, ``sms:+4915…>+1415…``,
    ``slack:C123:1700000000.000100``, ``webform:sub:…``); routing only looks it up. Keys come in
    the order the adapter trusts them. ``record``: store the key against the ticket the message
    lands on, so later messages citing it find the ticket (False for a key that only points
    elsewhere, such as the message a bounce reports on).
    """

    key: str = Field(min_length=1, max_length=1000)
    via: str = Field(min_length=1, max_length=40)  # why it is a key: "in-reply-to", "contact", ...
    record: bool = True
    # The key names a conversation (a contact and a business number, a chat session), not one
    # message: it always leads to the conversation's latest ticket. When the ticket it led to was
    # closed and a new one opens, the key moves to the new one.
    conversation: bool = False


class DeliveryReport(_Frozen):
    """This inbound message reports on messages we sent (a bounce, a failed-delivery notice).

    ``keys`` are outbox idempotency keys (our Message-IDs for email) or provider ids; routing hands
    them to the outbox's one delivery-report operation.
    """

    keys: tuple[str, ...]
    state: Literal["failed", "delivered", "read", "sent"] = "failed"
    detail: str = ""


class Envelope(_Frozen):
    """One inbound message, normalised. Stored as JSON in the intake log."""

    schema_version: Literal[2] = ENVELOPE_SCHEMA_VERSION
    channel: str = Field(pattern=_WORD)
    # Idempotency key within the channel: a redelivery carries the same key and is dropped.
    # email: canonical Message-ID (or "sha256:<hex>" of the raw bytes when it has none);
    # twilio: MessageSid / CallSid; slack: event_id; webform: submission id.
    external_id: str = Field(min_length=1, max_length=998)
    # When the channel received it (SMTP DATA, IMAP INTERNALDATE, webhook time): SLA clocks start here.
    received_at: datetime
    sender: Party
    # The support address, number, form or Slack channel of ours this message reached.
    business: Party | None = None
    # Everything of ours it reached (SMTP RCPT TO, the mailbox's address, ...). Rules test ``to``.
    recipients: tuple[Party, ...] = ()
    subject: str = ""
    # The new content only: quoted history and signatures removed.
    text: str = ""
    # The whole text as the customer sent it (quotes included).
    full_text: str = ""
    # Sanitised HTML for display, when the message had HTML.
    html: str | None = None
    attachments: tuple[AttachmentRef, ...] = ()
    thread_keys: tuple[ThreadKey, ...] = ()
    # Ticket numbers the customer wrote (``OD-1042``): trusted last, as anyone can type one.
    ticket_refs: tuple[str, ...] = ()
    # The adapter's verdict: why a machine wrote this message (no auto-reply goes to it), or None.
    automated: str | None = None
    delivery_report: DeliveryReport | None = None
    # Named values rules may test as ``header.<name>`` (email headers, webhook parameters).
    headers: dict[str, str] = Field(default_factory=dict)
    # The channel's own block (see the module docstring); written and read by its adapter only.
    details: dict[str, Any] = Field(default_factory=dict)
    # sha256 of the raw payload in the blob store.
    raw_ref: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")
    # Language if the channel says so (else detected during routing).
    language: str | None = None

    @field_validator("received_at")
    @classmethod
    def _utc(cls, value: datetime) -> datetime:
        if value.tzinfo is None:
            raise ValueError("received_at must be timezone-aware")
        return value.astimezone(timezone.utc)

    @property
    def recorded_keys(self) -> tuple[str, ...]:
        """The thread keys to store against the ticket this message lands on."""
        return tuple(dict.fromkeys(k.key for k in self.thread_keys if k.record))


def load_envelope(data: dict[str, Any] | str | bytes) -> Envelope:
    """An envelope as stored (JSON text or the decoded mapping), of any schema version."""
    if isinstance(data, (str, bytes)):
        import json

        data = json.loads(data)
    assert isinstance(data, dict)
    if data.get("schema_version", 1) == 1:
        from intake.envelope_v1 import upgrade_v1

        return upgrade_v1(data)
    return Envelope.model_validate(data)
