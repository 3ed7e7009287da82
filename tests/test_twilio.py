"""The Twilio channels (SMS, WhatsApp) end to end, against a local server speaking Twilio's REST
wire format with the real ``twilio`` client pointed at it, and webhooks signed as Twilio signs them.

Signature vectors come from ``../shared/corpus/twilio-python/`` and real inbound SMS bodies from
``../shared/corpus/zammad-webhooks/twilio/`` (read at test time, not copied here).
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from config.settings import Settings
from tests.agent_desk import AgentDesk, running_desk
from tests.peers import missing
from tests.peers.twilio_api import FakeTwilio, post_webhook

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus"
if not CORPUS.exists():
    CORPUS = Path("/work/shared/corpus")
ACCOUNT = "AC78349f4b974f5f6907c513a77d96756d"  # the account of the corpus's inbound SMS bodies
TOKEN = "test-auth-token-0123456789"
OUR_NUMBER = "+4915700000000"


def corpus_sms(n: int = 1) -> dict[str, str]:
    path = CORPUS / "zammad-webhooks" / "twilio" / f"inbound_sms{n}.json"
    if not path.exists():
        missing(f"the Twilio webhook corpus is not at {path}", what="test data")
    return {k: str(v) for k, v in json.loads(path.read_text()).items()}


def sms(body: str, *, sender: str = "+491710000000", to: str = OUR_NUMBER, sid: str | None = None,
        whatsapp: bool = False) -> dict[str, str]:
    """An inbound message in the shape of the corpus's bodies (WhatsApp adds ProfileName, WaId)."""
    params = corpus_sms(1)
    prefix = "whatsapp:" if whatsapp else ""
    sid = sid or "SM" + uuid.uuid4().hex
    params.update({"Body": body, "From": prefix + sender, "To": prefix + to, "MessageSid": sid,
                   "SmsMessageSid": sid, "SmsSid": sid})
    if whatsapp:
        params.update({"ProfileName": "Ana", "WaId": sender.lstrip("+")})
    return params


@pytest.fixture
def twilio_api() -> Iterator[FakeTwilio]:
    peer = FakeTwilio(account_sid=ACCOUNT, auth_token=TOKEN).start()
    yield peer
    peer.stop()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def desk(request: pytest.FixtureRequest, make_settings: Callable[..., Settings],
         twilio_api: FakeTwilio) -> Iterator[AgentDesk]:
    overrides: dict[str, Any] = {"twilio_account_sid": ACCOUNT, "twilio_auth_token": TOKEN,
                                 "twilio_api_base": twilio_api.url}
    if request.param == "postgresql":
        overrides["database_url"] = request.getfixturevalue("postgres_url")
    with running_desk(make_settings(**overrides), components=("worker", "sweeper", "web")) as running:
        yield running


def post(desk: AgentDesk, params: dict[str, str], path: str = "/intake/twilio/messages", **kw: Any) -> Any:
    return post_webhook(desk.base_url, path, params, TOKEN, **kw)


def intake_rows(desk: AgentDesk) -> int:
    from sqlalchemy import func, select

    from tickets.models import IntakeRow

    with desk.app.db.read() as session:
        return int(session.execute(select(func.count()).select_from(IntakeRow)).scalar_one())


def outbox(desk: AgentDesk) -> list[Any]:
    from sqlalchemy import select

    from tickets.models import OutboxRow

    table = OutboxRow.__table__
    with desk.app.db.read() as session:
        return list(session.execute(select(table).order_by(table.c.id)).all())


def wait_sent(desk: AgentDesk, twilio_api: FakeTwilio, count: int) -> list[Any]:
    desk.wait_until(lambda: len(twilio_api.messages) >= count, 30, f"{count} messages at Twilio")
    left = ("sent", "delivered", "read")
    desk.wait_until(lambda: sum(r.state in left for r in outbox(desk)) >= count, 30, "the outbox rows sent")
    return twilio_api.created()


