"""The web form adapter: pages, the intake endpoint's answers, abuse limits, parse and the forms section.

The adapter's router is served by a real uvicorn server on a free port (``served``) and talked to
with httpx; a few cases that need a fake clock use Starlette's TestClient. ``ingest`` is a
recorder that behaves like the intake log where it matters here: it parses the payload with the
adapter, drops a second (channel, external_id) as a duplicate, and can be told to be unavailable.
"""

from __future__ import annotations

import base64
import json
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI

from intake.adapter import AdapterContext, Payload
from intake.blobs import FileBlobStore
from intake.channels import ChannelsError, parse_channels
from intake.envelope import Envelope, Party, ThreadKey, load_envelope
from intake.errors import IntakeUnavailable, UnparseableMessage
from intake.log import Accepted
from intake.webform.channel import ADAPTER, WebFormAdapter
from intake.webform.settings import FormSpec
from intake.webform.submission import WebformDetails
from tests.peers import free_port

PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
)
PDF = b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"


# --- harness ----------------------------------------------------------------------------------
@dataclass
class Recorder:
    """A stand-in for ``ingest``: parses like the real one, dedupes like the intake log."""

    adapter: WebFormAdapter | None = None
    payloads: list[Payload] = field(default_factory=list)
    calls: int = 0
    unavailable: bool = False
    _ids: dict[str, int] = field(default_factory=dict)

    def __call__(self, payload: Payload) -> Accepted:
        self.calls += 1
        if self.unavailable:
            raise IntakeUnavailable("database is down")
        assert self.adapter is not None
        envelope = self.adapter.parse(payload)
        if envelope.external_id in self._ids:
            return Accepted(intake_id=self._ids[envelope.external_id], duplicate=True)
        self.payloads.append(payload)
        self._ids[envelope.external_id] = len(self.payloads)
        return Accepted(intake_id=len(self.payloads))

    def envelopes(self) -> list[Envelope]:
        assert self.adapter is not None
        return [self.adapter.parse(p) for p in self.payloads]


class FormSettings:
    """Real settings plus the ``form_*`` settings the core does not have yet."""

    def __init__(self, base: Any, **form: Any) -> None:
        self._base = base
        self.__dict__.update(form)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._base, name)


@dataclass
class Desk:
    adapter: WebFormAdapter
    ingest: Recorder
    blobs: FileBlobStore
    app: FastAPI
    blob_dir: Path

    def blob_count(self) -> int:
        return sum(1 for p in self.blob_dir.rglob("*") if p.is_file() and not p.name.startswith(".tmp"))


FORMS_YAML = """\
forms:
  - id: billing
    title: Billing question
    queue: billing
    allowed_origins: ["https://shop.example.com"]
    fields:
      - name: order_number
        label: Order number
        max_length: 20
      - name: topic
        label: Topic
        type: select
        options: [Invoice, Refund]
        required: true
"""


@pytest.fixture
def make_desk(make_settings: Callable[..., Any], tmp_path: Path) -> Callable[..., Desk]:
    def make(*, forms: str | None = None, **form_settings: Any) -> Desk:
        form_settings.setdefault("form_rate_limit_per_minute", 1000)
        settings = FormSettings(make_settings(), **form_settings)
        section = parse_channels(forms, "channels.yaml", environ={}).forms if forms else None
        blob_dir = tmp_path / f"blobs-{time.monotonic_ns()}"
        blobs = FileBlobStore(blob_dir, fsync=False)
        recorder = Recorder()
        ctx = AdapterContext(settings=settings, db=None, blobs=blobs, ingest=recorder,
                            load_section=lambda: section)  # type: ignore[arg-type]
        adapter = ADAPTER(ctx)
        recorder.adapter = adapter
        app = FastAPI()
        app.include_router(adapter.http_router())
        return Desk(adapter, recorder, blobs, app, blob_dir)

    return make


@pytest.fixture
def served() -> Iterator[Callable[[FastAPI], str]]:
    """Serve an app with uvicorn in a thread; yields a function returning its base URL."""
    servers: list[tuple[uvicorn.Server, threading.Thread]] = []

    def serve(app: FastAPI) -> str:
        port = free_port()
        config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
        server = uvicorn.Server(config)
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        deadline = time.monotonic() + 10
        while not server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.01)
        servers.append((server, thread))
        return f"http://127.0.0.1:{port}"

    yield serve
    for server, thread in servers:
        server.should_exit = True
        thread.join(5)


