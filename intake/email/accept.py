"""One email, whichever transport brought it (SMTP, IMAP): parse it and log it, or quarantine it."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from intake.email.parse import ParseLimits, parse_email
from intake.errors import IntakeUnavailable, UnparseableMessage
from intake.log import Accepted, IntakeLog

__all__ = ["accept_email"]


def accept_email(
    intake_log: IntakeLog,
    raw: bytes,
    *,
    recipients: Sequence[str],
    received_at: datetime,
    source: str,
    ticket_prefix: str,
    limits: ParseLimits | None = None,
) -> Accepted:
    """Durably store one email. Unparseable mail is quarantined, not refused: its raw bytes are
    kept for ``omnidesk quarantine replay``, and the messages behind it flow on."""
    try:
        envelope = parse_email(
            raw,
            blobs=intake_log.blobs,
            received_at=received_at,
            recipients=recipients,
            ticket_prefix=ticket_prefix,
            limits=limits or ParseLimits(),
        )
    except UnparseableMessage as exc:
        return intake_log.quarantine(
            raw, channel="email", reason=exc.reason, received_at=received_at, source=source
        )
    except OSError as exc:  # the blob store refused an attachment
        raise IntakeUnavailable(f"could not store attachments: {exc}") from exc
    return intake_log.accept(envelope, raw, source=source)
