"""Stored Twilio request -> Envelope; the best-effort summary of one that will not parse.

An inbound message (``/intake/twilio/messages``) is a customer message on the ``sms`` or
``whatsapp`` channel, threaded by its conversation key (contact and business number). A status
callback (``/intake/twilio/status``) is a ``DeliveryReport`` on the outbound message it names; it
finds that message's ticket by the message's own thread key and adds no customer message.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import ValidationError

from intake.adapter import Payload, PayloadSummary
from intake.envelope import DeliveryReport, Envelope, Party, PartyKind, ThreadKey
from intake.errors import UnparseableMessage
from intake.twilio.errors import describe_error
from intake.twilio.numbers import (
    TwilioAddress,
    conversation_key,
    message_key,
    outbound_key,
    parse_address,
)
from intake.twilio.stored import MediaItem, StoredRequest, TwilioDetails

__all__ = ["STATUS_STATES", "describe_payload", "load_request", "parse_payload"]

_SUBJECT_CHARS = 80
# Twilio's message statuses that move an outbox row, and the state they move it to. The others
# (queued, accepted, sending, scheduled, ...) say nothing the outbox records.
STATUS_STATES = {"sent": "sent", "delivered": "delivered", "read": "read",
                 "failed": "failed", "undelivered": "failed"}
_MAX_MEDIA = 10  # Twilio sends at most 10 media items per message


def load_request(raw: bytes) -> StoredRequest:
    try:
        return StoredRequest.model_validate_json(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or '(document)'}: {e['msg']}"
            for e in exc.errors(include_url=False)[:5]
        )
        raise UnparseableMessage(f"not a stored Twilio request: {problems}") from None


def _address(stored: StoredRequest, name: str) -> TwilioAddress:
    value = stored.param(name)
    if not value:
        raise UnparseableMessage(f"the Twilio request has no {name} parameter")
    try:
        return parse_address(value)
    except ValueError as exc:
        raise UnparseableMessage(f"{name}: {exc}") from None


def parse_payload(payload: Payload) -> Envelope:
    stored = load_request(payload.raw)
    if stored.endpoint == "status":
        return _status(payload, stored)
    if stored.endpoint == "media":
        return _media_message(payload, stored)
    if stored.endpoint in ("voicemail", "missed-call"):
        return _call(payload, stored)
    return _message(payload, stored)


def _subject(text: str) -> str:
    first = next((line.strip() for line in text.splitlines() if line.strip()), "")
    if len(first) > _SUBJECT_CHARS:
        first = first[: _SUBJECT_CHARS - 1].rstrip() + "…"
    return first


def _media(stored: StoredRequest) -> tuple[MediaItem, ...]:
    count_text = stored.param("NumMedia") or "0"
    if not count_text.isdigit():
        raise UnparseableMessage(f"NumMedia is {count_text!r}, not a count")
    items = []
    for index in range(min(int(count_text), _MAX_MEDIA)):
        url = stored.param(f"MediaUrl{index}")
        if url:
            items.append(MediaItem(url=url, content_type=stored.param(f"MediaContentType{index}")))
    return tuple(items)


def _message(payload: Payload, stored: StoredRequest) -> Envelope:
    sid = stored.param("MessageSid") or stored.param("SmsMessageSid")
    if not sid:
        raise UnparseableMessage("the Twilio message has no MessageSid")
    sender, business = _address(stored, "From"), _address(stored, "To")
    if sender.channel != business.channel:
        raise UnparseableMessage(f"From is {sender.channel} but To is {business.channel}")
    media = _media(stored)
    body = stored.param("Body")
    if not body.strip() and not media:
        raise UnparseableMessage("the Twilio message has neither a Body nor media")
    headers = {"x-twilio-number": business.number, "x-twilio-channel": business.channel}
    if stored.queue:
        headers["x-twilio-queue"] = stored.queue
    country = stored.param("FromCountry")
    if country:
        headers["x-twilio-from-country"] = country
    details = TwilioDetails(
        message_sid=sid, account_sid=stored.param("AccountSid"), profile_name=stored.param("ProfileName"),
        wa_id=stored.param("WaId"), num_segments=stored.param("NumSegments"), media=media,
    )
    us = Party(address=business.number, name=stored.number_name, kind=PartyKind.PHONE)
    text = body if body.strip() else f"({len(media)} media attachment{'s' if len(media) != 1 else ''})"
    try:
        return Envelope(
            channel=business.channel,
            external_id=sid,
            received_at=payload.received_at,
            sender=Party(address=sender.number, name=stored.param("ProfileName"), kind=PartyKind.PHONE),
            business=us,
            recipients=(us,),
            subject=_subject(text),
            text=text,
            full_text=body,
            thread_keys=(ThreadKey(key=conversation_key(sender.number, business.number), via="conversation",
                                   conversation=True),
                         ThreadKey(key=message_key(sid), via="message")),
            headers=headers,
            details=details.dump(),
        )
    except ValidationError as exc:
        raise UnparseableMessage(f"the Twilio message does not make an envelope: {exc}") from None


def _media_message(payload: Payload, stored: StoredRequest) -> Envelope:
    """The media of a stored message, fetched by the media runner: a message on the same ticket."""
    sid = stored.param("MessageSid") or stored.param("SmsMessageSid")
    if not sid:
        raise UnparseableMessage("the Twilio media payload has no MessageSid")
    sender, business = _address(stored, "From"), _address(stored, "To")
    count = len(stored.media)
    lines = [f"{count} file{'s' if count != 1 else ''} sent with the message {sid}"]
    lines += [f"Could not be downloaded: {problem}" for problem in stored.media_errors]
    text = "\n".join(lines)
    us = Party(address=business.number, name=stored.number_name, kind=PartyKind.PHONE)
    try:
        return Envelope(
            channel=business.channel,
            external_id=f"{sid}/media",
            received_at=payload.received_at,
            sender=Party(address=sender.number, name=stored.param("ProfileName"), kind=PartyKind.PHONE),
            business=us,
            recipients=(us,),
            subject="Media",
            text=text,
            full_text=text,
            attachments=stored.media,
            # The message's own key first: the media join the ticket the message landed on.
            thread_keys=(ThreadKey(key=message_key(sid), via="media-of", record=False),
                         ThreadKey(key=conversation_key(sender.number, business.number), via="conversation",
                                   conversation=True)),
            headers={"x-twilio-number": business.number, "x-twilio-channel": business.channel},
            details=TwilioDetails(message_sid=sid, account_sid=stored.param("AccountSid")).dump(),
        )
    except ValidationError as exc:
        raise UnparseableMessage(f"the Twilio media payload does not make an envelope: {exc}") from None


def _call(payload: Payload, stored: StoredRequest) -> Envelope:
    """A call's joined callbacks: a voicemail (recording + transcript) or a missed call."""
    sid = stored.param("call_sid")
    if not sid:
        raise UnparseableMessage("the Twilio call has no CallSid")
    caller, business = _address(stored, "from"), _address(stored, "to")
    if stored.endpoint == "voicemail":
        seconds = stored.param("recording_duration") or "?"
        transcript = stored.param("transcription_text").strip()
        status = stored.param("transcription_status")
        if transcript:
            text = f"Voicemail ({seconds} s):\n{transcript}"
        else:
            why = "the transcription failed" if status == "failed" else "no transcription arrived"
            text = f"Voicemail ({seconds} s); {why}: listen to the recording."
        text += "".join(f"\nThe recording could not be downloaded: {p}" for p in stored.media_errors)
        subject = _subject(transcript) or "Voicemail"
    else:
        how = stored.param("call_status") or "ended"
        text = f"Missed call from {caller.number} ({how}; no message left)."
        subject = "Missed call"
    us = Party(address=business.number, name=stored.number_name, kind=PartyKind.PHONE)
    try:
        return Envelope(
            channel="voice",
            external_id=sid,
            received_at=payload.received_at,
            sender=Party(address=caller.number, kind=PartyKind.PHONE),
            business=us,
            recipients=(us,),
            subject=subject,
            text=text,
            full_text=text,
            attachments=stored.media,
            thread_keys=(ThreadKey(key=conversation_key(caller.number, business.number), via="conversation",
                                   conversation=True),),
            headers={"x-twilio-number": business.number, "x-twilio-channel": "voice",
                     "x-twilio-call": stored.endpoint},
            details=TwilioDetails(message_sid=sid, status=stored.param("call_status")).dump(),
        )
    except ValidationError as exc:
        raise UnparseableMessage(f"the Twilio call does not make an envelope: {exc}") from None


