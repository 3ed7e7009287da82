"""Quarantine: messages that could not be parsed or routed, kept whole for a replay.

``replay`` runs a quarantined row through intake again (after a fix, a raised limit or a rules
change): a payload that never became an envelope is parsed again from its raw bytes and the
transport facts stored with it, by its channel's adapter (the same ``parse`` intake used); one
that failed routing is simply routed again. ``describe`` says whose a stuck payload is.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from intake.adapter import Payload
from intake.errors import BlobNotFound, UnparseableMessage
from intake.log import IntakeLog
from intake.registry import Registry
from tickets.models import IntakeRow, IntakeState

__all__ = ["ReplayOutcome", "describe_rows", "replay"]


@dataclass(frozen=True)
class ReplayOutcome:
    intake_id: int
    outcome: str  # requeued | still-unparseable | duplicate | not-quarantined | missing
    detail: str = ""


def _payload(row: IntakeRow, raw: bytes) -> Payload:
    return Payload(channel=row.channel, raw=raw, received_at=row.received_at, source=row.source,
                   meta=dict(row.meta or {}))


def replay(
    intake_log: IntakeLog,
    intake_id: int,
    *,
    registry: Registry,
    enqueue: Callable[[int], object],
) -> ReplayOutcome:
    db = intake_log.db
    with db.read() as session:
        row = session.get(IntakeRow, intake_id)
        if row is None:
            return ReplayOutcome(intake_id, "missing")
        if row.state != IntakeState.QUARANTINED.value:
            return ReplayOutcome(intake_id, "not-quarantined", row.state)
        channel, envelope_json, raw_sha = row.channel, row.envelope, row.raw_sha256
        payload = _payload(row, b"") if envelope_json is None else None

    values: dict[str, object] = {"state": IntakeState.PENDING.value, "attempts": 0, "error": None}
    if envelope_json is None:
        if raw_sha is None or payload is None:
            return ReplayOutcome(intake_id, "still-unparseable", "the raw payload was not kept")
        try:
            raw = intake_log.blobs.get(raw_sha)
        except BlobNotFound:
            return ReplayOutcome(intake_id, "still-unparseable", f"raw payload {raw_sha} is missing")
        try:
            envelope = registry.parse(Payload(channel, raw, payload.received_at, payload.source, payload.meta))
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


def describe_rows(rows: list[dict[str, Any]], *, registry: Registry, blobs: Any) -> list[dict[str, Any]]:
    """Each quarantine listing row with who sent it, its subject and its reference, best effort:
    from the envelope when one was made, else from the raw payload by its adapter."""
    out = []
    for row in rows:
        found = {"sender": "", "subject": "", "reference": ""}
        envelope = row.pop("envelope", None)
        if envelope:
            sender = envelope.get("sender") or {}
            found = {"sender": sender.get("address", ""), "subject": envelope.get("subject", ""),
                     "reference": envelope.get("external_id", "")}
        elif row.get("raw_sha256"):
            try:
                raw = blobs.get(row["raw_sha256"])
            except Exception:
                raw = b""
            if raw:
                from datetime import datetime, timezone

                summary = registry.describe(Payload(
                    channel=row["channel"], raw=raw, received_at=datetime.now(timezone.utc),
                    source=row.get("source", ""), meta=row.get("meta") or {},
                ))
                found = {"sender": summary.sender, "subject": summary.subject, "reference": summary.reference}
        row.pop("meta", None)
        out.append({**row, **found})
    return out
