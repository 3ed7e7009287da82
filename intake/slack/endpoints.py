"""The HTTP side of Slack: ``POST /intake/slack/events`` (and the agents' interactivity endpoint).

Every request is checked first: the v0 signature over ``v0:{timestamp}:{body}`` with the signing
secret, and a timestamp at most 5 minutes off (``slack_sdk.signature.SignatureVerifier``): a
forged or replayed request is a ``401`` and changes nothing.

A customer's message is answered only after the intake log committed it (``200``), or ``503``
when it could not be stored, so Slack retries (it does, up to 3 times, with ``X-Slack-Retry-Num``).
A retry carries the same ``event_id``, the intake log's idempotency key for Slack: it is
acknowledged and dropped. The work (routing, the acknowledgement, the queue channel's post)
happens in workers, well inside Slack's 3 seconds for the answer.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import OrderedDict
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl

from fastapi import APIRouter
from slack_sdk.signature import SignatureVerifier
from sqlalchemy.exc import SQLAlchemyError
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from intake.adapter import AdapterContext, Payload
from intake.envelope import Channel
from intake.errors import IntakeUnavailable, UnparseableMessage
from intake.slack.api import UserDirectory, web_client
from intake.slack.contacts import ContactLinker
from intake.slack.edits import apply_change, message_source
from intake.slack.events import classify, load_body
from intake.slack.files import download_files
from intake.slack.settings import SlackSection
from intake.slack.staff import StaffDesk

__all__ = ["SlackEndpoints"]

log = logging.getLogger(__name__)

# Slack's event bodies are a few kB; a request far beyond that is not Slack.
MAX_BODY_BYTES = 1024 * 1024
STALE_SECONDS = 300


def _error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"ok": False, "error": code, "message": message}, status_code=status, headers=headers)


class _Recent:
    """The event ids this process committed lately (bounded): Slack's retries of them are
    answered without a trip to the store. Only a shortcut: the intake log's unique
    (channel, external_id) decides duplicates across processes and restarts."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._ids: OrderedDict[str, int] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, event_id: str) -> int | None:
        with self._lock:
            return self._ids.get(event_id) if event_id else None

    def add(self, event_id: str, intake_id: int) -> None:
        with self._lock:
            self._ids[event_id] = intake_id
            while len(self._ids) > self.size:
                self._ids.popitem(last=False)