# --- signatures ----------------------------------------------------------------------------------
def test_the_signature_vectors_of_twilio_python_hold() -> None:
    """Our validation (repeated keys kept, the validator's port handling) on upstream's vectors."""
    from twilio.request_validator import RequestValidator

    from intake.twilio.endpoints import _Params

    path = CORPUS / "twilio-python" / "request_validator_vectors.json"
    if not path.exists():
        missing(f"the signature vectors are not at {path}", what="test data")
    vectors = json.loads(path.read_text())
    validator = RequestValidator(vectors["auth_token"])
    checked = 0
    for case in vectors["cases"]:
        if case.get("params") != "voice_form_params":
            continue
        signature = case.get("signature") or case["expected_signature"]
        pairs = list(vectors["voice_form_params"].items())
        assert validator.validate(case["url"], _Params(pairs), signature) is case["valid"], case["name"]
        checked += 1
    assert checked >= 3


def test_forged_missing_or_wrongly_addressed_signatures_are_refused_and_nothing_is_stored(
    desk: AgentDesk, twilio_api: FakeTwilio
) -> None:
    params = corpus_sms(2)
    assert post(desk, params, signature="").status_code == 403
    forged = post(desk, params, signature="AAAAAAAAAAAAAAAAAAAAAAAAAAA=")
    assert forged.status_code == 403 and "X-Twilio-Signature is wrong" in forged.text
    elsewhere = post(desk, params, signed_url="https://desk.example.com/intake/twilio/messages")
    assert elsewhere.status_code == 403 and "OMNIDESK_PUBLIC_URL" in elsewhere.text
    tampered = dict(params, Body="send the refund to me instead")
    from twilio.request_validator import RequestValidator

    good = RequestValidator(TOKEN).compute_signature(desk.base_url + "/intake/twilio/messages", params)
    assert post(desk, tampered, signature=good).status_code == 403
    assert intake_rows(desk) == 0 and desk.tickets() == []


def test_behind_a_proxy_the_public_url_is_what_is_signed(make_settings: Callable[..., Settings],
                                                         twilio_api: FakeTwilio) -> None:
    settings = make_settings(twilio_account_sid=ACCOUNT, twilio_auth_token=TOKEN, twilio_api_base=twilio_api.url,
                             public_url="https://desk.example.com")
    with running_desk(settings, components=("web",)) as desk:
        public = "https://desk.example.com/intake/twilio/messages"
        assert post(desk, corpus_sms(1), signed_url=public).status_code == 200
        assert post(desk, corpus_sms(2)).status_code == 403  # signed for the internal address
        assert intake_rows(desk) == 1


# --- inbound -------------------------------------------------------------------------------------
def test_a_signed_sms_makes_a_ticket_and_the_acknowledgement_leaves_by_sms(
    desk: AgentDesk, twilio_api: FakeTwilio
) -> None:
    params = corpus_sms(1)
    answer = post(desk, params)
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("application/xml")
    assert "<Response" in answer.text and "<Message" not in answer.text  # empty TwiML
    (sent,) = wait_sent(desk, twilio_api, 1)
    (ticket,) = desk.tickets()
    assert ticket["channel"] == "sms" and ticket["contact"] == "+491710000000"
    assert sent.auth == (ACCOUNT, TOKEN)
    assert sent.path == f"/2010-04-01/Accounts/{ACCOUNT}/Messages.json"
    assert sent.form["To"] == "+491710000000" and sent.form["From"] == OUR_NUMBER
    assert ticket["ref"] in sent.form["Body"] and "\n" not in sent.form["Body"]  # the en.sms variant
    callback = urlsplit(sent.form["StatusCallback"])
    assert callback.path == "/intake/twilio/status" and parse_qs(callback.query)["outbox"]
    shown = desk.ticket(ticket["ref"])
    assert [m["direction"] for m in shown["messages"]] == ["inbound", "outbound"]
    assert shown["messages"][0]["text"] == params["Body"]
    assert shown["messages"][0]["message_id"] == params["MessageSid"]
    (row,) = outbox(desk)
    assert row.provider_id == twilio_api.messages[0]["sid"]