@pytest.fixture
def desk(make_desk: Callable[..., Desk]) -> Desk:
    return make_desk(forms=FORMS_YAML)


@pytest.fixture
def http(desk: Desk, served: Callable[[FastAPI], str]) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=served(desk.app), timeout=10) as client:
        yield client


def hidden(page: str) -> dict[str, str]:
    """The hidden fields of a served form page."""
    return {
        "submission_id": re.search(r'name="submission_id" value="([0-9a-f]{32})"', page).group(1),  # type: ignore[union-attr]
        "form_token": re.search(r'name="form_token" value="([^"]+)"', page).group(1),  # type: ignore[union-attr]
    }


def fresh_form(http: httpx.Client, path: str = "/form") -> dict[str, str]:
    response = http.get(path)
    assert response.status_code == 200
    return hidden(response.text)


# --- the page ---------------------------------------------------------------------------------
def test_default_form_is_served_without_configuration(make_desk: Callable[..., Desk],
                                                      served: Callable[[FastAPI], str]) -> None:
    desk = make_desk()
    with httpx.Client(base_url=served(desk.app)) as http:
        response = http.get("/form")
        page = response.text
        second = http.get("/form").text
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert response.headers["cache-control"] == "no-store"
    assert '<html lang="en">' in page and "<main>" in page and "<h1>Contact support</h1>" in page
    for name in ("name", "email", "subject", "message", "attachments"):
        assert f'<label for="{name}">' in page
        assert f'id="{name}" name="{name}"' in page
    assert re.search(r'id="email" name="email"[^>]* required', page)
    assert 'autocomplete="email"' in page and 'autocomplete="name"' in page
    assert 'enctype="multipart/form-data"' in page and 'action="/intake/form"' in page
    # The honeypot: out of sight, out of the accessibility tree and out of the tab order.
    assert re.search(r'<div class="hp" aria-hidden="true">', page)
    assert re.search(r'name="website" value="" tabindex="-1"', page)
    assert "<script" not in page
    assert hidden(page)["submission_id"] != hidden(second)["submission_id"]  # one id per page served


def test_configured_form_has_its_fields_and_unknown_form_is_404(http: httpx.Client) -> None:
    page = http.get("/form/billing").text
    assert "<h1>Billing question</h1>" in page and 'action="/intake/form/billing"' in page
    assert '<label for="order_number">' in page and '<select id="topic" name="topic"' in page
    assert "frame-ancestors 'self' https://shop.example.com" in http.get("/form/billing").headers[
        "content-security-policy"]
    missing = http.get("/form/nope")
    assert missing.status_code == 404 and "There is no form &#x27;nope&#x27;" in missing.text
    assert http.get("/form").status_code == 200  # the default form stays beside configured ones


# --- the three encodings ----------------------------------------------------------------------
def test_urlencoded_submission_is_logged_and_confirmed(desk: Desk, http: httpx.Client) -> None:
    ids = fresh_form(http, "/form/billing")
    response = http.post("/intake/form/billing", data={
        **ids, "name": "Ana Lima", "email": "ana@example.com", "subject": "Invoice 12 twice",
        "message": "I was charged twice.\r\nPlease refund.", "order_number": "ORD-12", "topic": "Refund",
        "website": "",
    }, headers={"User-Agent": "pytest-browser/1.0"})
    assert response.status_code == 200, response.text
    assert "Message received" in response.text and ids["submission_id"] in response.text
    assert "confirmation email with your ticket number is on its way" in response.text
    assert "ana@example.com" in response.text
    [payload] = desk.ingest.payloads
    assert payload.channel == "webform" and payload.source == "webform:billing"
    stored = json.loads(payload.raw)
    assert "127.0.0.1" not in payload.raw.decode() and len(stored["client"]["ip_hash"]) == 32
    [envelope] = desk.ingest.envelopes()
    assert envelope.channel == "webform" and envelope.external_id == ids["submission_id"]
    assert envelope.sender == Party(address="ana@example.com", name="Ana Lima", kind="email")
    assert envelope.business == Party(address="billing", name="Billing question", kind="webform")
    assert envelope.subject == "Invoice 12 twice"
    assert envelope.text == envelope.full_text == "I was charged twice.\nPlease refund."
    assert envelope.thread_keys == (ThreadKey(key=f"webform:sub:{ids['submission_id']}", via="submission"),)
    assert envelope.automated is None and envelope.attachments == ()
    assert envelope.headers == {"order_number": "ORD-12", "topic": "Refund", "x-form-id": "billing",
                                "x-form-queue": "billing"}
    details = WebformDetails.of(envelope)
    assert details is not None and details.user_agent == "pytest-browser/1.0" and details.queue == "billing"
    assert desk.adapter.reply_channel(envelope) == "email"


