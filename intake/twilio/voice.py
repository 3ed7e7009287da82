"""Voice: the greeting and voicemail TwiML, and one ticket message per call from its callbacks.

A call to one of our numbers gets TwiML from ``/intake/twilio/voice``: the number's greeting,
then ``<Record>`` with transcription. What happens next reaches us in separate callbacks, in no
fixed order: the recording is ready (``/voice/recording``), the transcription is done
(``/voice/transcription``), the recording ended or the call ended (``/voice/recorded``,
``/voice/status``). Each callback only adds its part to the call's state (a ``channel_cursors``
row ``twilio:call:<CallSid>`` whose epoch names a JSON document of the parts in the blob store,
and whose position has one bit per part) and is answered at once.

The ``twilio-media`` runner finishes calls: a call with a recording and its transcription (or
no transcription after ``OMNIDESK_TWILIO_TRANSCRIPTION_WAIT_SECONDS``) becomes one voicemail
message, the recording downloaded into the blob store and attached, the transcript as its text;
a call that ended without a recording (after ``OMNIDESK_TWILIO_MISSED_CALL_GRACE_SECONDS``, as
the recording callback may still be on its way) becomes a "missed call" entry. Both are logged
through the one ``ingest`` with the CallSid as the id, so finishing twice is one message.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime, timedelta
from typing import Any, Literal
from urllib.parse import quote

from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite
from twilio.twiml.voice_response import VoiceResponse

from intake.adapter import Payload
from intake.twilio.stored import FORMAT, StoredRequest

__all__ = ["CALL_PREFIX", "DONE", "ENDED", "RECORDING", "TRANSCRIPTION", "finish_calls", "greeting_twiml",
           "hangup_twiml", "record_part"]

log = logging.getLogger(__name__)

CALL_PREFIX = "twilio:call:"
RECORDING, TRANSCRIPTION, ENDED, DONE = 1, 2, 4, 128
DEFAULT_GREETING = ("Thank you for calling. Please leave a message after the tone, and we will get back "
                    "to you as soon as possible.")


def greeting_twiml(base: str, *, greeting: str, max_length: int, caller: str, number: str) -> str:
    """The TwiML of an incoming call: the greeting, then the voicemail recording.

    The callback URLs carry the caller and our number (Twilio signs the whole URL): the
    recording callback itself does not name them.
    """
    query = f"from={quote(caller)}&to={quote(number)}"
    response = VoiceResponse()
    response.say(greeting)
    response.record(
        max_length=max_length, play_beep=True, transcribe=True,
        action=f"{base}/intake/twilio/voice/recorded?{query}",
        transcribe_callback=f"{base}/intake/twilio/voice/transcription?{query}",
        recording_status_callback=f"{base}/intake/twilio/voice/recording?{query}",
        recording_status_callback_event="completed",
    )
    response.say("We did not receive a message. Goodbye.")
    return str(response)


def hangup_twiml() -> str:
    response = VoiceResponse()
    response.hangup()
    return str(response)


def _load(blobs: Any, sha: str) -> dict[str, Any]:
    return dict(json.loads(blobs.get(sha))) if sha else {}


def record_part(db: Any, blobs: Any, call_sid: str, bit: int, part: dict[str, Any]) -> None:
    """Add one callback's part to the call's state, in one transaction (parallel callbacks of a
    call serialise on the row)."""
    from tickets.models import ChannelCursor, utcnow

    stream = CALL_PREFIX + call_sid
    dialect = sqlite if db.is_sqlite else postgresql
    with db.write() as session:
        session.execute(dialect.insert(ChannelCursor).values(stream=stream, epoch="", position=0,
                                                             updated_at=utcnow())
                        .on_conflict_do_nothing(index_elements=["stream"]))
        row = session.execute(select(ChannelCursor).where(ChannelCursor.stream == stream).with_for_update()).scalar_one()
        if row.position & DONE:
            return  # finished already; a late part (a transcription after the wait) changes nothing
        doc = _load(blobs, row.epoch)
        doc.setdefault("first_at", datetime.now(UTC).isoformat())
        for key, value in part.items():
            if value not in (None, ""):
                doc.setdefault(key, value) if key in ("from", "to") else doc.__setitem__(key, value)
        doc[f"at_{bit}"] = datetime.now(UTC).isoformat()
        row.epoch = blobs.put(json.dumps(doc, sort_keys=True).encode())
        row.position = int(row.position) | bit
        row.updated_at = utcnow()


def finish_calls(db: Any, blobs: Any, ingest: Any, fetch: Any, *, transcription_wait: float,
                 missed_grace: float, now: datetime | None = None) -> int:
    """One pass over the calls not finished yet; returns how many were logged.

    ``fetch(url, content_type, index)`` downloads a recording into the blob store (an
    ``AttachmentRef``), raising ``_Permanent``-style errors (``ValueError``) for one that is gone.
    """
    from tickets.models import ChannelCursor

    now = now or datetime.now(UTC)
    with db.read() as session:
        rows = session.execute(select(ChannelCursor.stream, ChannelCursor.epoch, ChannelCursor.position)
                               .where(ChannelCursor.stream.like(CALL_PREFIX + "%"))).all()
    done = 0
    for stream, epoch, position in rows:
        if position & DONE or not epoch:
            continue
        doc = _load(blobs, epoch)

        kind: Literal["voicemail", "missed-call"]
        if doc.get("recording_url"):
            if not position & TRANSCRIPTION and _age(doc, RECORDING, now) < transcription_wait:
                continue
            kind = "voicemail"
        elif position & ENDED and _age(doc, ENDED, now) >= missed_grace:
            kind = "missed-call"
        else:
            continue
        if not doc.get("from") or not doc.get("to"):
            log.warning("twilio call %s: no caller or number in its callbacks; dropped", stream)
            _mark_done(db, stream)
            continue
        refs, problems = [], []
        if kind == "voicemail":
            try:
                refs.append(fetch(str(doc["recording_url"]) + ".mp3", "audio/mpeg", 0))
            except ValueError as exc:
                problems.append(str(exc))
            # OSError / requests errors propagate: the call stays unfinished and is retried.
        params = [(k, str(v)) for k, v in sorted(doc.items()) if not k.startswith("at_")]
        stored = StoredRequest(endpoint=kind, url="", params=tuple(params), media=tuple(refs),
                               media_errors=tuple(problems))
        first = datetime.fromisoformat(doc["first_at"])
        ingest(Payload(channel="voice", raw=stored.to_bytes(), received_at=first, source=f"twilio:{kind}",
                       meta={"content_type": "application/json", "format": FORMAT}))
        _mark_done(db, stream)
        done += 1
    _prune(db, now)
    return done


def _age(doc: dict[str, Any], bit: int, now: datetime) -> float:
    """Seconds since the part ``bit`` arrived (0 when it has not)."""
    at = doc.get(f"at_{bit}")
    return (now - datetime.fromisoformat(at)).total_seconds() if at else 0.0


def _mark_done(db: Any, stream: str) -> None:
    from sqlalchemy import update

    from tickets.models import ChannelCursor

    with db.write() as session:
        session.execute(update(ChannelCursor).where(ChannelCursor.stream == stream)
                        .values(position=ChannelCursor.position.op("|")(DONE)))


def _prune(db: Any, now: datetime) -> None:
    """Finished calls are kept a day (late callbacks find them done), then forgotten."""
    from sqlalchemy import delete

    from tickets.models import ChannelCursor

    with db.write() as session:
        session.execute(delete(ChannelCursor).where(
            ChannelCursor.stream.like(CALL_PREFIX + "%"), ChannelCursor.position.op("&")(DONE) != 0,
            ChannelCursor.updated_at < now - timedelta(days=1)))
