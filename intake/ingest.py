"""The one way in: parse a payload with its channel's adapter and log it, or quarantine it.

Every edge (SMTP, the IMAP pollers, each webhook) calls ``ingest`` and answers its source from the
outcome: a returned ``Accepted`` (new, duplicate or quarantined) means the payload is durable and
may be acknowledged; ``IntakeUnavailable`` means nothing was stored and the source must retry.
Unparseable input is quarantined, not refused: its raw bytes are kept for ``quarantine replay``,
and the messages behind it flow on.
"""

from __future__ import annotations

from intake.adapter import Payload
from intake.errors import IntakeUnavailable, UnparseableMessage
from intake.log import Accepted, IntakeLog
from intake.registry import Registry

__all__ = ["ingest"]


def ingest(log: IntakeLog, registry: Registry, payload: Payload) -> Accepted:
    try:
        envelope = registry.parse(payload)
    except UnparseableMessage as exc:
        return log.quarantine(
            payload.raw,
            channel=payload.channel,
            reason=exc.reason,
            received_at=payload.received_at,
            source=payload.source,
            meta=dict(payload.meta),
        )
    except OSError as exc:  # the blob store refused an attachment
        raise IntakeUnavailable(f"could not store attachments: {exc}") from exc
    return log.accept(envelope, payload.raw, source=payload.source, meta=dict(payload.meta))