def test_multipart_with_two_attachments_puts_blobs(desk: Desk, http: httpx.Client) -> None:
    ids = fresh_form(http)
    response = http.post("/intake/form", data={**ids, "email": "bo@example.org", "message": "See files"},
                         files=[("attachments", ("shot.png", PNG, "image/png")),
                                ("attachments", ("invoice.pdf", PDF, "application/octet-stream"))])
    assert response.status_code == 200, response.text
    [envelope] = desk.ingest.envelopes()
    png, pdf = envelope.attachments
    assert (png.filename, png.content_type, png.size) == ("shot.png", "image/png", len(PNG))
    # An undeclared type is taken from the file name.
    assert (pdf.filename, pdf.content_type) == ("invoice.pdf", "application/pdf")
    assert desk.blobs.get(png.sha256) == PNG and desk.blobs.get(pdf.sha256) == PDF
    assert envelope.subject == "See files"  # no subject: the message's first line


def test_json_submission_answers_202(desk: Desk, http: httpx.Client) -> None:
    response = http.post("/intake/form", json={
        "email": "cy@example.com", "name": "Cy", "message": "Hello from our app",
        "attachments": [{"filename": "log.txt", "content_type": "text/plain",
                         "content_base64": base64.b64encode(b"trace").decode()}],
    })
    assert response.status_code == 202, response.text
    body = response.json()
    assert re.fullmatch(r"[0-9a-f]{32}", body["submission_id"]) and body["intake_id"] == 1
    assert body["duplicate"] is False
    [envelope] = desk.ingest.envelopes()
    assert envelope.external_id == body["submission_id"]
    assert envelope.attachments[0].filename == "log.txt" and desk.blobs.get(envelope.attachments[0].sha256) == b"trace"
    assert WebformDetails.of(envelope).via == "json"  # type: ignore[union-attr]


def test_double_submit_is_one_message(desk: Desk, http: httpx.Client) -> None:
    ids = fresh_form(http)
    form = {**ids, "email": "ana@example.com", "message": "Twice clicked"}
    first = http.post("/intake/form", data=form)
    second = http.post("/intake/form", data=form)
    assert first.status_code == second.status_code == 200
    assert "already received this message" in second.text
    assert len(desk.ingest.payloads) == 1 and desk.ingest.calls == 2
    own = {"submission_id": "3b9f1c1e-6a55-4c1f-9f59-1b2a3c4d5e6f", "email": "a@example.com", "message": "x"}
    one, two = http.post("/intake/form", json=own), http.post("/intake/form", json=own)
    assert one.status_code == two.status_code == 202
    assert two.json() == {**one.json(), "duplicate": True}
    assert one.json()["submission_id"] == own["submission_id"]


# --- abuse ----------------------------------------------------------------------------------
def test_filled_honeypot_pretends_success_and_stores_nothing(desk: Desk, http: httpx.Client) -> None:
    ids = fresh_form(http)
    page = http.post("/intake/form", data={**ids, "email": "bot@spam.example", "message": "buy",
                                           "website": "http://spam.example"},
                     files=[("attachments", ("x.png", PNG, "image/png"))])
    assert page.status_code == 200 and "Message received" in page.text
    api = http.post("/intake/form", json={"email": "bot@spam.example", "message": "buy", "website": "x"})
    assert api.status_code == 202 and api.json()["intake_id"] is None
    assert desk.ingest.calls == 0 and desk.blob_count() == 0


def test_rate_limit_answers_429_with_retry_after(make_desk: Callable[..., Desk],
                                                 served: Callable[[FastAPI], str]) -> None:
    desk = make_desk(form_rate_limit_per_minute=2)
    with httpx.Client(base_url=served(desk.app)) as http:
        answers = [http.post("/intake/form", json={"email": "a@example.com", "message": f"m{i}"})
                   for i in range(3)]
        page = http.post("/intake/form", data={"email": "a@example.com", "message": "m"})
    assert [a.status_code for a in answers] == [202, 202, 429]
    error = answers[2].json()["error"]
    assert error["code"] == "rate_limited" and "Wait" in error["message"]
    assert 1 <= int(answers[2].headers["retry-after"]) <= 60
    assert page.status_code == 429 and "Too many messages" in page.text and "retry-after" in page.headers
    assert len(desk.ingest.payloads) == 2


