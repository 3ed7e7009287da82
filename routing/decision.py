"""The Decision: what routing decided for one inbound message, and why.

A Decision is a value: computed by pure functions from the envelope and the facts looked up
before, stored beside the ticket message (``omnidesk tickets show --json`` prints it), and compared
by ``omnidesk rules replay``.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict

__all__ = ["Actions", "AppliedRule", "Decision", "DecisionKind", "ThreadMatch"]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class DecisionKind(StrEnum):
    NEW_TICKET = "new_ticket"
    FOLLOW_UP = "follow_up"


class ThreadMatch(_Frozen):
    """Which thread key tied the message to an existing ticket."""

    ticket_ref: str
    # "in-reply-to", "references", "subject-token", "conversation"
    via: str
    key: str


class Actions(_Frozen):
    """The merged effect of the rules that matched (None = not set by any rule)."""

    queue: str | None = None
    priority: str | None = None
    category: str | None = None
    tags: tuple[str, ...] = ()
    # an agent's address, "round_robin" or "least_loaded"
    assign: str | None = None
    sla: str | None = None
    # template name; False = no auto-reply; None = the default acknowledgement
    auto_reply: str | bool | None = None
    notify: tuple[str, ...] = ()
    spam: bool = False
    status: str | None = None  # follow-up rules may reopen or escalate

    def merged(self, other: "Actions") -> "Actions":
        """``other`` applied on top of this: later rules override scalars, tags accumulate."""
        data = self.model_dump()
        for key, value in other.model_dump().items():
            if key in {"tags", "notify"}:
                data[key] = tuple(dict.fromkeys((*data[key], *value)))
            elif key == "spam":
                data[key] = data[key] or value
            elif value is not None:
                data[key] = value
        return Actions(**data)


class AppliedRule(_Frozen):
    name: str
    actions: dict[str, Any]


class Decision(_Frozen):
    kind: DecisionKind
    event: str = "new_ticket"  # the rule event evaluated: new_ticket | follow_up
    thread: ThreadMatch | None = None
    rules: tuple[AppliedRule, ...] = ()
    actions: Actions = Actions()
    # Why no acknowledgement was sent, when none was (robot sender, cap reached, rule said no).
    auto_reply_suppressed: str | None = None
    # A new ticket opened because the sender named this ticket without being on it, or wrote on
    # it after it was closed (``follows_closed``: the message's thread keys stay with the old one).
    linked_ticket: str | None = None
    follows_closed: bool = False
    notes: tuple[str, ...] = ()