def test_a_replayed_webhook_is_one_ticket_message_and_one_acknowledgement(
    desk: AgentDesk, twilio_api: FakeTwilio
) -> None:
    params = corpus_sms(3)
    for _ in range(3):  # Twilio retried: our first answers were lost
        assert post(desk, params).status_code == 200
    wait_sent(desk, twilio_api, 1)
    desk.wait_routed()
    (ticket,) = desk.tickets()
    assert [m["direction"] for m in desk.ticket(ticket["ref"])["messages"]] == ["inbound", "outbound"]
    assert intake_rows(desk) == 1 and len(twilio_api.messages) == 1


def test_a_burst_from_one_number_makes_exactly_one_ticket(desk: AgentDesk, twilio_api: FakeTwilio) -> None:
    # WhatsApp users type in fragments: five messages at once, routed by parallel worker threads.
    fragments = ["hi", "my order", "never arrived", "order 1234", "can you help?"]
    start = threading.Barrier(len(fragments))
    codes: list[int] = []

    def send(text: str) -> None:
        start.wait()
        codes.append(post(desk, sms(text, whatsapp=True)).status_code)

    threads = [threading.Thread(target=send, args=(t,)) for t in fragments]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert codes == [200] * 5
    desk.wait_for_messages(6)
    desk.wait_routed()
    (ticket,) = desk.tickets()
    messages = desk.ticket(ticket["ref"])["messages"]
    assert sorted(m["text"] for m in messages if m["direction"] == "inbound") == sorted(fragments)
    wait_sent(desk, twilio_api, 1)
    assert len(twilio_api.messages) == 1  # one acknowledgement for the burst
    assert twilio_api.messages[0]["to"] == "whatsapp:+491710000000"


def test_sms_and_whatsapp_from_one_number_are_one_contact_and_one_conversation(
    desk: AgentDesk, twilio_api: FakeTwilio
) -> None:
    assert post(desk, sms("my parcel is late")).status_code == 200
    desk.wait_for_messages(2)
    assert post(desk, sms("here is the tracking number", whatsapp=True)).status_code == 200
    assert post(desk, sms("another matter", sender="+491710000099")).status_code == 200
    desk.wait_for_messages(5)
    desk.wait_routed()
    tickets = {t["contact"]: t for t in desk.tickets()}
    assert set(tickets) == {"+491710000000", "+491710000099"}
    shown = desk.ticket(tickets["+491710000000"]["ref"])
    inbound = [m for m in shown["messages"] if m["direction"] == "inbound"]
    assert [m["channel"] for m in inbound] == ["sms", "whatsapp"]
    assert inbound[1]["decision"]["thread"]["via"] == "conversation"


def test_unparseable_twilio_payloads_are_quarantined(desk: AgentDesk) -> None:
    from tickets.queries import list_quarantine

    params = sms("x")
    params["From"] = "not a number"
    assert post(desk, params).status_code == 200  # stored: Twilio must not retry it forever
    with desk.app.db.read() as session:
        (row,) = list_quarantine(session)
    assert "From" in row["reason"] and row["raw_sha256"]
    assert desk.tickets() == []


# --- outbound, status callbacks -------------------------------------------------------------------
def _status(desk: AgentDesk, row: Any, status: str, **extra: str) -> Any:
    params = {"MessageSid": row.provider_id, "SmsSid": row.provider_id, "MessageStatus": status,
              "SmsStatus": status, "AccountSid": ACCOUNT, "To": row.payload["to"], "From": row.payload["from"],
              "ApiVersion": "2010-04-01", **extra}
    return post(desk, params, path="/intake/twilio/status?" + urlsplit(row.payload["status_callback"]).query)


