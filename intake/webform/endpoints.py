"""The HTTP side of the web form: the pages, the intake endpoint and its CORS preflight.

    GET     /form, /form/{form_id}                 the form page (a fresh submission id + token)
    POST    /intake/form, /intake/form/{form_id}   urlencoded, multipart or JSON
    OPTIONS /intake/form, /intake/form/{form_id}   CORS preflight for the configured origins

A post is answered only after the intake log committed it (``ctx.ingest`` in a worker thread):
an HTML page or ``202`` JSON naming the submission; ``503`` when nothing could be stored.
Refusals are answered in the client's language: the form again with the problems marked for a
browser, ``{"error": {"code", "message", "fields"}}`` for JSON. Nothing is stored before the
submission passed every check; attachment blobs are content-addressed, so a retry after a
``503`` stores nothing twice.
"""

from __future__ import annotations

import math
import re
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from fastapi import APIRouter
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response

from intake.adapter import AdapterContext, Payload
from intake.envelope import AttachmentRef, Channel
from intake.errors import IntakeUnavailable
from intake.webform.abuse import HONEYPOT_FIELD, FormTokens, RateLimiter, TokenCheck, client_hash
from intake.webform.form_input import (
    CheckedInput,
    FormInput,
    Refusal,
    Upload,
    check_input,
    media_type,
    read_body,
    read_input,
)
from intake.webform.page import FormView, done_page, form_page, message_page
from intake.webform.settings import (
    DEFAULT_FORM_ID,
    FormLimits,
    FormSpec,
    forms_by_id,
    normalise_origin,
)
from intake.webform.submission import FORMAT, StoredSubmission, WebformClient

__all__ = ["FormEndpoints"]

_HTML_SUBMISSION_ID = re.compile(r"^[0-9a-f]{32}$")
# A client's own id must be hard to collide with another client's: a UUID or similar.
_CLIENT_SUBMISSION_ID = re.compile(r"^[A-Za-z0-9_-]{16,64}$")
_RETRY_AFTER_UNAVAILABLE = "30"
_PREFLIGHT_HEADERS = frozenset({"content-type", "accept", "accept-language", "content-language"})
_EXPIRED = ("The form expired (a form is valid for {hours}); reload the page to get a fresh one. "
            "We kept what you typed below, so you can also just send it again (choose any "
            "attachments again).")


def _page_headers(form: FormSpec) -> dict[str, str]:
    # The token in the page is single-page state: never cache it. Framing is limited to the
    # form's allowed origins when it has any (an embed elsewhere is then refused by the browser).
    ancestors = " ".join(["'self'", *form.allowed_origins]) if form.allowed_origins else "*"
    return {
        "Cache-Control": "no-store",
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "same-origin",
        "Content-Security-Policy": (
            "default-src 'none'; style-src 'unsafe-inline'; img-src 'self'; form-action 'self'; "
            f"base-uri 'none'; frame-ancestors {ancestors}"
        ),
    }


def _wants_json(request: Request) -> bool:
    if media_type(request.headers.get("content-type")) == "application/json":
        return True
    accept = request.headers.get("accept", "")
    return "application/json" in accept and "text/html" not in accept


