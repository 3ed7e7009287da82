"""Errors raised at the intake edge.

    IntakeError
    ├── IntakeUnavailable      the intake log could not commit: tell the source to retry later
    ├── RejectedMessage        the source sent something we will never accept (too large, bad signature)
    │   └── MessageTooLarge
    ├── UnparseableMessage     the payload cannot become an Envelope: quarantine it with the reason
    └── BlobNotFound           a blob reference points at nothing

Adapters map these to their protocol: SMTP 451/552/550, HTTP 503/413/401, IMAP "leave untouched".
"""

from __future__ import annotations

__all__ = [
    "BlobNotFound",
    "IntakeError",
    "IntakeUnavailable",
    "MessageTooLarge",
    "RejectedMessage",
    "UnparseableMessage",
]


class IntakeError(Exception):
    """Base of every intake error."""


class IntakeUnavailable(IntakeError):
    """The message was not stored (database or blob store down); the source must retry."""


class RejectedMessage(IntakeError):
    """The message is refused for good; the source should not retry it."""


class MessageTooLarge(RejectedMessage):
    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"message of {size} bytes exceeds the limit of {limit} bytes")
        self.size = size
        self.limit = limit


class UnparseableMessage(IntakeError):
    """The payload cannot be turned into an Envelope; ``reason`` says why (kept in quarantine)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class BlobNotFound(IntakeError):
    def __init__(self, sha256: str) -> None:
        super().__init__(f"no blob {sha256}")
        self.sha256 = sha256