def test_status_callbacks_move_the_outbox_row_and_show_on_the_ticket(
    desk: AgentDesk, twilio_api: FakeTwilio
) -> None:
    assert post(desk, sms("hello")).status_code == 200
    wait_sent(desk, twilio_api, 1)
    (row,) = outbox(desk)
    assert _status(desk, row, "queued").status_code == 200  # nothing to record
    assert _status(desk, row, "delivered").status_code == 200
    desk.wait_until(lambda: outbox(desk)[0].state == "delivered", 30, "the row delivered")
    assert _status(desk, row, "delivered").status_code == 200  # a retried callback
    assert _status(desk, row, "sent").status_code == 200  # late and out of order: no step back
    assert _status(desk, row, "read").status_code == 200
    desk.wait_until(lambda: outbox(desk)[0].state == "read", 30, "the row read")
    desk.wait_routed()
    (ticket,) = desk.tickets()
    texts = [m["text"] for m in desk.ticket(ticket["ref"])["messages"]]
    assert any("as delivered" in t for t in texts) and any("as read" in t for t in texts)
    assert sum("as delivered" in t for t in texts) == 1
    assert outbox(desk)[0].state == "read"
    assert len(desk.tickets()) == 1


def test_a_failed_delivery_shows_twilio_s_error_on_the_ticket(desk: AgentDesk, twilio_api: FakeTwilio) -> None:
    assert post(desk, sms("hello")).status_code == 200
    wait_sent(desk, twilio_api, 1)
    (row,) = outbox(desk)
    assert _status(desk, row, "undelivered", ErrorCode="30003", ErrorMessage="Unreachable").status_code == 200
    desk.wait_until(lambda: outbox(desk)[0].state == "failed", 30, "the row failed")
    assert "30003" in (outbox(desk)[0].last_error or "")
    (ticket,) = desk.tickets()
    events = [m["text"] for m in desk.ticket(ticket["ref"])["messages"] if m["direction"] == "event"]
    assert any("handset is unreachable" in t for t in events)


def test_a_status_callback_for_a_message_that_is_not_ours_stores_nothing(desk: AgentDesk) -> None:
    params = {"MessageSid": "SM" + "1" * 32, "MessageStatus": "delivered", "AccountSid": ACCOUNT,
              "To": "+491710000000", "From": OUR_NUMBER}
    assert post(desk, params, path="/intake/twilio/status?outbox=twilio-unknown").status_code == 200
    assert post(desk, params, path="/intake/twilio/status").status_code == 200
    assert intake_rows(desk) == 0 and desk.tickets() == []


def test_an_agent_reply_on_an_sms_ticket_leaves_through_the_messages_api(
    desk: AgentDesk, twilio_api: FakeTwilio
) -> None:
    assert post(desk, sms("is my order shipped?")).status_code == 200
    wait_sent(desk, twilio_api, 1)
    (ticket,) = desk.tickets()
    token = desk.agent("Ana Agent", "ana.agent@example.com")
    with desk.client(token) as client:
        answer = client.post(f"/api/tickets/{ticket['ref']}/replies", json={"text": "Yes, it left today."})
    assert answer.status_code in (200, 201), answer.text
    sent = wait_sent(desk, twilio_api, 2)
    assert sent[1].form["Body"] == "Yes, it left today."
    assert sent[1].form["To"] == "+491710000000" and sent[1].form["From"] == OUR_NUMBER
    shown = desk.ticket(ticket["ref"])
    outbound = [m for m in shown["messages"] if m["direction"] == "outbound"]
    assert outbound[-1]["text"] == "Yes, it left today." and outbound[-1]["channel"] == "sms"


def test_the_auth_token_never_reaches_logs_and_bad_settings_say_what_to_write(
    make_settings: Callable[..., Settings],
) -> None:
    from config.settings import SettingsError, load_settings

    settings = make_settings(twilio_auth_token="s3cret-token")
    assert settings.redacted()["twilio_auth_token"] == "***"
    assert "s3cret-token" not in repr(settings)
    with pytest.raises(SettingsError, match="OMNIDESK_TWILIO_ACCOUNT_SID: must be an account SID"):
        load_settings(_env_file=None, twilio_account_sid="12345")
    with pytest.raises(SettingsError, match="OMNIDESK_TWILIO_API_BASE: must be a base URL"):
        load_settings(_env_file=None, twilio_api_base="api.twilio.com")


