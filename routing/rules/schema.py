"""The shape of a rules file, as pydantic models.

Every model forbids unknown keys and is strict about types (``priority: 1`` is an error, not
``"1"``): a typo in a file that decides where customers' messages go must never be silently ignored.
The ``when:`` condition trees are free-form here (a mapping); ``routing.rules.conditions`` checks
them, because their keys (``customer.tier``, ``header.X-Priority``) are open-ended.

Cross-references (a rule's queue must be declared, a template must exist, ...) are checked by the
loader, which sees the whole file.
"""

from __future__ import annotations

import datetime as dt
import re
import zoneinfo
from functools import lru_cache
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field

from routing.rules.errors import did_you_mean

__all__ = [
    "ASSIGN_STRATEGIES",
    "EVENTS",
    "PLACEHOLDERS",
    "PRIORITIES",
    "STATUSES",
    "TOP_LEVEL_KEYS",
    "WEEKDAYS",
    "ActionsSpec",
    "CalendarSpec",
    "DefaultsSpec",
    "QueueSpec",
    "RuleSpec",
    "RulesFile",
    "SlaPolicySpec",
    "TemplateVariant",
    "parse_hours",
]

PRIORITIES = ("low", "normal", "high", "urgent")
STATUSES = ("new", "open", "pending", "escalated", "resolved", "closed")
EVENTS = ("new_ticket", "follow_up", "sla_breach", "status_changed")
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
ASSIGN_STRATEGIES = ("round_robin", "least_loaded")
# What an auto-reply template may say; the router fills each one.
PLACEHOLDERS = ("ticket_ref", "customer_name", "queue", "queue_name", "due", "subject")

Priority = Literal["low", "normal", "high", "urgent"]
Status = Literal["new", "open", "pending", "escalated", "resolved", "closed"]
Event = Literal["new_ticket", "follow_up", "sla_breach", "status_changed"]
Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]

