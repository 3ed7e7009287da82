"""What every API route may use: the store, the settings, the channels' composer, the rules."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from fastapi import Request

from config.settings import Settings
from intake.blobs import BlobStore
from tickets.db import Database

if TYPE_CHECKING:
    from routing.rules import RuleSet
    from tickets.replies import ReplyComposer

__all__ = ["ApiContext", "api_context"]


@dataclass(frozen=True)
class ApiContext:
    db: Database
    settings: Settings
    blobs: BlobStore
    composer: ReplyComposer
    rules: Callable[[], RuleSet | None]
    # Called with the outbox ids a request wrote, after its commit (enqueue their delivery).
    on_outbox: Callable[[tuple[int, ...]], Any] = lambda ids: None


def api_context(request: Request) -> ApiContext:
    ctx: ApiContext = request.app.state.api_context
    return ctx