# --- media ---------------------------------------------------------------------------------------
@pytest.fixture
def media_desk(make_settings: Callable[..., Settings], twilio_api: FakeTwilio) -> Iterator[AgentDesk]:
    settings = make_settings(twilio_account_sid=ACCOUNT, twilio_auth_token=TOKEN, twilio_api_base=twilio_api.url,
                             twilio_media_max_bytes=4096)
    with running_desk(settings, components=("worker", "sweeper", "web", "twilio-media")) as running:
        yield running


def test_media_are_downloaded_by_the_runner_into_the_blob_store_and_join_the_ticket(
    media_desk: AgentDesk, twilio_api: FakeTwilio
) -> None:
    desk = media_desk
    photo = b"\x89PNG\r\n\x1a\n" + b"p" * 1000
    params = sms("here is the broken box", whatsapp=True)
    params.update({"NumMedia": "3", "MediaUrl0": twilio_api.add_media("image/png", photo),
                   "MediaContentType0": "image/png",
                   "MediaUrl1": twilio_api.add_media("video/mp4", b"v" * 5000), "MediaContentType1": "video/mp4",
                   "MediaUrl2": "https://api.twilio.com/2010-04-01/Accounts/x/Messages/MMgone/Media/MEgone",
                   "MediaContentType2": "image/jpeg"})
    answer = post(desk, params)
    assert answer.status_code == 200  # answered before any download
    desk.wait_until(lambda: any(m["attachments"] for t in desk.tickets() for m in desk.ticket(t["ref"])["messages"]),
                    30, "the media on the ticket")
    desk.wait_routed()
    (ticket,) = desk.tickets()
    messages = desk.ticket(ticket["ref"])["messages"]
    inbound = [m for m in messages if m["direction"] == "inbound"]
    assert [m["message_id"] for m in inbound] == [params["MessageSid"], params["MessageSid"] + "/media"]
    (attachment,) = inbound[1]["attachments"]
    assert attachment["content_type"] == "image/png" and attachment["size"] == len(photo)
    assert desk.app.blobs.get(attachment["sha256"]) == photo
    assert "over the 4096-byte limit" in inbound[1]["text"] and "HTTP 404" in inbound[1]["text"]
    media_gets = [r for r in twilio_api.requests if "/Media/" in r.path]
    assert all(r.auth == (ACCOUNT, TOKEN) for r in media_gets)
    # Nothing is fetched twice: the companion exists, the message is done.
    from intake.twilio.media import MediaFetcher

    fetcher = MediaFetcher(desk.app.db, desk.app.blobs, desk.app.ingest, ACCOUNT, TOKEN, api_base=twilio_api.url)
    assert fetcher.due() == []
    assert fetcher.run_once() == 0


def _close(desk: AgentDesk, ref: str, days_ago: float) -> None:
    from sqlalchemy import update

    from tickets.models import Ticket

    with desk.app.db.write() as session:
        session.execute(update(Ticket).where(Ticket.ref == ref).values(
            status="closed", closed_at=datetime.now(UTC) - timedelta(days=days_ago)))


def test_a_closed_conversation_reopens_within_the_window_and_opens_a_linked_ticket_after(
    desk: AgentDesk, twilio_api: FakeTwilio
) -> None:
    assert post(desk, sms("first question")).status_code == 200
    desk.wait_for_messages(2)
    (first,) = desk.tickets()
    _close(desk, first["ref"], days_ago=2)
    assert post(desk, sms("one more thing")).status_code == 200
    desk.wait_until(lambda: desk.ticket(first["ref"])["status"] == "open", 30, "the ticket reopened")
    assert len(desk.tickets()) == 1
    _close(desk, first["ref"], days_ago=8)  # longer ago than conversation_reopen_days (7)
    assert post(desk, sms("a new problem")).status_code == 200
    desk.wait_until(lambda: len(desk.tickets()) == 2, 30, "a new ticket")
    desk.wait_routed()
    (second,) = [t for t in desk.tickets() if t["ref"] != first["ref"]]
    assert second["contact"] == first["contact"]
    assert any("Opened from " + first["ref"] in m["text"] for m in desk.ticket(second["ref"])["messages"])
    # The conversation moved on: the next text continues the new ticket.
    assert post(desk, sms("and a photo of it")).status_code == 200
    desk.wait_routed()
    inbound = [m for m in desk.ticket(second["ref"])["messages"] if m["direction"] == "inbound"]
    assert [m["text"] for m in inbound] == ["a new problem", "and a photo of it"]