# Names admins give things (queues, templates, calendars, SLA policies): short, lower-case, and
# safe to show in URLs and logs.
_NAME = r"^[a-z0-9][a-z0-9_-]*$"
Name = Annotated[str, Field(pattern=_NAME, max_length=64)]
Language = Annotated[str, Field(pattern=r"^[a-z]{2,3}$")]
Address = Annotated[str, Field(pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")]
Duration = Annotated[str, Field(pattern=r"^\d+\s*[mhd]$")]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


def _template_ref(value: Any) -> Any:
    # ``auto_reply`` is a template name or ``false`` (no acknowledgement at all); ``true`` would be
    # ambiguous (which template?), so it is refused with the two accepted forms named.
    if value is False or value is None or isinstance(value, str):
        return value
    raise ValueError("must be a template name or false")


TemplateRef = Annotated[str | bool | None, BeforeValidator(_template_ref)]


def _check_assign(value: str | None) -> str | None:
    if value is None or value in ASSIGN_STRATEGIES or re.match(r"^[^@\s]+@[^@\s]+$", value):
        return value
    raise ValueError(
        f"must be an agent's address, round_robin or least_loaded{did_you_mean(value, ASSIGN_STRATEGIES)}"
    )


def _date(value: Any) -> Any:
    # Dates written in quotes ("2026-12-25") are meant as dates too.
    if isinstance(value, str):
        try:
            return dt.date.fromisoformat(value.strip())
        except ValueError:
            raise ValueError("must be a date like 2026-12-25") from None
    if isinstance(value, dt.datetime):
        raise ValueError("must be a date like 2026-12-25 (no time)")  # noqa: TRY004 (pydantic wants ValueError)
    return value


Holiday = Annotated[dt.date, BeforeValidator(_date)]

_HOURS = re.compile(r"^\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*$")


def parse_hours(value: str | list[str]) -> tuple[tuple[int, int], ...]:
    """``"09:00-12:00, 13:00-17:00"`` → ((540, 720), (780, 1020)): minutes since midnight."""
    parts = value if isinstance(value, list) else value.split(",")
    ranges: list[tuple[int, int]] = []
    for part in parts:
        match = _HOURS.match(part)
        if not match:
            raise ValueError(f"{part.strip()!r} is not a time range like 09:00-17:00")
        h1, m1, h2, m2 = (int(g) for g in match.groups())
        start, end = h1 * 60 + m1, h2 * 60 + m2
        if h1 > 23 or m1 > 59 or h2 > 24 or m2 > 59 or end > 24 * 60:
            raise ValueError(f"{part.strip()!r} is not a valid time of day")
        if end <= start:
            raise ValueError(
                f"{part.strip()!r} ends before it starts (split ranges over midnight in two)"
            )
        ranges.append((start, end))
    if not ranges:
        raise ValueError("give at least one range like 09:00-17:00")
    return tuple(sorted(ranges))


def _check_hours(value: str | list[str]) -> str | list[str]:
    parse_hours(value)
    return value


@lru_cache(maxsize=1)
def _zones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


def _check_timezone(value: str) -> str:
    try:
        zoneinfo.ZoneInfo(value)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {value!r}{did_you_mean(value, _zones())}") from None
    return value


class QueueSpec(_Strict):
    """A queue tickets land in, and who works it."""

    id: Name
    name: str | None = None
    description: str | None = None
    agents: list[Address] = []
    # How a new ticket in this queue gets an agent when no rule names one.
    assign: Literal["round_robin", "least_loaded"] | None = None


class CalendarSpec(_Strict):
    """Business hours: which days, which hours, in which time zone, minus holidays."""

    timezone: Annotated[str, AfterValidator(_check_timezone)]
    days: list[Weekday] = ["mon", "tue", "wed", "thu", "fri"]
    hours: Annotated[str | list[str], AfterValidator(_check_hours)] = "09:00-17:00"
    holidays: list[Holiday] = []


class DefaultsSpec(_Strict):
    """What a new ticket gets before any rule runs."""

    queue: str
    priority: Priority = "normal"
    # Template variant used when a message's language has none (and language unknown).
    language: Language = "en"
    # Calendar that ``business_hours: true`` means when no calendar is named.
    calendar: str | None = None
    auto_reply: TemplateRef = None
    sla: str | None = None


class TemplateVariant(_Strict):
    subject: str
    body: str


class SlaPolicySpec(_Strict):
    """An SLA policy's targets. Names are checked now; the clock work comes with the SLA feature."""

    description: str | None = None
    first_response: Duration | None = None
    next_response: Duration | None = None
    resolution: Duration | None = None
    calendar: str | None = None


class ActionsSpec(_Strict):
    """What a matching rule does. A key left out leaves that part of the decision alone."""

    queue: str | None = None
    priority: Priority | None = None
    category: Annotated[str, Field(min_length=1)] | None = None
    tags: list[Annotated[str, Field(min_length=1)]] | None = None
    assign: Annotated[str | None, AfterValidator(_check_assign)] = None
    sla: str | None = None
    auto_reply: TemplateRef = None
    notify: list[Annotated[str, Field(min_length=1)]] | None = None
    spam: bool | None = None
    status: Status | None = None


class RuleSpec(_Strict):
    name: Annotated[str, Field(min_length=1, max_length=200)]
    description: str | None = None
    on: Event = "new_ticket"
    enabled: bool = True
    when: dict[str, Any] = {}
    then: ActionsSpec
    # False (the default): the first matching rule decides and later rules are not applied.
    continue_: bool = Field(False, alias="continue")


class RulesFile(_Strict):
    """The whole file. The loader validates it section by section (to report every error)."""

    version: Literal[1]
    defaults: DefaultsSpec
    calendars: dict[str, CalendarSpec] = {}
    queues: list[QueueSpec]
    # Directory facts: a list of {email|phone|domain: ..., fact: value}, or a CSV file's path.
    customers: list[dict[str, Any]] | str | None = None
    # {name: {language: {subject, body}}}, or a folder of NAME.LANG.txt files.
    templates: dict[str, dict[str, TemplateVariant]] | str = {}
    sla_policies: dict[str, SlaPolicySpec] = {}
    rules: list[RuleSpec] = []


TOP_LEVEL_KEYS = tuple(RulesFile.model_fields)