class FormEndpoints:
    """The router's state: the forms, the limits, the rate limiter and the token signer."""

    def __init__(self, ctx: AdapterContext) -> None:
        self.ctx = ctx
        self.forms = forms_by_id(ctx.section)
        self.limits = FormLimits.from_settings(ctx.settings)
        self.limiter = RateLimiter(self.limits.rate_limit_per_minute)
        self.tokens = FormTokens(self.limits.secret, self.limits.token_max_age_seconds)

    # --- routes --------------------------------------------------------------------------------
    def router(self) -> APIRouter:
        router = APIRouter(tags=["web form"])
        router.add_api_route("/form", self.show_default, methods=["GET"], include_in_schema=False)
        router.add_api_route("/form/{form_id}", self.show, methods=["GET"], include_in_schema=False)
        router.add_api_route("/intake/form", self.submit_default, methods=["POST"])
        router.add_api_route("/intake/form/{form_id}", self.submit, methods=["POST"])
        router.add_api_route("/intake/form", self.preflight_default, methods=["OPTIONS"])
        router.add_api_route("/intake/form/{form_id}", self.preflight, methods=["OPTIONS"])
        return router

    async def show_default(self, request: Request) -> Response:
        return await self.show(request, DEFAULT_FORM_ID)

    async def show(self, request: Request, form_id: str) -> Response:
        form = self.forms.get(form_id)
        if form is None:
            return self._unknown_form(form_id, json_reply=False)
        submission_id = uuid.uuid4().hex
        view = self._view(form, submission_id)
        return HTMLResponse(form_page(view), headers=_page_headers(form))

    async def submit_default(self, request: Request) -> Response:
        return await self.submit(request, DEFAULT_FORM_ID)

    async def preflight_default(self, request: Request) -> Response:
        return await self.preflight(request, DEFAULT_FORM_ID)

    async def preflight(self, request: Request, form_id: str) -> Response:
        form = self.forms.get(form_id)
        origin = request.headers.get("origin", "")
        if form is None:
            return self._unknown_form(form_id, json_reply=True)
        if not origin or not self._origin_allowed(form, origin, request):
            return self._json_error(Refusal(
                403, "origin_not_allowed",
                f"The origin {origin or '(none)'} may not post to the form {form.id!r}; "
                "add it to the form's allowed_origins in the channels file.",
            ), {})
        asked = {h.strip().lower() for h in request.headers.get("access-control-request-headers", "").split(",")
                 if h.strip()}
        headers = self._cors(origin, request)
        headers.update({
            "Access-Control-Allow-Methods": "POST, OPTIONS",
            "Access-Control-Allow-Headers": ", ".join(sorted(asked & _PREFLIGHT_HEADERS)) or "Content-Type",
            "Access-Control-Max-Age": "600",
        })
        return Response(status_code=204, headers=headers)

    # --- the intake endpoint ----------------------------------------------------------------
    async def submit(self, request: Request, form_id: str) -> Response:
        received_at = datetime.now(UTC)
        json_reply = _wants_json(request)
        form = self.forms.get(form_id)
        if form is None:
            return self._unknown_form(form_id, json_reply=json_reply)
        origin = request.headers.get("origin", "")
        cors: dict[str, str] = {}
        if json_reply and origin:
            if not self._origin_allowed(form, origin, request):
                return self._json_error(Refusal(
                    403, "origin_not_allowed",
                    f"Pages of {origin} may not post to the form {form.id!r}; add the origin to the "
                    "form's allowed_origins in the channels file.",
                ), {})
            cors = self._cors(origin, request)
        ip = request.client.host if request.client else "unknown"
        ip_hash = client_hash(ip, self.limits.secret)
        wait = self.limiter.hit(ip_hash)
        if wait is not None:
            seconds = str(max(1, math.ceil(wait)))
            refusal = Refusal(
                429, "rate_limited",
                f"Too many messages from your network in the last minute. Wait {seconds} seconds "
                "and send it again; what you typed is kept if you go back.",
                headers={"Retry-After": seconds},
            )
            return self._refuse(refusal, form, json_reply, cors)
        try:
            body = await read_body(request, self.limits.max_body_bytes)
            given = await read_input(request, body, self.limits)
        except Refusal as unreadable:
            return self._refuse(unreadable, form, json_reply, cors)
        json_reply = given.via == "json"

        if given.values.get(HONEYPOT_FIELD, "").strip():
            return self._pretend(form, given, json_reply, cors)

        submission_id, problem = self._submission_id(form, given)
        if problem is not None:
            return self._refuse(problem, form, json_reply, cors, given=given, submission_id=submission_id)

        checked = check_input(form, given, self.limits)
        if checked.errors:
            refusal = Refusal(checked.status, checked.code, _summary(checked), fields=checked.errors)
            return self._refuse(refusal, form, json_reply, cors, given=given, submission_id=submission_id)

        try:
            refs = await run_in_threadpool(self._store_attachments, checked.uploads)
            stored = StoredSubmission(
                submission_id=submission_id,
                form_id=form.id,
                form_title=form.title,
                queue=form.queue,
                name=checked.values["name"],
                email=checked.values["email"],
                subject=checked.values["subject"],
                message=checked.values["message"],
                fields=checked.extra,
                attachments=refs,
                client=WebformClient(
                    ip_hash=ip_hash,
                    user_agent=request.headers.get("user-agent", "")[:500],
                    origin=origin[:200],
                    via=given.via,
                ),
                submitted_at=received_at,
            )
            payload = Payload(
                channel=Channel.WEBFORM,
                raw=stored.to_bytes(),
                received_at=received_at,
                source=f"webform:{form.id}",
                meta={"content_type": "application/json", "format": FORMAT},
            )
            accepted = await run_in_threadpool(self.ctx.ingest, payload)
        except (IntakeUnavailable, OSError):
            refusal = Refusal(
                503, "unavailable",
                "We could not save your message just now; nothing was sent. Please try again in a "
                "minute.",
                headers={"Retry-After": _RETRY_AFTER_UNAVAILABLE},
            )
            return self._refuse(refusal, form, json_reply, cors, given=given, submission_id=submission_id)

        if json_reply:
            content = {
                "submission_id": submission_id,
                "intake_id": accepted.intake_id,
                "duplicate": accepted.duplicate,
                "status": "received",
            }
            return JSONResponse(content, status_code=202, headers=cors)
        page = done_page(form, submission_id=submission_id, email=checked.values["email"],
                         duplicate=accepted.duplicate, again=form.page_path)
        return HTMLResponse(page, headers=_page_headers(form))

    # --- steps --------------------------------------------------------------------------------
    def _submission_id(self, form: FormSpec, given: FormInput) -> tuple[str, Refusal | None]:
        """The submission id, or a refusal (403 for a page token that is missing or stale)."""
        given_id = given.values.get("submission_id", "").strip()
        if given.via == "json":
            if not given_id:
                return uuid.uuid4().hex, None
            if not _CLIENT_SUBMISSION_ID.match(given_id):
                problem = "must be 16 to 64 letters, digits, '-' or '_' (a UUID is a good choice)"
                return uuid.uuid4().hex, Refusal(422, "invalid", f"submission_id {problem}.",
                                                 fields={"submission_id": problem})
            return given_id, None
        if not _HTML_SUBMISSION_ID.match(given_id):
            return uuid.uuid4().hex, Refusal(
                403, "form_token_missing",
                "This form is missing its security token; reload the page and send it again.",
            )
        verdict: TokenCheck = self.tokens.check(given.values.get("form_token", ""), form.id, given_id)
        if verdict == "ok":
            return given_id, None
        if verdict == "expired":
            hours = self.limits.token_max_age_seconds / 3600
            text = _EXPIRED.format(hours=f"{hours:g} hour{'s' if hours != 1 else ''}")
            return given_id, Refusal(403, "form_expired", text)
        return given_id, Refusal(
            403, f"form_token_{verdict}",
            "This form's security token is missing or not valid; reload the page and send it again.",
        )

    def _store_attachments(self, uploads: list[tuple[Upload, str]]) -> tuple[AttachmentRef, ...]:
        refs = []
        for upload, content_type in uploads:
            digest = self.ctx.blobs.put(upload.data)
            refs.append(AttachmentRef(sha256=digest, size=len(upload.data), content_type=content_type,
                                      filename=upload.filename))
        return tuple(refs)

    def _origin_allowed(self, form: FormSpec, origin: str, request: Request) -> bool:
        try:
            normal = normalise_origin(origin)
        except ValueError:
            return False
        if normal in form.allowed_origins:
            return True
        # Our own pages (the served form, an agent UI on the same host) need no listing.
        host = request.headers.get("host", "").lower()
        return bool(host) and urlsplit(origin).netloc.lower() == host

    def _cors(self, origin: str, request: Request) -> dict[str, str]:
        host = request.headers.get("host", "").lower()
        if urlsplit(origin).netloc.lower() == host:
            return {}  # same origin: CORS headers are not needed
        return {"Access-Control-Allow-Origin": origin, "Vary": "Origin"}

    # --- answers ------------------------------------------------------------------------------
    def _view(
        self, form: FormSpec, submission_id: str, *, values: Mapping[str, str] | None = None,
        errors: Mapping[str, str] | None = None, notice: str = "",
    ) -> FormView:
        return FormView(
            form=form,
            action=form.intake_path,
            submission_id=submission_id,
            token=self.tokens.issue(form.id, submission_id),
            limits=self.limits,
            values=dict(values or {}),
            errors=dict(errors or {}),
            notice=notice,
        )

    def _refuse(
        self, refusal: Refusal, form: FormSpec, json_reply: bool, cors: dict[str, str], *,
        given: FormInput | None = None, submission_id: str | None = None,
    ) -> Response:
        if json_reply:
            return self._json_error(refusal, cors)
        headers = {**_page_headers(form), **refusal.headers}
        if given is None:
            page = message_page(_TITLES.get(refusal.status, "Your message was not sent"), refusal.message,
                                back=form.page_path)
            return HTMLResponse(page, status_code=refusal.status, headers=headers)
        # The form again, with what was typed and every problem next to its field. A fresh token
        # for the same submission id: if the first try was stored after all, a resend is a duplicate.
        values = {k: v for k, v in given.values.items() if k not in ("form_token", HONEYPOT_FIELD)}
        notice = "" if refusal.fields else refusal.message
        if refusal.fields and "attachments" not in refusal.fields and given.uploads:
            notice = "Choose your attachments again: browsers do not keep them when a form is sent back."
        view = self._view(form, submission_id or uuid.uuid4().hex, values=values, errors=refusal.fields,
                          notice=notice)
        return HTMLResponse(form_page(view), status_code=refusal.status, headers=headers)

    @staticmethod
    def _json_error(refusal: Refusal, cors: dict[str, str]) -> JSONResponse:
        error: dict[str, Any] = {"code": refusal.code, "message": refusal.message}
        if refusal.fields:
            error["fields"] = refusal.fields
        return JSONResponse({"error": error}, status_code=refusal.status, headers={**cors, **refusal.headers})

    def _unknown_form(self, form_id: str, *, json_reply: bool) -> Response:
        known = ", ".join(sorted(self.forms))
        refusal = Refusal(404, "unknown_form", f"There is no form {form_id!r} here (forms: {known}).")
        if json_reply:
            return self._json_error(refusal, {})
        return HTMLResponse(message_page("Form not found", refusal.message), status_code=404)

    def _pretend(self, form: FormSpec, given: FormInput, json_reply: bool, cors: dict[str, str]) -> Response:
        """A bot filled the honeypot: thank it as if it worked, store nothing."""
        submission_id = given.values.get("submission_id", "") or uuid.uuid4().hex
        if json_reply:
            content = {"submission_id": submission_id, "intake_id": None, "duplicate": False,
                       "status": "received"}
            return JSONResponse(content, status_code=202, headers=cors)
        page = done_page(form, submission_id=submission_id[:64], email=given.values.get("email", "")[:320],
                         duplicate=False, again=form.page_path)
        return HTMLResponse(page, headers=_page_headers(form))


_TITLES = {
    400: "Your message could not be read",
    403: "Please reload the form",
    413: "Your message is too large",
    415: "Your message could not be read",
    429: "Please wait a moment",
    503: "Please try again",
}


def _summary(checked: CheckedInput) -> str:
    count = len(checked.errors)
    fields = ", ".join(checked.errors)
    return f"{count} field{'s' if count != 1 else ''} need{'s' if count == 1 else ''} correcting: {fields}."

