"""The facts routing rules test besides the message itself.

Rules are a pure function of (envelope, facts): everything that needs the database or a detector
(the contact's history, directory facts, the language, the ticket a follow-up belongs to) is looked
up before the rules run and handed over in one ``Facts`` value. That keeps evaluation fast and lets
``omnidesk route explain`` and ``rules replay`` re-run rules on stored messages with the same facts.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

__all__ = ["EVENTS", "HISTORY_FACTS", "TICKET_FIELDS", "Facts"]

EVENTS = ("new_ticket", "follow_up", "sla_breach", "status_changed")

# Facts the router computes for every contact from the store, across all channels.
HISTORY_FACTS = ("open_tickets", "past_tickets", "channels", "last_outcome", "last_ticket")

# What a follow-up (or SLA breach, or status change) tells about the ticket it belongs to;
# ``previous_status`` is set for status_changed (the status it left).
TICKET_FIELDS = ("status", "priority", "queue", "ref", "previous_status")

_EMPTY: Mapping[str, Any] = MappingProxyType({})


def _utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass(frozen=True, kw_only=True)
class Facts:
    """What the rules may test beyond the envelope.

    ``customer`` holds directory facts (``tier``, ``name``, ... from the rules file's
    ``customers:``) and history (``open_tickets``, ``past_tickets``, ``channels``,
    ``last_outcome``); ``ticket`` is set for follow-ups: ``status``, ``priority``, ``queue``,
    ``ref``.
    """

    event: str = "new_ticket"
    now: dt.datetime = field(default_factory=_utc_now)  # for business_hours
    language: str | None = None  # ISO 639-1, detected or given by the channel
    customer: Mapping[str, Any] = field(default_factory=lambda: _EMPTY)
    ticket: Mapping[str, Any] | None = None

    def __post_init__(self) -> None:
        if self.event not in EVENTS:
            raise ValueError(f"event must be one of {', '.join(EVENTS)}, not {self.event!r}")
        if self.now.tzinfo is None:
            # A naive time would be read in the server's zone by some code and as UTC by other
            # code; the contract is UTC, so say so explicitly.
            object.__setattr__(self, "now", self.now.replace(tzinfo=dt.UTC))

    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly copy, for decision records and ``route explain``."""
        return {
            "event": self.event,
            "now": self.now.isoformat(),
            "language": self.language,
            "customer": {k: _plain(v) for k, v in self.customer.items()},
            "ticket": None
            if self.ticket is None
            else {k: _plain(v) for k, v in self.ticket.items()},
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Facts:
        """The inverse of ``to_dict``, for re-running rules on stored messages (replay)."""
        now = data.get("now")
        return cls(
            event=str(data.get("event") or "new_ticket"),
            now=dt.datetime.fromisoformat(now) if isinstance(now, str) else _utc_now(),
            language=data.get("language"),
            customer=dict(data.get("customer") or {}),
            ticket=None if data.get("ticket") is None else dict(data["ticket"]),
        )


def _plain(value: Any) -> Any:
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_plain(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, (dt.date, dt.datetime)):
        return value.isoformat()
    return str(value)
