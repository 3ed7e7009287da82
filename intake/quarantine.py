"""Quarantine: messages that could not be parsed or routed, kept whole for a replay.

``replay`` runs a quarantined row through intake again (after a fix, a raised limit or a rules
change): a payload that never became an envelope is parsed again from its raw bytes; one that
failed routing is simply routed again.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import select

from intake.email.parse import ParseLimits, parse_email
from intake.errors import UnparseableMessage
from intake.log import IntakeLog
from tickets.models import IntakeRow, IntakeState

__all__ = ["ReplayOutcome", "replay"]


@dataclass(frozen=True)
class ReplayOutcome:
    intake_id: int
    outcome: str  # requeued | still-unparseable | duplicate | not-quarantined | missing
    detail: str = ""


def replay(
    intake_log: IntakeLog,
    intake_id: int,
    *,
    ticket_prefix: str,
    enqueue: Callable[[int], object],
    limits: ParseLimits | None = None,
) -> ReplayOutcome:
    db = intake_log.db
    with db.read() as session:
        row = session.get(IntakeRow, intake_id)
        if row is None:
            return ReplayOutcome(intake_id, "missing")
        if row.state != IntakeState.QUARANTINED.value:
            return ReplayOutcome(intake_id, "not-quarantined", row.state)
        channel, envelope_json, raw_sha, received_at = row.channel, row.envelope, row.raw_sha256, row.received_at

    values: dict[str, object] = {"state": IntakeState.PENDING.value, "attempts": 0, "error": None}
    if envelope_json is None:
        if channel != "email" or raw_sha is None:
            return ReplayOutcome(intake_id, "still-unparseable", f"no parser to replay {channel} payloads")
        raw = intake_log.blobs.get(raw_sha)
        try:
            envelope = parse_email(
                raw,
                blobs=intake_log.blobs,
                received_at=received_at,
                ticket_prefix=ticket_prefix,
                limits=limits or ParseLimits(),
            )
        except UnparseableMessage as exc:
            return ReplayOutcome(intake_id, "still-unparseable", exc.reason)
        values["envelope"] = envelope.model_dump(mode="json")
        values["external_id"] = envelope.external_id
        with db.write() as session:
            clash = session.execute(
                select(IntakeRow.id).where(
                    IntakeRow.channel == channel,
                    IntakeRow.external_id == envelope.external_id,
                    IntakeRow.id != intake_id,
                )
            ).scalar_one_or_none()
            row = session.get(IntakeRow, intake_id)
            assert row is not None
            if clash is not None:
                row.state = IntakeState.ROUTED.value
                row.error = f"replayed: duplicate of intake {clash}"
                return ReplayOutcome(intake_id, "duplicate", f"same message as intake {clash}")
            for key, value in values.items():
                setattr(row, key, value)
    else:
        with db.write() as session:
            row = session.get(IntakeRow, intake_id)
            assert row is not None
            for key, value in values.items():
                setattr(row, key, value)
    enqueue(intake_id)
    return ReplayOutcome(intake_id, "requeued")
