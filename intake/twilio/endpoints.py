"""The Twilio webhooks, mounted by the web process.

    POST /intake/twilio/messages   inbound SMS and WhatsApp (``whatsapp:`` on From/To)
    POST /intake/twilio/status     delivery status callbacks of the messages we sent

Each request is checked first: its ``X-Twilio-Signature`` against the auth token and the public
URL Twilio called (``OMNIDESK_PUBLIC_URL`` behind a proxy), else ``403`` and nothing is stored.
Then it is logged through ``ctx.ingest`` in a worker thread and answered only after the commit:
``200`` with empty TwiML (nothing is said back to the customer from here; acknowledgements go
out from the outbox), or ``503`` when nothing could be stored, so Twilio retries. Routing runs in
the workers, so the answer comes back in milliseconds, far inside Twilio's 15 s.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl

from fastapi import APIRouter
from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from twilio.request_validator import RequestValidator
from twilio.twiml.messaging_response import MessagingResponse

from config.settings import Settings
from intake.adapter import AdapterContext, Payload
from intake.errors import IntakeUnavailable
from intake.twilio.media import MEDIA_SOURCE
from intake.twilio.numbers import parse_address
from intake.twilio.parse import STATUS_STATES
from intake.twilio.settings import number_specs
from intake.twilio.stored import FORMAT, StoredRequest
from intake.twilio.voice import (
    ENDED,
    RECORDING,
    TRANSCRIPTION,
    greeting_twiml,
    hangup_twiml,
    record_part,
)

__all__ = ["TwilioEndpoints", "public_base"]

log = logging.getLogger(__name__)

# Twilio's webhook bodies are a few kB; anything far larger is not from Twilio.
_MAX_BODY = 256 * 1024
_EMPTY_TWIML = str(MessagingResponse())


def public_base(settings: Settings) -> str:
    """The base URL Twilio calls us at: the public URL behind a proxy, else our own address."""
    public = settings.public_url.rstrip("/")
    if public:
        return public
    return f"http://{settings.http_host}:{settings.http_port}"


class _Params:
    """Form pairs as the validator reads them: ``getall`` keeps a repeated key's every value."""

    def __init__(self, pairs: Sequence[tuple[str, str]]) -> None:
        self.pairs = pairs

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(dict.fromkeys(k for k, _ in self.pairs))

    def __bool__(self) -> bool:
        return bool(self.pairs)

    def getall(self, name: str) -> list[str]:
        return [v for k, v in self.pairs if k == name]


def _text(status: int, message: str) -> Response:
    return Response(message + "\n", status_code=status, media_type="text/plain; charset=utf-8")


