"""Slack's own payload shapes parse without error (read-only corpus beside the checkout).

``slack-bolt-python``: Events API bodies from Bolt for Python's tests, with their values.
``slack-java-sdk-samples``: every field Slack may send, values blanked; the blanks that make a
message a message (type, ids, ts) are filled in, so the parser meets every other field as sent.

Each body is classified with its channel configured as a support channel: a customer's message
must become an Envelope, everything else must be a clear verdict (ignored, an edit, ...), and
nothing may raise. The set skips locally (fails under CI) when the corpus is missing.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from intake.adapter import Payload
from intake.envelope import Envelope
from intake.slack.events import classify, parse_payload
from intake.slack.settings import SlackSection, SupportChannel
from tests.peers import missing


def _corpus_dir() -> Path:
    configured = os.environ.get("OMNIDESK_CORPUS_DIR")
    return Path(configured) if configured else Path(__file__).resolve().parents[2] / "shared" / "corpus"


CORPUS = _corpus_dir()
BOLT = sorted((CORPUS / "slack-bolt-python").glob("*.json")) if (CORPUS / "slack-bolt-python").is_dir() else []
JAVA = sorted((CORPUS / "slack-java-sdk-samples").glob("*.json")) if (CORPUS / "slack-java-sdk-samples").is_dir() else []
BOLT = [p for p in BOLT if not p.name.startswith("_")]


def _section_for(body: dict[str, Any]) -> SlackSection:
    event = body.get("event") if isinstance(body.get("event"), dict) else {}
    assert isinstance(event, dict)
    channel = str(event.get("channel") or "")
    if channel[:1] in {"C", "G"} and len(channel) >= 3:
        return SlackSection(support_channels=[SupportChannel(id=channel, queue="general")])
    return SlackSection()


def _check(body: dict[str, Any]) -> str:
    section = _section_for(body)
    verdict = classify(body, section)
    if verdict.action == "customer":
        payload = Payload(channel="slack", raw=json.dumps(body).encode(), received_at=datetime.now(UTC))
        envelope = parse_payload(payload, section)
        assert isinstance(envelope, Envelope)
        assert envelope.thread_keys[0].key.startswith(f"slack:{verdict.channel}:")
    else:
        assert verdict.action in {"url_verification", "agent", "edit", "delete", "ignore"}
    return verdict.action


def _ids(paths: list[Path]) -> list[str]:
    return [p.stem for p in paths]


@pytest.mark.parametrize("path", BOLT, ids=_ids(BOLT))
def test_bolt_event_bodies(path: Path) -> None:
    body = json.loads(path.read_text(encoding="utf-8"))
    action = _check(body)
    event = body.get("event") or {}
    if body.get("type") == "url_verification":
        assert action == "url_verification"
    elif event.get("bot_id") or event.get("subtype") == "bot_message":
        assert action == "ignore"  # bots are not customers unless configured


@pytest.mark.parametrize("path", JAVA, ids=_ids(JAVA))
def test_java_sdk_full_shapes(path: Path) -> None:
    body = json.loads(path.read_text(encoding="utf-8"))
    if "event" not in body:
        pytest.skip(f"{path.name} is not an Events API body")
    body["type"] = "event_callback"
    body["event_id"] = "Ev0SAMPLE"
    event = body["event"]
    if event.get("type") == "message":
        event["channel"] = "C0SAMPLE01"
        event["ts"] = event.get("ts") or "1700000000.000100"
        event["user"] = event.get("user") or "U0SAMPLE01"
    action = _check(body)
    if path.name == "MessagePayload.json":
        assert action == "customer"


def test_the_corpus_is_there() -> None:
    if not BOLT or not JAVA:
        missing(f"no Slack payloads under {CORPUS}", what="the Slack corpus")
    assert len(BOLT) > 50 and len(JAVA) > 10
