"""Voice through Twilio: the greeting TwiML, a voicemail joined from its recording and
transcription callbacks in either order into one ticket message, and missed calls."""

from __future__ import annotations

import uuid
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest

from config.settings import Settings
from tests.agent_desk import AgentDesk, running_desk
from tests.peers.twilio_api import FakeTwilio, post_webhook

ACCOUNT = "AC" + "fe" * 16
TOKEN = "voice-test-token"
OURS = "+14155550100"
CALLER = "+4915112345678"


@pytest.fixture
def twilio_api() -> Iterator[FakeTwilio]:
    peer = FakeTwilio(account_sid=ACCOUNT, auth_token=TOKEN).start()
    yield peer
    peer.stop()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def desk(request: pytest.FixtureRequest, make_settings: Callable[..., Settings],
         twilio_api: FakeTwilio) -> Iterator[AgentDesk]:
    overrides: dict[str, Any] = {
        "twilio_account_sid": ACCOUNT, "twilio_auth_token": TOKEN, "twilio_api_base": twilio_api.url,
        "twilio_transcription_wait_seconds": 1.5, "twilio_missed_call_grace_seconds": 0.3,
        "twilio_voice_greeting": "Hello from the test desk.",
    }
    if request.param == "postgresql":
        overrides["database_url"] = request.getfixturevalue("postgres_url")
    with running_desk(make_settings(**overrides), components=("worker", "sweeper", "web", "twilio-media")) as d:
        yield d


def _call(call_sid: str, **extra: str) -> dict[str, str]:
    return {"CallSid": call_sid, "AccountSid": ACCOUNT, "From": CALLER, "To": OURS, "Caller": CALLER,
            "Called": OURS, "Direction": "inbound", "ApiVersion": "2010-04-01", **extra}


def _greet(desk: AgentDesk, call_sid: str) -> dict[str, str]:
    """Place the call; returns the callback URLs of the TwiML's <Record> (path and query)."""
    answer = post_webhook(desk.base_url, "/intake/twilio/voice", _call(call_sid, CallStatus="ringing"), TOKEN)
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("application/xml")
    root = ET.fromstring(answer.text)
    assert root.find("Say") is not None and root.find("Say").text == "Hello from the test desk."  # type: ignore[union-attr]
    record = root.find("Record")
    assert record is not None and record.get("transcribe") == "true" and record.get("maxLength") == "120"
    urls = {"action": record.get("action"), "transcription": record.get("transcribeCallback"),
            "recording": record.get("recordingStatusCallback")}

    def local(url: str | None) -> str:
        assert url and url.startswith(desk.base_url)
        parts = urlsplit(url)
        return f"{parts.path}?{parts.query}"

    return {k: local(v) for k, v in urls.items()}


def _recording(desk: AgentDesk, urls: dict[str, str], call_sid: str, recording_url: str) -> None:
    params = {"CallSid": call_sid, "AccountSid": ACCOUNT, "RecordingSid": "RE" + uuid.uuid4().hex,
              "RecordingUrl": recording_url, "RecordingStatus": "completed", "RecordingDuration": "7",
              "RecordingChannels": "1", "RecordingSource": "RecordVerb"}
    assert post_webhook(desk.base_url, urls["recording"], params, TOKEN).status_code == 200


def _transcription(desk: AgentDesk, urls: dict[str, str], call_sid: str, text: str, status: str = "completed") -> None:
    params = _call(call_sid, TranscriptionSid="TR" + uuid.uuid4().hex, TranscriptionText=text,
                   TranscriptionStatus=status, RecordingSid="RE" + uuid.uuid4().hex, CallStatus="completed")
    assert post_webhook(desk.base_url, urls["transcription"], params, TOKEN).status_code == 200


def _voice_messages(desk: AgentDesk) -> list[dict[str, Any]]:
    return [m for t in desk.tickets() for m in desk.ticket(t["ref"])["messages"]
            if m["direction"] == "inbound" and m["channel"] == "voice"]


