"""Business-hours calendars: is a given instant inside a calendar's working time?"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from dataclasses import dataclass

from routing.rules.schema import WEEKDAYS, CalendarSpec, parse_hours

__all__ = ["Calendar"]


@dataclass(frozen=True)
class Calendar:
    name: str
    zone: zoneinfo.ZoneInfo
    days: frozenset[int]  # 0 = Monday, as datetime.weekday()
    ranges: tuple[tuple[int, int], ...]  # minutes since local midnight, [start, end)
    holidays: frozenset[dt.date]

    @classmethod
    def from_spec(cls, name: str, spec: CalendarSpec) -> Calendar:
        return cls(
            name=name,
            zone=zoneinfo.ZoneInfo(spec.timezone),
            days=frozenset(WEEKDAYS.index(d) for d in spec.days),
            ranges=parse_hours(spec.hours),
            holidays=frozenset(spec.holidays),
        )

    def is_open(self, when: dt.datetime) -> bool:
        """True when ``when`` (naive means UTC) falls in working hours of a working day."""
        if when.tzinfo is None:
            when = when.replace(tzinfo=dt.UTC)
        local = when.astimezone(self.zone)
        if local.weekday() not in self.days or local.date() in self.holidays:
            return False
        minute = local.hour * 60 + local.minute
        return any(start <= minute < end for start, end in self.ranges)