def test_attachment_limits_413_and_415(make_desk: Callable[..., Desk], served: Callable[[FastAPI], str]) -> None:
    desk = make_desk(form_max_attachment_bytes=1000, form_max_attachments=2,
                     form_max_total_attachment_bytes=1500)
    with httpx.Client(base_url=served(desk.app)) as http:
        def post(*files: tuple[str, bytes, str]) -> httpx.Response:
            ids = fresh_form(http)
            return http.post("/intake/form", data={**ids, "email": "a@example.com", "message": "m"},
                             files=[("attachments", f) for f in files])

        big = post(("big.pdf", b"x" * 1001, "application/pdf"))
        many = post(*[(f"{i}.txt", b"x", "text/plain") for i in range(3)])
        total = post(("a.txt", b"x" * 800, "text/plain"), ("b.txt", b"x" * 800, "text/plain"))
        exe = post(("setup.exe", b"MZ", "application/x-msdownload"))
        svg = http.post("/intake/form", json={"email": "a@example.com", "message": "m", "attachments": [
            {"filename": "a.svg", "content_type": "image/svg+xml", "content_base64": "PHN2Zz4="}]})
        huge = http.post("/intake/form", content=b"x" * (desk.adapter._endpoints.limits.max_body_bytes + 1),  # type: ignore[union-attr]
                         headers={"content-type": "application/json"})
    assert big.status_code == 413 and "“big.pdf” is 1001 bytes" not in big.text
    assert "each file may be at most" in big.text and 'aria-invalid="true"' in big.text
    assert many.status_code == 413 and "Attach at most 2 files" in many.text
    assert total.status_code == 413 and "together they may be at most" in total.text
    assert exe.status_code == 415 and "type we do not accept (application/x-msdownload)" in exe.text
    assert svg.status_code == 415 and svg.json()["error"]["code"] == "unsupported_type"
    assert "attachments" in svg.json()["error"]["fields"]
    assert huge.status_code == 413 and huge.json()["error"]["code"] == "too_large"
    assert desk.ingest.calls == 0 and desk.blob_count() == 0


def test_unsupported_content_type_is_415(http: httpx.Client) -> None:
    response = http.post("/intake/form", content=b"hello", headers={"content-type": "text/plain",
                                                                    "accept": "application/json"})
    assert response.status_code == 415 and response.json()["error"]["code"] == "unsupported_media_type"


def test_csrf_token_missing_tampered_or_expired_is_403(desk: Desk, http: httpx.Client) -> None:
    base = {"email": "a@example.com", "message": "keep me"}
    missing = http.post("/intake/form", data=base)
    assert missing.status_code == 403 and "reload the page" in missing.text
    assert "keep me" in missing.text  # what was typed is kept in the form sent back
    ids = fresh_form(http)
    # A different last character (always: setting it to a fixed one would change nothing 1 time in 16).
    last = ids["form_token"][-1]
    tampered = http.post("/intake/form", data={**base, **ids,
                                               "form_token": ids["form_token"][:-1] + ("1" if last == "0" else "0")})
    assert tampered.status_code == 403
    other = fresh_form(http, "/form/billing")  # a token of another form does not fit this one
    assert http.post("/intake/form", data={**base, **other}).status_code == 403
    tokens = desk.adapter._endpoints.tokens  # type: ignore[union-attr]
    tokens.clock = lambda: time.time() - 2 * 3600 - 1  # a page served two hours ago
    old = tokens.issue("default", ids["submission_id"])
    tokens.clock = time.time
    expired = http.post("/intake/form", data={**base, **ids, "form_token": old})
    assert expired.status_code == 403 and "The form expired" in expired.text
    assert "reload the page" in expired.text and "keep me" in expired.text
    # The page sent back carries a fresh token for the same submission: sending it again works.
    again = http.post("/intake/form", data={**base, **hidden(expired.text)})
    assert again.status_code == 200 and hidden(expired.text)["submission_id"] == ids["submission_id"]
    assert len(desk.ingest.payloads) == 1


