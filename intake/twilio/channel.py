"""The Twilio adapter: the ``sms``, ``whatsapp`` and ``voice`` channels on the channel contract.

Inbound messages arrive on the webhooks of ``intake.twilio.endpoints``; ``parse`` turns the stored
request into an Envelope whose sender is the customer's E.164 number (``phone:+49...``: one
contact on every phone channel) and whose conversation key ties it to that contact's latest
ticket on the same business number. ``compose`` turns an intent for a phone party into a
Messages API draft; ``workers.senders.twilio`` sends it. Voicemails and missed calls are joined
from a call's callbacks by the ``twilio-media`` runner (``intake.twilio.voice``) and answered by SMS.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, ClassVar

from intake.adapter import (
    AccountCheck,
    Adapter,
    AdapterContext,
    ChannelReport,
    Identities,
    Payload,
    PayloadSummary,
    Runner,
    Stopper,
)
from intake.envelope import Channel, Envelope
from intake.outbound import Draft, OutboundIntent
from intake.twilio.compose import compose_message
from intake.twilio.parse import describe_payload, parse_payload
from intake.twilio.settings import TwilioSection, check_twilio_section, number_specs

if TYPE_CHECKING:
    from fastapi import APIRouter

    from config.issues import Issue
    from config.yamlpos import YamlDocument
    from intake.twilio.endpoints import TwilioEndpoints

__all__ = ["ADAPTER", "TwilioAdapter"]


class TwilioAdapter(Adapter):
    name: ClassVar[str] = "twilio"
    channels: ClassVar[tuple[str, ...]] = (Channel.SMS, Channel.WHATSAPP, Channel.VOICE)
    section: ClassVar[str | None] = "twilio"
    settings_model: ClassVar[Any] = TwilioSection
    components: ClassVar[dict[str, str]] = {
        "twilio-media": "download inbound MMS/WhatsApp media and voicemails; finish calls",
    }

    def __init__(self, ctx: AdapterContext) -> None:
        super().__init__(ctx)
        self._endpoints: TwilioEndpoints | None = None

    def parse(self, payload: Payload) -> Envelope:
        return parse_payload(payload)

    def describe(self, payload: Payload) -> PayloadSummary:
        return describe_payload(payload)

    def http_router(self) -> APIRouter:
        # Imported here so that parsing (quarantine replay, explain) does not load the web stack.
        from intake.twilio.endpoints import TwilioEndpoints

        if self._endpoints is None:
            self._endpoints = TwilioEndpoints(self.ctx)
        return self._endpoints.router()

    def runners(self) -> Mapping[str, Runner]:
        return {"twilio-media": self._start_media}

    def _start_media(self, stop_event: threading.Event) -> Stopper | None:
        from intake.twilio.media import MediaFetcher, start_fetcher

        s = self.ctx.settings
        token = s.twilio_auth_token.get_secret_value()
        if not s.twilio_account_sid or not token:
            return None  # no account: no message can carry media of ours
        fetcher = MediaFetcher(self.ctx.db, self.ctx.blobs, self.ctx.ingest, s.twilio_account_sid, token,
                               api_base=s.twilio_api_base, max_bytes=s.twilio_media_max_bytes,
                               timeout=s.twilio_timeout_seconds, interval=min(1.0, s.sweep_interval_seconds),
                               transcription_wait=s.twilio_transcription_wait_seconds,
                               missed_grace=s.twilio_missed_call_grace_seconds)
        return start_fetcher(fetcher)

    def identities(self) -> Identities:
        return Identities(frozenset(f"phone:{number}" for number in number_specs(self.ctx.section)))

    @classmethod
    def check_section(
        cls, doc: YamlDocument, data: Any, *, environ: Mapping[str, str], base_dir: Any, check_env: bool
    ) -> list[Issue]:
        return check_twilio_section(doc, data, environ=environ, base_dir=base_dir, check_env=check_env)

    def probe(self, *, connect: bool = True, timeout: float = 20.0) -> ChannelReport | None:
        s = self.ctx.settings
        if not s.twilio_account_sid and not s.twilio_auth_token.get_secret_value():
            return None
        from intake.twilio.endpoints import public_base

        base = public_base(s)
        ready = bool(s.twilio_account_sid and s.twilio_auth_token.get_secret_value())
        problem = "" if ready else ("set both OMNIDESK_TWILIO_ACCOUNT_SID and OMNIDESK_TWILIO_AUTH_TOKEN; "
                                    "webhooks are refused until then")
        specs = number_specs(self.ctx.section)
        accounts = []
        for number, spec in (specs.items() or [("any", None)]):
            text = problem or (f"messages webhook {base}/intake/twilio/messages"
                               + (f", queue hint {spec.queue}" if spec and spec.queue else ""))
            details = {"messages_url": f"{base}/intake/twilio/messages",
                       "channels": list(spec.channels) if spec else ["sms", "whatsapp"],
                       "queue": spec.queue if spec else None}
            accounts.append(AccountCheck(number, ready, text, details))
        return ChannelReport(key="twilio_numbers", kind=("Twilio number", "Twilio numbers"), accounts=tuple(accounts))

    def compose(self, intent: OutboundIntent) -> Draft | None:
        from intake.twilio.endpoints import public_base

        return compose_message(intent, numbers=number_specs(self.ctx.section), base_url=public_base(self.ctx.settings),
                               last_whatsapp=self._last_whatsapp(intent))

    def _last_whatsapp(self, intent: OutboundIntent) -> datetime | None:
        """When the customer last wrote on WhatsApp: the 24-hour window counts from there.

        The message answered tells it, unless it is a status callback (a delivery report, kept on
        the timeline as an event); then the ticket's latest customer WhatsApp message does.
        """
        answering = intent.answering
        if answering is not None and answering.channel == Channel.WHATSAPP and answering.delivery_report is None:
            return answering.received_at
        if not intent.ticket_ref:
            return None
        from sqlalchemy import func, select

        from tickets.models import Direction, Ticket, TicketMessage

        with self.ctx.db.read() as session:
            found = session.execute(
                select(func.max(TicketMessage.created_at))
                .join(Ticket, Ticket.id == TicketMessage.ticket_id)
                .where(Ticket.ref == intent.ticket_ref, TicketMessage.direction == Direction.INBOUND.value,
                       TicketMessage.channel == Channel.WHATSAPP,
                       # Status callbacks are stored as "<MessageSid>:<status>"; messages by their SID.
                       TicketMessage.message_id.not_like("%:%"))
            ).scalar_one_or_none()
        if found is not None and found.tzinfo is None:
            found = found.replace(tzinfo=UTC)
        return found

    def reply_channel(self, envelope: Envelope) -> str:
        # A caller is answered by text message: the number they called from can receive one.
        return Channel.SMS if envelope.channel == Channel.VOICE else envelope.channel

    def acknowledgement(self, *, ref: str, customer_name: str, subject: str) -> tuple[str, str]:
        # A text message: short, no email phrasing; the customer just writes again to add more.
        return "", f"Thanks for your message! Your ticket number is {ref}. Reply here to add anything."


ADAPTER = TwilioAdapter