class SlackEndpoints:
    def __init__(self, ctx: AdapterContext) -> None:
        self.ctx = ctx
        section = ctx.section
        self.section: SlackSection = section if isinstance(section, SlackSection) else SlackSection()
        secret = ctx.settings.slack_signing_secret.get_secret_value()
        self.verifier = SignatureVerifier(secret) if secret else None
        # A short timeout: users.info is asked on the way to the answer Slack waits 3 s for.
        client = web_client(ctx.settings, timeout=2)
        self.users = UserDirectory(client)
        self.staff = StaffDesk(ctx, self.section, client, self.users)
        self.contacts = ContactLinker(ctx)
        self.committed = _Recent(10_000)

    def router(self) -> APIRouter:
        router = APIRouter(tags=["slack"])
        router.add_api_route("/intake/slack/events", self.events, methods=["POST"])
        router.add_api_route("/intake/slack/interactivity", self.interactivity, methods=["POST"])
        return router

    async def _verified_body(self, request: Request) -> bytes | Response:
        if self.verifier is None:
            return _error(503, "not_configured", "Slack intake is not configured: set "
                          "OMNIDESK_SLACK_SIGNING_SECRET to the app's signing secret and restart.")
        body = await request.body()
        if len(body) > MAX_BODY_BYTES:
            return _error(413, "too_large", f"a Slack request is at most {MAX_BODY_BYTES} bytes")
        timestamp = request.headers.get("x-slack-request-timestamp", "")
        signature = request.headers.get("x-slack-signature", "")
        if not timestamp or not signature:
            return _error(401, "unsigned", "the request has no X-Slack-Signature / X-Slack-Request-Timestamp")
        try:
            age = abs(time.time() - int(timestamp))
        except ValueError:
            return _error(401, "bad_timestamp", "X-Slack-Request-Timestamp is not a Unix time")
        if age > STALE_SECONDS:
            return _error(401, "stale", "the request is older than 5 minutes (a replay, or this "
                          "server's clock is off: check NTP)")
        if not self.verifier.is_valid(body=body, timestamp=timestamp, signature=signature):
            return _error(401, "bad_signature", "the signature does not match; check "
                          "OMNIDESK_SLACK_SIGNING_SECRET against the app's Basic Information page")
        return body

    async def events(self, request: Request) -> Response:
        received_at = datetime.now(UTC)
        raw = await self._verified_body(request)
        if isinstance(raw, Response):
            return raw
        meta: dict[str, Any] = {"content_type": request.headers.get("content-type", "application/json")}
        retry = request.headers.get("x-slack-retry-num")
        if retry:
            meta["retry_num"] = retry
        try:
            body = load_body(raw)
        except UnparseableMessage:
            return await self._store(raw, received_at, meta)  # signed but broken: quarantined
        verdict = classify(body, self.section)
        if verdict.action == "url_verification":
            return JSONResponse({"challenge": verdict.challenge})
        if verdict.action == "customer":
            event_id = str(body.get("event_id") or "")
            known = self.committed.get(event_id)
            if known is not None:  # Slack's retry of an event this process already committed
                return JSONResponse({"ok": True, "intake_id": known, "duplicate": True})
            event = body.get("event") or {}
            user_id = str(event.get("user") or "")
            user = await run_in_threadpool(self.users.lookup, user_id) if user_id else None
            if user is not None:
                meta["user"] = user.as_meta()
                await run_in_threadpool(self.contacts.link, user_id, user.email, user.name)
            if event.get("files"):
                meta["attachments"] = await run_in_threadpool(
                    download_files, event["files"], token=self.ctx.settings.slack_bot_token.get_secret_value(),
                    api_base=self.ctx.settings.slack_api_base, blobs=self.ctx.blobs)
            source = message_source(verdict.channel, str(event.get("ts") or ""))
            meta["event_id"] = event_id
            return await self._store(raw, received_at, meta, source=source)
        if verdict.action in ("edit", "delete"):
            try:
                outcome = await run_in_threadpool(apply_change, self.ctx, body, verdict.action)
            except SQLAlchemyError as exc:
                log.warning("slack %s not stored, Slack will retry: %s", verdict.action, exc)
                return _error(503, "unavailable", "the change could not be stored; Slack retries it",
                              headers={"Retry-After": "5"})
            if outcome == "not_routed":  # the message itself is still on its way: Slack retries
                return _error(503, "not_yet", "the edited message is not on its ticket yet; retry",
                              headers={"Retry-After": "5"})
            return JSONResponse({"ok": True, "outcome": outcome})
        if verdict.action == "agent":
            return await self._staff(self.staff.thread_reply, body)
        return JSONResponse({"ok": True, "ignored": verdict.reason or verdict.action})

    async def interactivity(self, request: Request) -> Response:
        """Button presses: a signed form body whose ``payload`` field is the JSON of the action."""
        raw = await self._verified_body(request)
        if isinstance(raw, Response):
            return raw
        try:
            fields = dict(parse_qsl(raw.decode("utf-8"), keep_blank_values=True))
            payload = json.loads(fields["payload"])
        except (UnicodeDecodeError, KeyError, json.JSONDecodeError):
            return _error(400, "bad_payload", "expected a form body with a JSON 'payload' field, as Slack sends")
        if not isinstance(payload, dict):
            return _error(400, "bad_payload", "the 'payload' field is not a JSON object")
        # Slack shows the presser an error unless it gets 200 within 3 s; the outcome is for logs.
        return await self._staff(self.staff.button, payload)

    async def _staff(self, action: Any, *args: Any) -> Response:
        try:
            outcome = await run_in_threadpool(action, *args)
        except SQLAlchemyError as exc:
            log.warning("slack staff action not stored, Slack will retry: %s", exc)
            return _error(503, "unavailable", "the action could not be stored; Slack retries it",
                          headers={"Retry-After": "5"})
        return JSONResponse({"ok": True, "outcome": outcome})

    async def _store(self, raw: bytes, received_at: datetime, meta: dict[str, Any], *,
                     source: str = "slack:events") -> Response:
        # A customer message's source is its channel and ts: edits and deletions find it by that.
        payload = Payload(channel=Channel.SLACK, raw=raw, received_at=received_at, source=source, meta=meta)
        try:
            accepted = await run_in_threadpool(self.ctx.ingest, payload)
        except (IntakeUnavailable, OSError) as exc:
            log.warning("slack event not stored, Slack will retry: %s", exc)
            return _error(503, "unavailable", "the event could not be stored; Slack retries it",
                          headers={"Retry-After": "5"})
        event_id = str(meta.get("event_id") or "")
        if event_id and not accepted.quarantined:
            self.committed.add(event_id, accepted.intake_id)
        return JSONResponse({"ok": True, "intake_id": accepted.intake_id, "duplicate": accepted.duplicate})
