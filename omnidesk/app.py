"""The wiring: one ``App`` builds every part of the pipeline from the settings.

Every process (``omnidesk run``, ``smtp``, ``worker``, ``web``, ``scheduler``) and every test
builds an App and uses the parts it needs; nothing below this package reads settings itself.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import dramatiq

import config
from config.settings import Settings
from intake.blobs import FileBlobStore
from intake.email.accept import accept_email
from intake.email.parse import ParseLimits
from intake.log import Accepted, IntakeLog
from routing.router import Router
from tickets.db import Database
from tickets.migrate import upgrade
from workers.actors import Actors, declare_actors
from workers.broker import build_broker, build_worker
from workers.outbox import OutboxDispatcher, Sender
from workers.senders import email_sender_from_url
from workers.sweeper import Sweeper

if TYPE_CHECKING:
    from routing.rules import RuleSet
    from routing.rules.reload import RulesHolder

__all__ = ["App", "rules_path"]

log = logging.getLogger(__name__)

# A message whose routing fails this many times is quarantined instead of retried forever.
ROUTE_ATTEMPTS_BEFORE_QUARANTINE = 5
_PACKAGED_RULES = Path(config.__file__).resolve().parent / "routing.yaml"


def rules_path(settings: Settings) -> Path:
    """The rules file to use: the setting, or the packaged default when the default is absent."""
    path = settings.rules_file
    if not path.exists() and path == Settings.model_fields["rules_file"].default:
        return _PACKAGED_RULES
    return path


class App:
    def __init__(
        self,
        settings: Settings,
        *,
        broker: dramatiq.Broker | None = None,
        senders: Mapping[str, Sender] | None = None,
        load_rules: bool = True,
    ) -> None:
        self.settings = settings
        self.db = Database(settings.effective_database_url)
        self.blobs = FileBlobStore(settings.blob_dir)
        self.rules_holder: RulesHolder | None = self._rules_holder() if load_rules else None
        self.router = Router(self.db, settings, rules=self.current_rules)
        self.broker = broker or build_broker(settings)
        if senders is None:
            senders = {
                "email": email_sender_from_url(
                    settings.outbound_smtp_url.get_secret_value(), settings.data_dir, self.blobs
                )
            }
        self.dispatcher = OutboxDispatcher(
            self.db, senders, max_attempts=settings.delivery_max_attempts
        )
        self.actors: Actors = declare_actors(self.broker, route=self.route_job, deliver=self.dispatcher.deliver)
        self._limits = self.parse_limits
        self.intake_log = IntakeLog(self.db, self.blobs, on_logged=self.actors.route_message.send)  # type: ignore[arg-type]
        self.sweeper = Sweeper(
            self.intake_log,
            self.dispatcher,
            enqueue_route=self.actors.route_message.send,
            enqueue_deliver=self.actors.deliver_outbox.send,
            grace=timedelta(seconds=settings.sweep_grace_seconds),
        )

    # --- rules -----------------------------------------------------------------------------
    def _rules_holder(self) -> "RulesHolder":
        from routing.rules.reload import RulesHolder

        return RulesHolder(rules_path(self.settings))

    def current_rules(self) -> "RuleSet | None":
        return self.rules_holder.current if self.rules_holder is not None else None

    # --- the pipeline's plain functions ---------------------------------------------------------
    def migrate(self) -> None:
        upgrade(self.db)

    @property
    def parse_limits(self) -> ParseLimits:
        s = self.settings
        return ParseLimits(
            max_bytes=s.max_message_bytes,
            max_depth=s.mime_max_depth,
            max_parts=s.mime_max_parts,
            max_header_bytes=s.mime_max_header_bytes,
        )

    def accept_email(
        self, raw: bytes, recipients: list[str], received_at: datetime, *, source: str = "smtp"
    ) -> Accepted:
        return accept_email(
            self.intake_log,
            raw,
            recipients=recipients,
            received_at=received_at,
            source=source,
            ticket_prefix=self.settings.ticket_prefix,
            limits=self._limits,
        )

    def route_job(self, intake_id: int) -> tuple[int, ...]:
        """Route one row; count failures so a poisoned message ends in quarantine."""
        try:
            routed = self.router.route(intake_id)
        except Exception as exc:
            quarantined = self.intake_log.record_failure(
                intake_id, f"{exc.__class__.__name__}: {exc}", quarantine_after=ROUTE_ATTEMPTS_BEFORE_QUARANTINE
            )
            if quarantined:
                return ()
            raise
        return routed.outbox_ids if routed else ()

    def worker(self) -> dramatiq.Worker:
        return build_worker(self.broker, self.settings)

    def close(self) -> None:
        try:
            self.broker.close()
        finally:
            self.db.dispose()
