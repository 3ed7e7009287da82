"""route(intake_id): one logged message becomes a ticket change, in one transaction.

The steps, all inside one ``Database.write_connection()`` transaction:

1. claim the intake row (``pending`` → ``routed``); if it is not pending, someone routed it
   already and nothing happens — routing the same row twice changes nothing;
2. ``look_up`` (reads only): the thread match, the ticket, the contact, the facts, the
   auto-reply count (``routing.situation``);
3. ``decide`` (pure): follow-up or new ticket, rules, acknowledgement or why not
   (``routing.decide``) — the same function ``route explain`` and ``rules replay`` call;
4. ``apply`` (writes): the ticket, its thread keys, the timeline, the outbox rows composed by the
   channel's adapter (``routing.apply``);
5. commit. Two workers racing on one new conversation collide on a thread key (or the contact's
   identity); the loser's transaction rolls back whole and is retried, and then finds the
   winner's ticket.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import Connection, bindparam, update
from sqlalchemy.exc import IntegrityError, OperationalError

from config.settings import Settings
from intake.adapter import Identities
from intake.envelope import load_envelope
from routing.apply import Composer, Context, ThreadKeyTaken, apply_decision
from routing.decide import Policy, decide
from routing.decision import Decision
from routing.situation import look_up
from tickets.db import Database
from tickets.models import IntakeRow, IntakeState, table_of, utcnow

if TYPE_CHECKING:
    from routing.rules import RuleSet

__all__ = ["Routed", "Router"]

log = logging.getLogger(__name__)

_intake = table_of(IntakeRow)
_CLAIM = (
    update(_intake)
    .where(_intake.c.id == bindparam("iid"), _intake.c.state == IntakeState.PENDING.value)
    .values(state=IntakeState.ROUTED.value, routed_at=bindparam("now"))
    .returning(_intake.c.envelope)
)


@dataclass(frozen=True)
class Routed:
    intake_id: int
    ticket_id: int
    ticket_ref: str
    decision: Decision
    new_ticket: bool
    outbox_ids: tuple[int, ...] = ()


@dataclass
class Router:
    db: Database
    settings: Settings
    composer: Composer
    rules: Callable[[], RuleSet | None] = lambda: None
    identities: Callable[[], Identities] = Identities
    clock: Callable[[], datetime] = utcnow
    max_attempts: int = 8
    _policy: Policy = field(init=False)

    def __post_init__(self) -> None:
        self._policy = Policy(auto_reply_limit_per_hour=self.settings.auto_reply_limit_per_hour,
                              closed_ticket_reply=self.settings.closed_ticket_reply,
                              conversation_reopen_days=self.settings.conversation_reopen_days)

    def route(self, intake_id: int) -> Routed | None:
        """Route one intake row. None when it was already routed or is quarantined."""
        for attempt in range(1, self.max_attempts + 1):
            try:
                with self.db.write_connection() as conn:
                    return self._route_once(conn, intake_id)
            except (ThreadKeyTaken, IntegrityError) as exc:
                log.debug("intake %s: retrying after a race (%s), attempt %d", intake_id, exc, attempt)
            except OperationalError as exc:
                # PostgreSQL serialisation/deadlock errors are transient; anything else is not.
                if "deadlock" not in str(exc).lower() and "could not serialize" not in str(exc).lower():
                    raise
                log.debug("intake %s: retrying after %s", intake_id, exc)
        raise RuntimeError(f"intake {intake_id}: gave up after {self.max_attempts} racing attempts")

    def _route_once(self, conn: Connection, intake_id: int) -> Routed | None:
        now = self.clock()
        claimed = conn.execute(_CLAIM, {"iid": intake_id, "now": now}).first()
        if claimed is None or claimed[0] is None:
            return None
        envelope = load_envelope(claimed[0])
        ruleset = self.rules()
        situation = look_up(
            conn, envelope, ruleset, now=now,
            foreign_token_policy=self.settings.foreign_token_policy,
            ours=self.identities().owns(envelope.sender),
        )
        decision = decide(envelope, situation, ruleset, self._policy)
        applied = apply_decision(
            conn,
            Context(ticket_prefix=self.settings.ticket_prefix, composer=self.composer, ruleset=ruleset),
            intake_id=intake_id,
            envelope=envelope,
            situation=situation,
            decision=decision,
        )
        return Routed(intake_id, applied.ticket_id, applied.ticket_ref, decision,
                      new_ticket=applied.new_ticket, outbox_ids=applied.outbox_ids)