def test_the_twilio_section_of_the_channels_file_is_strict_with_positions() -> None:
    from intake.channels import ChannelsError, parse_channels

    good = parse_channels('twilio:\n  numbers:\n    - number: "+14155550100"\n      queue: billing\n',
                          "channels.yaml", check_env=False)
    assert good.twilio.numbers[0].number == "+14155550100"
    bad = ('twilio:\n  numbers:\n    - number: "+14155550100"\n    - number: "+1 415 555 0100"\n'
           '    - number: "4155550100"\n    - number: "+14155550101"\n      chanels: [sms]\n')
    with pytest.raises(ChannelsError) as caught:
        parse_channels(bad, "channels.yaml", check_env=False)
    text = "\n".join(caught.value.errors)
    assert "channels.yaml:4:" in text and "duplicate number +14155550100 (first listed on line 3)" in text
    assert "channels.yaml:5:" in text and "international form" in text
    assert "channels.yaml:7:" in text and "unknown key 'chanels'" in text and "did you mean" in text.lower()


def test_a_whatsapp_reply_counts_the_window_from_the_customer_s_message_not_a_status_callback(
    desk: AgentDesk, twilio_api: FakeTwilio
) -> None:
    from sqlalchemy import update

    from tickets.models import IntakeRow, TicketMessage

    assert post(desk, sms("where is my parcel?", whatsapp=True)).status_code == 200
    wait_sent(desk, twilio_api, 1)
    (row,) = outbox(desk)
    assert _status(desk, row, "read").status_code == 200  # a delivery report: no customer message
    desk.wait_until(lambda: outbox(desk)[0].state == "read", 30, "the row read")
    desk.wait_routed()
    (ticket,) = desk.tickets()
    token = desk.agent("Ana Agent", "ana.agent@example.com")
    with desk.client(token) as client:
        assert client.post(f"/api/tickets/{ticket['ref']}/replies", json={"text": "On its way!"}).is_success
    sent = wait_sent(desk, twilio_api, 2)
    assert sent[1].form["Body"] == "On its way!" and sent[1].form["To"] == "whatsapp:+491710000000"
    # The customer's message 25 hours old: WhatsApp would refuse free text, so nothing is sent
    # (no template configured) and the ticket says why.
    old = datetime.now(UTC) - timedelta(hours=25)
    with desk.app.db.write() as session:
        session.execute(update(TicketMessage).where(TicketMessage.message_id.not_like("%:%"),
                                                    TicketMessage.direction == "inbound")
                        .values(created_at=old))
        # The reply answers the customer's message as the intake log holds it: age that too.
        for row in session.query(IntakeRow).filter(IntakeRow.envelope.is_not(None)).all():
            if not (row.envelope or {}).get("delivery_report"):
                row.envelope = {**row.envelope, "received_at": old.isoformat()}
    with desk.client(token) as client:
        assert client.post(f"/api/tickets/{ticket['ref']}/replies", json={"text": "Hello again"}).is_success
    desk.wait_until(lambda: outbox(desk)[-1].state == "failed", 30, "the reply refused")
    assert "whatsapp_template" in (outbox(desk)[-1].last_error or "")
    assert len(twilio_api.messages) == 2
    events = [m["text"] for m in desk.ticket(ticket["ref"])["messages"] if m["direction"] == "event"]
    assert any("WhatsApp window closed" in t for t in events)
