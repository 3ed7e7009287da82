"""The Twilio sender against a local server speaking the Messages API's wire format: what is
sent, how Twilio's refusals are classified, that a redelivered row is not sent twice, and the
WhatsApp 24-hour window (detected before sending, and from error 63016)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from intake.envelope import Envelope, Party
from intake.outbound import OutboundIntent
from intake.twilio.compose import compose_message
from intake.twilio.settings import NumberSpec, WhatsAppTemplate
from tests.peers import free_port
from tests.peers.twilio_api import FakeTwilio
from workers.errors import PermanentDeliveryError, TemporaryDeliveryError
from workers.outbox import OutboxMessage
from workers.senders.twilio import TwilioSender

ACCOUNT = "AC" + "ab" * 16
TOKEN = "sender-test-token"
OURS = "+14155550100"
CUSTOMER = "+4915112345678"


@pytest.fixture
def twilio_api() -> Iterator[FakeTwilio]:
    peer = FakeTwilio(account_sid=ACCOUNT, auth_token=TOKEN).start()
    yield peer
    peer.stop()


@pytest.fixture
def sender(twilio_api: FakeTwilio) -> TwilioSender:
    return TwilioSender(ACCOUNT, TOKEN, api_base=twilio_api.url, timeout=5)


def _answering(channel: str, age: timedelta) -> Envelope:
    return Envelope(channel=channel, external_id="SM" + "0" * 32, received_at=datetime.now(UTC) - age,
                    sender=Party(address=CUSTOMER, kind="phone"), business=Party(address=OURS, kind="phone"))


def _row(channel: str = "sms", *, age: timedelta = timedelta(minutes=5), attempts: int = 1,
         numbers: dict[str, NumberSpec] | None = None, text: str = "Your parcel left today.") -> OutboxMessage:
    intent = OutboundIntent(kind="reply", ticket_ref="OD-7", to=Party(address=CUSTOMER, kind="phone", name="Ana"),
                            subject="", text=text, answering=_answering(channel, age), automatic=False)
    draft = compose_message(intent, numbers=numbers or {}, base_url="https://desk.example.com",
                            last_whatsapp=datetime.now(UTC) - age if channel == "whatsapp" else None)
    assert draft is not None
    return OutboxMessage(id=1, channel=draft.channel, kind="reply", recipient=draft.recipient,
                         idempotency_key=draft.idempotency_key, payload=draft.payload, attempts=attempts)


def test_an_sms_goes_out_with_the_status_callback_and_returns_twilio_s_sid(
    sender: TwilioSender, twilio_api: FakeTwilio
) -> None:
    row = _row()
    sid = sender.send(row)
    (request,) = twilio_api.created()
    assert sid == twilio_api.messages[0]["sid"] and sid.startswith("SM")
    assert request.auth == (ACCOUNT, TOKEN)
    assert request.form["To"] == CUSTOMER and request.form["From"] == OURS
    assert request.form["Body"] == "Your parcel left today."
    assert request.form["StatusCallback"] == (
        f"https://desk.example.com/intake/twilio/status?outbox={row.idempotency_key}")


@pytest.mark.parametrize(("status", "code"), [(429, 20429), (500, None), (503, None)])
def test_throttling_and_server_errors_are_retried(sender: TwilioSender, twilio_api: FakeTwilio,
                                                 status: int, code: int | None) -> None:
    twilio_api.fail_next(status, code)
    with pytest.raises(TemporaryDeliveryError, match="unavailable for now"):
        sender.send(_row())
    assert sender.send(_row(attempts=2))  # the retry goes through


@pytest.mark.parametrize(("status", "code", "says"), [
    (400, 21211, "not a valid phone number"),
    (400, 21610, "opted out"),
    (401, 20003, "check OMNIDESK_TWILIO_ACCOUNT_SID"),
])
def test_refusals_are_permanent_and_say_why(sender: TwilioSender, twilio_api: FakeTwilio, status: int,
                                            code: int, says: str) -> None:
    twilio_api.fail_next(status, code)
    with pytest.raises(PermanentDeliveryError, match=says):
        sender.send(_row())


def test_an_unreachable_api_is_a_temporary_failure() -> None:
    sender = TwilioSender(ACCOUNT, TOKEN, api_base=f"http://127.0.0.1:{free_port()}", timeout=2)
    with pytest.raises(TemporaryDeliveryError, match="cannot reach Twilio"):
        sender.send(_row())


def test_a_redelivered_row_that_twilio_already_took_is_not_sent_twice(
    sender: TwilioSender, twilio_api: FakeTwilio
) -> None:
    row = _row()
    twilio_api.accept_then_fail(500)  # Twilio stored it; our answer was lost
    with pytest.raises(TemporaryDeliveryError):
        sender.send(row)
    again = OutboxMessage(**{**row.__dict__, "attempts": 2})
    sid = sender.send(again)
    assert len(twilio_api.messages) == 1 and sid == twilio_api.messages[0]["sid"]
    assert len(twilio_api.created()) == 1
    # A different message to the same person on a retry is still sent.
    other = _row(text="And here is the tracking number.", attempts=2)
    assert sender.send(other) != sid and len(twilio_api.messages) == 2


def test_whatsapp_inside_the_window_is_free_form(sender: TwilioSender, twilio_api: FakeTwilio) -> None:
    row = _row("whatsapp", age=timedelta(hours=23))
    assert "window_closed" not in row.payload
    sender.send(row)
    (request,) = twilio_api.created()
    assert request.form["To"] == f"whatsapp:{CUSTOMER}" and request.form["From"] == f"whatsapp:{OURS}"


def test_whatsapp_outside_the_window_fails_before_sending_with_what_to_do(
    sender: TwilioSender, twilio_api: FakeTwilio
) -> None:
    row = _row("whatsapp", age=timedelta(hours=25))
    with pytest.raises(PermanentDeliveryError, match="whatsapp_template"):
        sender.send(row)
    assert twilio_api.requests == []


def test_whatsapp_outside_the_window_sends_the_configured_template(
    sender: TwilioSender, twilio_api: FakeTwilio
) -> None:
    template = WhatsAppTemplate(content_sid="HX" + "1" * 32, variables={"1": "{ticket_ref}", "2": "{customer_name}"})
    numbers = {OURS: NumberSpec(number=OURS, whatsapp_template=template)}
    sender.send(_row("whatsapp", age=timedelta(days=3), numbers=numbers))
    (request,) = twilio_api.created()
    assert request.form["ContentSid"] == template.content_sid
    assert request.form["ContentVariables"] == '{"1": "OD-7", "2": "Ana"}'
    assert "Body" not in request.form


def test_error_63016_from_twilio_is_permanent_and_explains_the_window(
    sender: TwilioSender, twilio_api: FakeTwilio
) -> None:
    # Our clock said the window was open; WhatsApp disagreed.
    twilio_api.fail_next(400, 63016)
    with pytest.raises(PermanentDeliveryError, match="24 hours old"):
        sender.send(_row("whatsapp", age=timedelta(hours=23, minutes=59)))


def test_compose_refuses_what_twilio_cannot_reach() -> None:
    def intent(to: Party, business: Any = None) -> OutboundIntent:
        return OutboundIntent(kind="reply", ticket_ref="OD-1", to=to, subject="", text="hi", business=business)

    assert compose_message(intent(Party(address="ana@example.com")), numbers={}, base_url="http://x") is None
    assert compose_message(intent(Party(address="12", kind="phone")), numbers={}, base_url="http://x") is None
    # No number of ours to send from: nothing configured, nothing answered.
    assert compose_message(intent(Party(address=CUSTOMER, kind="phone")), numbers={}, base_url="http://x") is None
    draft = compose_message(intent(Party(address=CUSTOMER, kind="phone")), numbers={OURS: NumberSpec(number=OURS)},
                            base_url="http://x")
    assert draft is not None and draft.payload["from"] == OURS and draft.channel == "sms"
    long = OutboundIntent(kind="reply", ticket_ref="OD-1", to=Party(address=CUSTOMER, kind="phone"), subject="",
                          text="x" * 5000, business=Party(address=OURS, kind="phone"))
    cut = compose_message(long, numbers={}, base_url="http://x")
    assert cut is not None and len(cut.payload["body"]) <= 1600