class TwilioEndpoints:
    def __init__(self, ctx: AdapterContext) -> None:
        self.ctx = ctx
        token = ctx.settings.twilio_auth_token.get_secret_value()
        self.validator = RequestValidator(token) if token else None
        self.account_sid = ctx.settings.twilio_account_sid
        self.base = public_base(ctx.settings)

    def router(self) -> APIRouter:
        router = APIRouter(tags=["twilio"])
        router.add_api_route("/intake/twilio/messages", self.messages, methods=["POST"])
        router.add_api_route("/intake/twilio/status", self.status, methods=["POST"])
        router.add_api_route("/intake/twilio/voice", self.voice, methods=["POST"])
        router.add_api_route("/intake/twilio/voice/recorded", self.voice_recorded, methods=["POST"])
        router.add_api_route("/intake/twilio/voice/recording", self.voice_recording, methods=["POST"])
        router.add_api_route("/intake/twilio/voice/transcription", self.voice_transcription, methods=["POST"])
        router.add_api_route("/intake/twilio/voice/status", self.voice_status, methods=["POST"])
        return router

    # --- the checks every request passes ----------------------------------------------------
    async def _verified(self, request: Request) -> tuple[str, list[tuple[str, str]]] | Response:
        """(signed URL, form pairs) of a genuine Twilio request, or the refusal to send."""
        if self.validator is None:
            return _text(403, "Twilio is not configured here: set OMNIDESK_TWILIO_AUTH_TOKEN "
                              "(and OMNIDESK_TWILIO_ACCOUNT_SID) to accept Twilio webhooks.")
        body = await request.body()
        if len(body) > _MAX_BODY:
            return _text(413, f"A Twilio webhook body is a few kB; this one has {len(body)} bytes.")
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type != "application/x-www-form-urlencoded":
            return _text(415, "Twilio posts application/x-www-form-urlencoded; this is "
                              f"{content_type or 'no content type'}.")
        try:
            pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True, strict_parsing=bool(body))
        except (UnicodeDecodeError, ValueError):
            return _text(400, "The body is not a UTF-8 form (key=value&...).")
        url = self.base + request.url.path + (f"?{request.url.query}" if request.url.query else "")
        signature = request.headers.get("x-twilio-signature", "")
        # The validator also tries the URL with and without the default port, as Twilio does.
        if not signature or not self.validator.validate(url, _Params(pairs), signature):
            log.warning("twilio: refused a request to %s with a %s signature", request.url.path,
                        "bad" if signature else "missing")
            return _text(403, f"X-Twilio-Signature is {'wrong' if signature else 'missing'} for {url}; "
                              "if Omnidesk runs behind a proxy, set OMNIDESK_PUBLIC_URL to the URL "
                              "configured in Twilio.")
        account = next((v for k, v in pairs if k == "AccountSid"), "")
        if self.account_sid and account and account != self.account_sid:
            return _text(403, f"This request is for the Twilio account {account}, not ours "
                              "(OMNIDESK_TWILIO_ACCOUNT_SID).")
        return url, pairs

    async def _store(self, stored: StoredRequest, channel: str, received_at: datetime) -> Response:
        # A message with media is marked so the media runner finds it (and fetches them later).
        has_media = stored.endpoint == "messages" and stored.param("NumMedia") not in ("", "0")
        payload = Payload(channel=channel, raw=stored.to_bytes(), received_at=received_at,
                          source=MEDIA_SOURCE if has_media else f"twilio:{stored.endpoint}",
                          meta={"content_type": "application/json", "format": FORMAT})
        try:
            await run_in_threadpool(self.ctx.ingest, payload)
        except (IntakeUnavailable, OSError) as exc:
            log.error("twilio: could not store a %s request, asking Twilio to retry: %s", stored.endpoint, exc)
            return Response("Temporarily unable to store the message; please retry.\n", status_code=503,
                            headers={"Retry-After": "30"}, media_type="text/plain")
        return Response(_EMPTY_TWIML, media_type="application/xml")

    # --- routes --------------------------------------------------------------------------------
    async def messages(self, request: Request) -> Response:
        received_at = datetime.now(UTC)
        verified = await self._verified(request)
        if isinstance(verified, Response):
            return verified
        url, pairs = verified
        stored = StoredRequest(endpoint="messages", url=url, params=tuple(pairs))
        channel = "sms"
        try:
            to = parse_address(stored.param("To"))
            channel = to.channel
            spec = number_specs(self.ctx.section).get(to.number)
            if spec is not None:
                stored = stored.model_copy(update={"queue": spec.queue, "number_name": spec.name})
        except ValueError:
            pass  # a bad To: parse quarantines it with the reason
        return await self._store(stored, channel, received_at)

    async def status(self, request: Request) -> Response:
        received_at = datetime.now(UTC)
        verified = await self._verified(request)
        if isinstance(verified, Response):
            return verified
        url, pairs = verified
        key = request.query_params.get("outbox", "")
        stored = StoredRequest(endpoint="status", url=url, params=tuple(pairs), outbox_key=key or None)
        status = (stored.param("MessageStatus") or stored.param("SmsStatus")).lower()
        if status not in STATUS_STATES:
            return Response(_EMPTY_TWIML, media_type="application/xml")  # queued, sending: nothing to record
        try:
            ours = bool(key) and await run_in_threadpool(self._is_ours, key)
        except IntakeUnavailable as exc:
            log.error("twilio: %s; asking Twilio to retry the status callback", exc)
            return Response("Temporarily unable to record the status; please retry.\n", status_code=503,
                            headers={"Retry-After": "30"}, media_type="text/plain")
        if not ours:
            # Not a message of our outbox (another system on the account): nothing to report on,
            # and storing it would only open a ticket for nobody.
            log.info("twilio: status callback for %s names no outbox row of ours; ignored",
                     stored.param("MessageSid"))
            return Response(_EMPTY_TWIML, media_type="application/xml")
        channel = "sms"
        try:
            channel = parse_address(stored.param("To")).channel
        except ValueError:
            pass
        return await self._store(stored, channel, received_at)

    def _is_ours(self, key: str) -> bool:
        from tickets.models import OutboxRow

        try:
            with self.ctx.db.read() as session:
                return session.execute(
                    select(OutboxRow.id).where(OutboxRow.idempotency_key == key).limit(1)
                ).first() is not None
        except Exception as exc:  # the store is down: let Twilio retry rather than drop it
            raise IntakeUnavailable(f"cannot look up the outbox: {exc}") from exc

    # --- voice ---------------------------------------------------------------------------------
    async def voice(self, request: Request) -> Response:
        """An incoming call: the greeting and the voicemail recording (nothing stored yet)."""
        verified = await self._verified(request)
        if isinstance(verified, Response):
            return verified
        _url, pairs = verified
        params = dict(pairs)
        s = self.ctx.settings
        greeting = s.twilio_voice_greeting
        try:
            number = parse_address(params.get("To", "")).number
            caller = parse_address(params.get("From", "")).number
        except ValueError:
            # An anonymous or withheld caller cannot be answered or threaded: say so, take nothing.
            return Response(_say_and_hang_up("Sorry, we cannot take messages from withheld numbers."),
                            media_type="application/xml")
        spec = number_specs(self.ctx.section).get(number)
        if spec is not None and spec.greeting:
            greeting = spec.greeting
        twiml = greeting_twiml(self.base, greeting=greeting, max_length=s.twilio_voice_max_length_seconds,
                               caller=caller, number=number)
        return Response(twiml, media_type="application/xml")

    async def _part(self, request: Request, bit: int, part: Callable[[dict[str, str]], dict[str, Any]],
                    answer: str, only_if: Callable[[dict[str, str]], bool] | None = None) -> Response:
        verified = await self._verified(request)
        if isinstance(verified, Response):
            return verified
        _url, pairs = verified
        params = dict(pairs)
        if only_if is not None and not only_if(params):
            return Response(answer, media_type="application/xml")
        call_sid = params.get("CallSid", "")
        if not call_sid:
            return _text(400, "A Twilio call callback names its CallSid; this one has none.")
        values = {"call_sid": call_sid, "from": request.query_params.get("from") or params.get("From", ""),
                  "to": request.query_params.get("to") or params.get("To", ""), **part(params)}
        try:
            await run_in_threadpool(record_part, self.ctx.db, self.ctx.blobs, call_sid, bit, values)
        except (SQLAlchemyError, OSError) as exc:  # the store is down: Twilio should try again
            log.error("twilio: could not record a callback of call %s: %s", call_sid, exc)
            return Response("Temporarily unable to record the call; please retry.\n", status_code=503,
                            headers={"Retry-After": "30"}, media_type="text/plain")
        return Response(answer, media_type="application/xml")

    async def voice_recorded(self, request: Request) -> Response:
        """The <Record> ended (the caller hung up or pressed a key): end the call."""
        def part(p: dict[str, str]) -> dict[str, Any]:
            return {"call_status": p.get("CallStatus", "completed")}

        return await self._part(request, ENDED, part, hangup_twiml())

    async def voice_recording(self, request: Request) -> Response:
        def part(p: dict[str, str]) -> dict[str, Any]:
            return {"recording_url": p.get("RecordingUrl", ""), "recording_sid": p.get("RecordingSid", ""),
                    "recording_duration": p.get("RecordingDuration", "")}

        return await self._part(request, RECORDING, part, _EMPTY_TWIML)

    async def voice_transcription(self, request: Request) -> Response:
        def part(p: dict[str, str]) -> dict[str, Any]:
            return {"transcription_text": p.get("TranscriptionText", ""),
                    "transcription_status": p.get("TranscriptionStatus", "")}

        return await self._part(request, TRANSCRIPTION, part, _EMPTY_TWIML)

    async def voice_status(self, request: Request) -> Response:
        """The call status callback (configure it on the number): the call is over."""
        def part(p: dict[str, str]) -> dict[str, Any]:
            return {"call_status": p.get("CallStatus", "")}

        def over(p: dict[str, str]) -> bool:  # ringing, in-progress: not over yet
            return p.get("CallStatus", "") in ("completed", "busy", "no-answer", "canceled", "failed")

        return await self._part(request, ENDED, part, _EMPTY_TWIML, only_if=over)


def _say_and_hang_up(text: str) -> str:
    from twilio.twiml.voice_response import VoiceResponse

    response = VoiceResponse()
    response.say(text)
    response.hangup()
    return str(response)
