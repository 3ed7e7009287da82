"""Errors of the after-route work.

    WorkerError
    └── DeliveryError              an outbound message could not be handed to its provider
        ├── TemporaryDeliveryError     try again later (connection refused, 4xx, timeout)
        └── PermanentDeliveryError     never retry (5xx, invalid recipient, rejected content)
"""

from __future__ import annotations

__all__ = ["DeliveryError", "PermanentDeliveryError", "TemporaryDeliveryError", "WorkerError"]


class WorkerError(Exception):
    """Base of every worker error."""


class DeliveryError(WorkerError):
    pass


class TemporaryDeliveryError(DeliveryError):
    pass


class PermanentDeliveryError(DeliveryError):
    pass
