"""The media of inbound MMS and WhatsApp messages: fetched after the webhook was answered.

The webhook stores the message at once (its intake row's source is ``twilio:media``) and
answers Twilio; downloading photos inside the webhook would hold Twilio's request for seconds.
This runner (component ``twilio-media``) finds routed messages with media whose files were not
fetched yet, downloads each ``MediaUrlN`` with the account's credentials into the blob store and
logs a companion payload (``<MessageSid>/media``) through the one ``ingest``: it lands on the
message's ticket, as a message holding the files. The intake row is the durable to-do: a crash
mid-download means the next pass fetches again, and the companion's unique id keeps a second
fetch (another process, a retry) from adding the files twice.

A file that cannot be had for good (refused, gone, larger than ``OMNIDESK_TWILIO_MEDIA_MAX_BYTES``)
is named on the ticket instead; a temporary failure is retried on a later pass.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import requests
from sqlalchemy import and_, select
from sqlalchemy.orm import aliased

from intake.adapter import Payload
from intake.envelope import AttachmentRef, load_envelope

__all__ = ["MEDIA_SOURCE", "MediaFetcher"]

log = logging.getLogger(__name__)

MEDIA_SOURCE = "twilio:media"
_BATCH = 20
_EXTENSIONS = {"image/jpeg": "jpg", "image/png": "png", "image/gif": "gif", "image/webp": "webp",
               "video/mp4": "mp4", "audio/ogg": "ogg", "audio/mpeg": "mp3", "audio/amr": "amr",
               "application/pdf": "pdf", "text/vcard": "vcf", "text/plain": "txt"}


class _Permanent(ValueError):
    """This file will never be had: say so on the ticket rather than retry for ever."""


@dataclass
class MediaFetcher:
    """One pass (``run_once``) or a loop (``run``) over the messages whose media are due."""

    db: Any
    blobs: Any
    ingest: Callable[[Payload], Any]
    account_sid: str
    auth_token: str
    api_base: str = "https://api.twilio.com"
    max_bytes: int = 16 * 1024 * 1024
    timeout: float = 15.0
    interval: float = 1.0
    transcription_wait: float = 300.0
    missed_grace: float = 60.0
    _session: requests.Session = field(default_factory=requests.Session)

    def due(self) -> list[Any]:
        from tickets.models import IntakeRow, IntakeState

        companion = aliased(IntakeRow)
        with self.db.read() as session:
            return list(session.execute(
                select(IntakeRow.id, IntakeRow.channel, IntakeRow.external_id, IntakeRow.raw_sha256,
                       IntakeRow.received_at)
                .outerjoin(companion, and_(companion.channel == IntakeRow.channel,
                                           companion.external_id == IntakeRow.external_id + "/media"))
                .where(IntakeRow.source == MEDIA_SOURCE, IntakeRow.state == IntakeState.ROUTED.value,
                       companion.id.is_(None))
                .order_by(IntakeRow.id)
                .limit(_BATCH)
            ).all())

    def run_once(self) -> int:
        """Fetch the media of every due message; returns how many companions were logged."""
        from intake.twilio.parse import load_request

        done = 0
        for row in self.due():
            stored = load_request(self.blobs.get(row.raw_sha256))
            refs: list[AttachmentRef] = []
            problems: list[str] = []
            try:
                envelope = self._envelope(row)
                for index, item in enumerate(envelope.get("media", [])):
                    try:
                        refs.append(self._fetch(item["url"], item.get("content_type", ""), index))
                    except _Permanent as exc:
                        problems.append(str(exc))
            except (requests.RequestException, OSError) as exc:
                log.warning("twilio media of %s: %s; retrying on the next pass", row.external_id, exc)
                continue
            companion = stored.model_copy(update={"endpoint": "media", "media": tuple(refs),
                                                  "media_errors": tuple(problems)})
            received = row.received_at if row.received_at.tzinfo else row.received_at.replace(tzinfo=UTC)
            self.ingest(Payload(channel=row.channel, raw=companion.to_bytes(), received_at=received,
                                source="twilio:media-fetched",
                                meta={"content_type": "application/json", "format": stored.format}))
            done += 1
        return done

    def _envelope(self, row: Any) -> dict[str, Any]:
        from tickets.models import IntakeRow

        with self.db.read() as session:
            data = session.execute(select(IntakeRow.envelope).where(IntakeRow.id == row.id)).scalar_one()
        return dict(load_envelope(data).details)

    def _url(self, url: str) -> str:
        """Twilio's media URL, sent to ``api_base`` when the API is elsewhere (a proxy, a test)."""
        parts, base = urlsplit(url), urlsplit(self.api_base)
        if parts.hostname and parts.hostname.endswith("twilio.com") and base.netloc != parts.netloc:
            return urlunsplit((base.scheme, base.netloc, parts.path, parts.query, ""))
        return url

    def _fetch(self, url: str, content_type: str, index: int) -> AttachmentRef:
        answer = self._session.get(self._url(url), auth=(self.account_sid, self.auth_token),
                                   timeout=self.timeout, stream=True)
        with answer:
            if answer.status_code in (429,) or answer.status_code >= 500:
                raise requests.HTTPError(f"HTTP {answer.status_code} for {url}")
            if answer.status_code != 200:
                raise _Permanent(f"file {index + 1}: Twilio answered HTTP {answer.status_code} for {url}")
            declared = int(answer.headers.get("Content-Length") or 0)
            if declared > self.max_bytes:
                raise _Permanent(f"file {index + 1}: {declared} bytes, over the {self.max_bytes}-byte limit "
                                 "(OMNIDESK_TWILIO_MEDIA_MAX_BYTES)")
            data = bytearray()
            for chunk in answer.iter_content(64 * 1024):
                data += chunk
                if len(data) > self.max_bytes:
                    raise _Permanent(f"file {index + 1}: over the {self.max_bytes}-byte limit "
                                     "(OMNIDESK_TWILIO_MEDIA_MAX_BYTES)")
            kind = (answer.headers.get("Content-Type") or content_type or "application/octet-stream")
            kind = kind.split(";")[0].strip().lower()
        sha = self.blobs.put(bytes(data))
        name = f"media-{index + 1}.{_EXTENSIONS.get(kind, 'bin')}"
        return AttachmentRef(sha256=sha, size=len(data), content_type=kind, filename=name)

    def finish_calls(self) -> int:
        """Voicemails and missed calls that are complete (``intake.twilio.voice``)."""
        from intake.twilio.voice import finish_calls

        return finish_calls(self.db, self.blobs, self.ingest, self._fetch,
                            transcription_wait=self.transcription_wait, missed_grace=self.missed_grace)

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            for one_pass in (self.run_once, self.finish_calls):
                try:
                    one_pass()
                except Exception:  # a bad pass must not end the runner; the work stays due
                    log.exception("twilio media: a pass failed")
            stop.wait(self.interval)


def start_fetcher(fetcher: MediaFetcher) -> Callable[[], None]:
    """Run ``fetcher`` in a thread; returns how to stop it."""
    stop = threading.Event()
    thread = threading.Thread(target=fetcher.run, args=(stop,), name="twilio-media", daemon=True)
    thread.start()

    def stopper() -> None:
        stop.set()
        thread.join(timeout=fetcher.timeout + 5)

    return stopper
