"""A Twilio webhook request as the intake log stores it, and the Twilio block of its Envelope.

The raw payload is a canonical JSON document holding the request's form parameters verbatim (as
pairs, in the order sent, so a repeated key survives), which endpoint received it, the public URL
it was signed for, and the facts of the day parsing needs (the number's queue hint, the outbound
message a status callback reports on). ``parse`` needs nothing else: intake, quarantine replay
and ``route explain`` read the same bytes the same way.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from intake.envelope import AttachmentRef

__all__ = ["FORMAT", "StoredRequest", "TwilioDetails"]

FORMAT: Literal["omnidesk.twilio/1"] = "omnidesk.twilio/1"


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class StoredRequest(_Frozen):
    format: Literal["omnidesk.twilio/1"] = FORMAT
    # "media": not a webhook but the media of a stored message, downloaded by the media runner.
    # "voicemail" / "missed-call": a call's callbacks joined by the runner (``intake.twilio.voice``).
    endpoint: Literal["messages", "status", "media", "voicemail", "missed-call"]
    url: Annotated[str, Field(max_length=4000)]
    params: tuple[tuple[str, str], ...]
    # The configured number's queue hint, when the number has one (``header.x-twilio-queue``).
    queue: str | None = None
    number_name: str = ""
    # Status callbacks: the idempotency key of the outbox row they report on (from the URL).
    outbox_key: str | None = None
    # Media payloads: the downloaded files (in the blob store) and why any could not be fetched.
    media: tuple[AttachmentRef, ...] = ()
    media_errors: tuple[str, ...] = ()

    def param(self, name: str) -> str:
        """The first value of a parameter ('' when absent)."""
        return next((v for k, v in self.params if k == name), "")

    def to_bytes(self) -> bytes:
        data = self.model_dump(mode="json")
        return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


class MediaItem(_Frozen):
    url: str
    content_type: str = ""


class TwilioDetails(_Frozen):
    """The Twilio block of an Envelope (``Envelope.details``)."""

    message_sid: str
    account_sid: str = ""
    profile_name: str = ""
    wa_id: str = ""
    num_segments: str = ""
    media: tuple[MediaItem, ...] = ()
    status: str = ""
    error_code: str = ""

    def dump(self) -> dict[str, Any]:
        return self.model_dump(mode="json")