@pytest.mark.parametrize("order", ["recording first", "transcription first"])
def test_a_voicemail_is_one_ticket_message_whichever_callback_comes_first(
    desk: AgentDesk, twilio_api: FakeTwilio, order: str
) -> None:
    call_sid = "CA" + uuid.uuid4().hex
    urls = _greet(desk, call_sid)
    audio = b"ID3" + b"\x00" * 2000
    recording_url = twilio_api.add_recording(audio)
    hangup = post_webhook(desk.base_url, urls["action"], _call(call_sid, RecordingUrl=recording_url,
                                                               RecordingDuration="7", CallStatus="completed"), TOKEN)
    assert "<Hangup" in hangup.text
    if order == "recording first":
        _recording(desk, urls, call_sid, recording_url)
        _transcription(desk, urls, call_sid, "Hi, my router is broken, please call back.")
    else:
        _transcription(desk, urls, call_sid, "Hi, my router is broken, please call back.")
        _recording(desk, urls, call_sid, recording_url)
    desk.wait_until(lambda: len(_voice_messages(desk)) == 1, 30, "the voicemail on a ticket")
    desk.wait_routed()
    (message,) = _voice_messages(desk)
    assert message["message_id"] == call_sid
    assert "Hi, my router is broken, please call back." in message["text"] and "7 s" in message["text"]
    (attachment,) = message["attachments"]
    assert attachment["content_type"] == "audio/mpeg" and desk.app.blobs.get(attachment["sha256"]) == audio
    (ticket,) = desk.tickets()
    assert ticket["channel"] == "voice" and ticket["contact"] == CALLER
    # The caller is acknowledged by text message from the number they called.
    desk.wait_until(lambda: len(twilio_api.messages) == 1, 30, "the SMS acknowledgement")
    assert twilio_api.messages[0]["to"] == CALLER and twilio_api.messages[0]["from"] == OURS
    # A late duplicate callback changes nothing.
    _transcription(desk, urls, call_sid, "again")
    desk.wait_routed()
    assert len(_voice_messages(desk)) == 1


def test_a_voicemail_without_a_transcription_goes_on_the_ticket_after_the_wait(
    desk: AgentDesk, twilio_api: FakeTwilio
) -> None:
    call_sid = "CA" + uuid.uuid4().hex
    urls = _greet(desk, call_sid)
    _recording(desk, urls, call_sid, twilio_api.add_recording(b"ID3audio"))
    desk.wait_until(lambda: len(_voice_messages(desk)) == 1, 30, "the voicemail on a ticket")
    (message,) = _voice_messages(desk)
    assert "no transcription arrived" in message["text"] and len(message["attachments"]) == 1


def test_a_call_without_a_message_is_a_missed_call_on_the_contact_s_ticket(
    desk: AgentDesk, twilio_api: FakeTwilio
) -> None:
    sms = {"MessageSid": "SM" + uuid.uuid4().hex, "AccountSid": ACCOUNT, "From": CALLER, "To": OURS,
           "Body": "Did my parcel leave?", "NumMedia": "0"}
    assert post_webhook(desk.base_url, "/intake/twilio/messages", sms, TOKEN).status_code == 200
    desk.wait_for_messages(2)
    call_sid = "CA" + uuid.uuid4().hex
    _greet(desk, call_sid)
    ringing = post_webhook(desk.base_url, "/intake/twilio/voice/status", _call(call_sid, CallStatus="in-progress"),
                           TOKEN)
    assert ringing.status_code == 200
    ended = post_webhook(desk.base_url, "/intake/twilio/voice/status",
                         _call(call_sid, CallStatus="completed", CallDuration="4"), TOKEN)
    assert ended.status_code == 200
    desk.wait_until(lambda: len(_voice_messages(desk)) == 1, 30, "the missed call")
    desk.wait_routed()
    (ticket,) = desk.tickets()  # the caller's SMS ticket: one contact, one conversation
    (missed,) = _voice_messages(desk)
    assert missed["text"].startswith(f"Missed call from {CALLER}") and missed["attachments"] == []
    assert missed["decision"]["thread"]["via"] == "conversation"
    assert ticket["channel"] == "sms"


def test_voice_callbacks_are_signed_too(desk: AgentDesk) -> None:
    for path in ("/intake/twilio/voice", "/intake/twilio/voice/recording?from=%2B1&to=%2B2",
                 "/intake/twilio/voice/transcription", "/intake/twilio/voice/status"):
        answer = post_webhook(desk.base_url, path, _call("CA" + "0" * 32), TOKEN, signature="bm9wZQ==")
        assert answer.status_code == 403, path