def _status(payload: Payload, stored: StoredRequest) -> Envelope:
    sid = stored.param("MessageSid") or stored.param("SmsSid")
    status = (stored.param("MessageStatus") or stored.param("SmsStatus")).lower()
    if not sid or not stored.outbox_key:
        raise UnparseableMessage("a Twilio status callback needs a MessageSid and the outbox key in its URL")
    state = STATUS_STATES.get(status)
    if state is None:
        raise UnparseableMessage(f"status {status!r} is not one a delivery report records")
    customer, business = _address(stored, "To"), _address(stored, "From")
    code = stored.param("ErrorCode")
    detail = f"Twilio reports the {customer.channel} message {sid} as {status}"
    if code:
        detail += f": {describe_error(code, stored.param('ErrorMessage'))}"
    details = TwilioDetails(message_sid=sid, account_sid=stored.param("AccountSid"), status=status,
                            error_code=code)
    try:
        return Envelope(
            channel=customer.channel,
            # One report per message and status: a retried callback is a duplicate, a later
            # status of the same message is news.
            external_id=f"{sid}:{status}",
            received_at=payload.received_at,
            sender=Party(address=customer.number, kind=PartyKind.PHONE),
            business=Party(address=business.number, kind=PartyKind.PHONE),
            recipients=(Party(address=business.number, kind=PartyKind.PHONE),),
            subject=f"Delivery status: {status}",
            text=detail,
            full_text=detail,
            thread_keys=(ThreadKey(key=outbound_key(stored.outbox_key), via="delivery-report", record=False),),
            automated="Twilio delivery status callback",
            delivery_report=DeliveryReport(keys=(stored.outbox_key, sid), state=state,  # type: ignore[arg-type]
                                           detail=detail),
            headers={"x-twilio-status": status, **({"x-twilio-error-code": code} if code else {})},
            details=details.dump(),
        )
    except ValidationError as exc:
        raise UnparseableMessage(f"the Twilio status callback does not make an envelope: {exc}") from None


def describe_payload(payload: Payload) -> PayloadSummary:
    """Who and what, read leniently: the payload is probably broken, that is why it is asked."""
    try:
        data: Any = json.loads(payload.raw)
        params = {str(k): str(v) for k, v in data.get("params", [])}
    except (ValueError, TypeError, AttributeError):
        return PayloadSummary()
    return PayloadSummary(sender=params.get("From", "")[:100], subject=params.get("Body", "")[:80],
                          reference=params.get("MessageSid", "")[:64])
