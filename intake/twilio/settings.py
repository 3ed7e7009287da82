"""The ``twilio:`` section of the channels file: our numbers and what each one does.

With only ``OMNIDESK_TWILIO_ACCOUNT_SID`` and ``OMNIDESK_TWILIO_AUTH_TOKEN`` set, every number of
the account is served with the defaults (no queue hint, the default acknowledgement). An entry
here refines one number: its name, a queue hint for the rules (``header.x-twilio-queue``), which
channels it serves, and the WhatsApp template sent when the 24-hour window is closed::

    twilio:
      numbers:
        - number: "+14155550100"
          name: US support line
          queue: billing
          whatsapp_template: {content_sid: HX0123456789abcdef0123456789abcdef}
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from config.issues import Issue
from config.yamlpos import YamlDocument
from intake.twilio.numbers import to_e164

__all__ = ["NumberSpec", "TwilioSection", "WhatsAppTemplate", "check_twilio_section", "number_specs"]

_QUEUE = r"^[a-z0-9][a-z0-9_-]*$"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class WhatsAppTemplate(_Strict):
    """An approved WhatsApp template (Twilio Content API): the only kind of message WhatsApp lets a
    business send once the customer's last message is more than 24 hours old."""

    content_sid: Annotated[str, Field(pattern=r"^HX[0-9a-fA-F]{32}$")]
    # Template variables by position ("1": "{ticket_ref}"); placeholders {ticket_ref},
    # {customer_name} are filled in when the message is composed.
    variables: dict[Annotated[str, Field(pattern=r"^[0-9]{1,2}$")], Annotated[str, Field(max_length=1024)]] = {}


class NumberSpec(_Strict):
    """One of our Twilio numbers."""

    number: Annotated[str, Field(min_length=3, max_length=40)]
    name: Annotated[str, Field(max_length=200)] = ""
    channels: list[Literal["sms", "whatsapp"]] = ["sms", "whatsapp"]
    queue: Annotated[str | None, Field(pattern=_QUEUE, max_length=64)] = None
    whatsapp_template: WhatsAppTemplate | None = None
    # Said to callers before the voicemail tone (default: OMNIDESK_TWILIO_VOICE_GREETING).
    greeting: Annotated[str | None, Field(min_length=1, max_length=1000)] = None

    @field_validator("number")
    @classmethod
    def _e164(cls, value: str) -> str:
        # Without the country code a number is ambiguous (and Twilio always writes it with one).
        if not value.strip().startswith("+"):
            raise ValueError(f"{value!r}: write the number in international form, +<country><number>")
        return to_e164(value)


class TwilioSection(_Strict):
    numbers: list[NumberSpec] = []


def number_specs(section: TwilioSection | None) -> dict[str, NumberSpec]:
    """The configured numbers by E.164 number (empty: every number served with defaults)."""
    return {spec.number: spec for spec in (section.numbers if section is not None else ())}


def check_twilio_section(
    doc: YamlDocument, data: Any, *, environ: Mapping[str, str], base_dir: Path | None, check_env: bool
) -> list[Issue]:
    """Two entries for one number: the second would silently hide the first."""
    if not isinstance(data, dict) or not isinstance(data.get("numbers"), list):
        return []
    issues: list[Issue] = []
    seen: dict[str, int] = {}
    for index, item in enumerate(data["numbers"]):
        if not isinstance(item, dict) or not isinstance(item.get("number"), str):
            continue
        try:
            number = to_e164(item["number"])
        except ValueError:
            continue  # the model reports it
        if number in seen:
            line, _ = doc.position(("twilio", "numbers", seen[number], "number"))
            issues.append(doc.issue(("twilio", "numbers", index, "number"),
                                    f"duplicate number {number} (first listed on line {line})"))
        else:
            seen[number] = index
    return issues