def test_cors_for_configured_origins_only(desk: Desk, http: httpx.Client) -> None:
    allowed = http.options("/intake/form/billing", headers={
        "Origin": "https://shop.example.com", "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type"})
    assert allowed.status_code == 204
    assert allowed.headers["access-control-allow-origin"] == "https://shop.example.com"
    assert "POST" in allowed.headers["access-control-allow-methods"]
    assert allowed.headers["access-control-allow-headers"].lower() == "content-type"
    denied = http.options("/intake/form/billing", headers={
        "Origin": "https://evil.example", "Access-Control-Request-Method": "POST"})
    assert denied.status_code == 403 and "access-control-allow-origin" not in denied.headers
    # The default form lists no origins.
    assert http.options("/intake/form", headers={"Origin": "https://shop.example.com"}).status_code == 403

    body = {"email": "a@example.com", "message": "m", "topic": "Invoice"}
    ok = http.post("/intake/form/billing", json=body, headers={"Origin": "https://shop.example.com"})
    assert ok.status_code == 202 and ok.headers["access-control-allow-origin"] == "https://shop.example.com"
    bad = http.post("/intake/form/billing", json=body, headers={"Origin": "https://evil.example"})
    assert bad.status_code == 403 and bad.json()["error"]["code"] == "origin_not_allowed"
    assert "access-control-allow-origin" not in bad.headers
    invalid = http.post("/intake/form/billing", json={"email": ""}, headers={"Origin": "https://shop.example.com"})
    assert invalid.status_code == 422 and invalid.headers["access-control-allow-origin"] == "https://shop.example.com"
    # Our own pages are the same origin; a program without Origin (curl, a server) is not a browser.
    own = http.post("/intake/form/billing", json=body, headers={"Origin": str(http.base_url).rstrip("/")})
    assert own.status_code == 202 and "access-control-allow-origin" not in own.headers
    assert http.post("/intake/form/billing", json=body).status_code == 202
    assert len(desk.ingest.payloads) == 3


def test_validation_reports_every_field_at_once(desk: Desk, http: httpx.Client) -> None:
    ids = fresh_form(http, "/form/billing")
    page = http.post("/intake/form/billing", data={
        **ids, "name": "Ana <b>", "email": "ana.example.com", "subject": "s" * 301, "message": "  ",
        "order_number": "x" * 21, "topic": "Other"})
    assert page.status_code == 422
    text = page.text
    assert 'role="alert"' in text and "There are 5 problems" in text
    for name in ("email", "subject", "message", "order_number", "topic"):
        assert re.search(rf'id="{name}" name="{name}" aria-invalid="true" aria-describedby="[^"]*{name}-error', text), name
        assert f'<a href="#{name}">' in text
        assert f'id="{name}-error"' in text
    assert 'value="Ana &lt;b&gt;"' in text and 'value="ana.example.com"' in text  # kept, escaped
    assert "Enter an email address like name@example.com." in text
    assert "shorten it to 300 or fewer" in text
    assert hidden(text)["submission_id"] == ids["submission_id"]
    api = http.post("/intake/form/billing", json={"email": "", "message": "m" * 50_001, "colour": "red"})
    error = api.json()["error"]
    assert api.status_code == 422 and error["code"] == "invalid"
    assert set(error["fields"]) == {"email", "message", "topic", "colour"}
    assert desk.ingest.calls == 0


def test_intake_unavailable_is_503_and_a_retry_succeeds(desk: Desk, http: httpx.Client) -> None:
    desk.ingest.unavailable = True
    ids = fresh_form(http)
    form = {**ids, "email": "a@example.com", "message": "please keep"}
    files = [("attachments", ("a.png", PNG, "image/png"))]
    page = http.post("/intake/form", data=form, files=files)
    assert page.status_code == 503 and "try again" in page.text and page.headers["retry-after"] == "30"
    assert "please keep" in page.text
    api = http.post("/intake/form", json={"email": "a@example.com", "message": "m"})
    assert api.status_code == 503 and api.json()["error"]["code"] == "unavailable"
    assert desk.ingest.payloads == []
    desk.ingest.unavailable = False
    retry = http.post("/intake/form", data={**form, **hidden(page.text)}, files=files)
    assert retry.status_code == 200 and len(desk.ingest.payloads) == 1
    assert desk.blob_count() == 1  # the blob put before the failure is the same blob: stored once


# --- parse ------------------------------------------------------------------------------------
def test_parse_of_stored_payload_round_trips(desk: Desk, http: httpx.Client) -> None:
    ids = fresh_form(http, "/form/billing")
    http.post("/intake/form/billing", data={**ids, "email": "ana@example.com", "message": "Ünïcode ✓ $x",
                                            "topic": "Invoice"},
              files=[("attachments", ("a.png", PNG, "image/png"))])
    [payload] = desk.ingest.payloads
    envelope = desk.ingest.envelopes()[0]
    # Replay: only the stored bytes and the receive time, no request, no form, no settings.
    replayed = WebFormAdapter(None).parse(  # type: ignore[arg-type]
        Payload(channel="webform", raw=payload.raw, received_at=payload.received_at))
    assert replayed == envelope
    assert load_envelope(envelope.model_dump_json()) == envelope
    assert envelope.text == "Ünïcode ✓ $x"
    assert desk.adapter.describe(payload).reference == ids["submission_id"]
    assert desk.adapter.describe(payload).sender == "ana@example.com"


@pytest.mark.parametrize("raw, reason", [
    (b"\xff\xfe not json", "not a stored web form submission"),
    (b"[1, 2]", "not a stored web form submission"),
    (json.dumps({"format": "omnidesk.webform/1", "submission_id": "s", "form_id": "f",
                 "message": "m", "submitted_at": "2024-01-01T00:00:00Z"}).encode(), "email"),
    (json.dumps({"format": "omnidesk.webform/1", "submission_id": "s", "form_id": "f", "email": "nope",
                 "message": "m", "submitted_at": "2024-01-01T00:00:00Z"}).encode(), "not an email address"),
    (json.dumps({"format": "other/9", "submission_id": "s"}).encode(), "format"),
])
def test_unparseable_stored_payload_raises(raw: bytes, reason: str) -> None:
    adapter = WebFormAdapter(None)  # type: ignore[arg-type]
    payload = Payload(channel="webform", raw=raw, received_at=datetime(2024, 1, 1, tzinfo=UTC))
    with pytest.raises(UnparseableMessage) as caught:
        adapter.parse(payload)
    assert reason in caught.value.reason
    adapter.describe(payload)  # best effort: never raises


def test_describe_reads_what_it_can() -> None:
    adapter = WebFormAdapter(None)  # type: ignore[arg-type]
    raw = json.dumps({"email": "ana@example.com", "subject": "Help", "submission_id": "abc"}).encode()
    summary = adapter.describe(Payload(channel="webform", raw=raw, received_at=datetime.now(UTC)))
    assert (summary.sender, summary.subject, summary.reference) == ("ana@example.com", "Help", "abc")
    assert adapter.describe(Payload(channel="webform", raw=b"\x00", received_at=datetime.now(UTC))).sender == ""
    assert adapter.identities().identities == frozenset()


# --- the channels file --------------------------------------------------------------------------
def test_forms_section_validates() -> None:
    config = parse_channels(FORMS_YAML, "channels.yaml", environ={})
    [form] = config.forms
    assert isinstance(form, FormSpec) and form.allowed_origins == ["https://shop.example.com"]
    assert parse_channels("forms:\n", "channels.yaml", environ={}).forms == []


def test_forms_section_errors_have_line_and_column() -> None:
    text = """\
forms:
  - id: billing
    title: Billing
    colour: red
    allowed_origins: ["https://shop.example.com/path"]
    fields:
      - name: email
        label: Your email
      - name: topic
        label: Topic
        type: select
  - id: billing
    title: Again
  - title: No id
"""
    with pytest.raises(ChannelsError) as caught:
        parse_channels(text, "channels.yaml", environ={})
    errors = caught.value.errors
    expected = [
        r"channels\.yaml:4:5: forms\[0\]\.colour: unknown key 'colour'.*known keys: id, title",
        r"channels\.yaml:5:23: forms\[0\]\.allowed_origins\[0\]: .*not an origin",
        r"channels\.yaml:7:15: forms\[0\]\.fields\[0\]\.name: 'email' is a built-in field",
        r"channels\.yaml:9:9: forms\[0\]\.fields\[1\]: a select field needs options",
        r"channels\.yaml:12:9: forms\[1\]\.id: duplicate form id 'billing' \(first used on line 2\)",
        r"channels\.yaml:14:\d+: forms\[2\]\.id: missing",
    ]
    for pattern in expected:
        assert any(re.search(pattern, e) for e in errors), (pattern, errors)
    assert len(errors) == len(expected), errors
