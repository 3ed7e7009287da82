"""The wiring: one ``App`` builds every part of the pipeline from the settings.

Every process (``omnidesk run``, ``smtp``, ``worker``, ``web``, ``scheduler``, ``imap``) and every
test builds an App and uses the parts it needs; nothing below this package reads settings itself.
The channels come from the adapter registry (``intake.registry``): the App hands each adapter an
``AdapterContext`` and knows no channel by name.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime, timedelta
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import dramatiq

import config
from config.settings import Settings
from intake.adapter import Adapter, AdapterContext, Identities, Payload
from intake.blobs import FileBlobStore
from intake.channels import ChannelsConfig, configured_channels
from intake.ingest import ingest
from intake.log import Accepted, IntakeLog
from intake.registry import Registry
from routing.router import Router
from tickets.db import Database
from tickets.migrate import upgrade
from workers.actors import Actors, declare_actors
from workers.broker import build_broker, build_worker
from workers.heartbeat import Heartbeat
from workers.outbox import OutboxDispatcher, Sender
from workers.senders import build_senders
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
        channels: ChannelsConfig | None = None,
    ) -> None:
        self.settings = settings
        self.db = Database(settings.effective_database_url)
        self.blobs = FileBlobStore(settings.blob_dir)
        self._channels = channels
        self.rules_holder: RulesHolder | None = self._rules_holder() if load_rules else None
        self.registry = Registry.build(self._adapter_context)
        self.router = Router(
            self.db, settings, composer=self.registry, rules=self.current_rules, identities=lambda: self.identities
        )
        self.broker = broker or build_broker(settings)
        self.heartbeat = Heartbeat(self.db, interval=max(1.0, settings.process_dead_seconds / 4))
        self.dispatcher = OutboxDispatcher(
            self.db,
            senders if senders is not None else build_senders(settings, self.blobs),
            max_attempts=settings.delivery_max_attempts,
            dead_after=timedelta(seconds=settings.process_dead_seconds),
            process_id=self.heartbeat.id,
        )
        self.actors: Actors = declare_actors(self.broker, route=self.route_job, deliver=self.dispatcher.deliver)
        self.intake_log = IntakeLog(self.db, self.blobs, on_logged=self.actors.route_message.send)  # type: ignore[arg-type]
        self.sweeper = Sweeper(
            self.intake_log,
            self.dispatcher,
            enqueue_route=self.actors.route_message.send,
            enqueue_deliver=self.actors.deliver_outbox.send,
            grace=timedelta(seconds=settings.sweep_grace_seconds),
            chores=(self.close_resolved,),
        )

    # --- channels --------------------------------------------------------------------------
    @property
    def channels(self) -> ChannelsConfig:
        """The channels file, read once (its secrets are checked by the edges that need them)."""
        if self._channels is None:
            self._channels = configured_channels(self.settings, check_env=False)
        return self._channels

    def _adapter_context(self, cls: type[Adapter]) -> AdapterContext:
        section = cls.section

        def load() -> Any:
            return self.channels.section(section) if section else None

        return AdapterContext(self.settings, self.db, self.blobs, ingest=self.ingest, load_section=load,
                              rules=self.current_rules, on_outbox=self._deliver_after_commit)

    def _deliver_after_commit(self, outbox_ids: tuple[int, ...]) -> None:
        for outbox_id in outbox_ids:
            self.actors.deliver_outbox.send(outbox_id)

    @cached_property
    def identities(self) -> Identities:
        """Everything of ours on every channel: a sender among them is never a customer."""
        return self.registry.identities()

    # --- rules -----------------------------------------------------------------------------
    def _rules_holder(self) -> RulesHolder:
        from routing.rules.reload import RulesHolder

        return RulesHolder(rules_path(self.settings))

    def current_rules(self) -> RuleSet | None:
        return self.rules_holder.current if self.rules_holder is not None else None

    # --- the pipeline's plain functions ---------------------------------------------------------
    def migrate(self) -> None:
        upgrade(self.db)

    def ingest(self, payload: Payload) -> Accepted:
        """The one way into the intake log, for every channel's edge."""
        return ingest(self.intake_log, self.registry, payload)

    def accept_email(
        self, raw: bytes, recipients: list[str], received_at: datetime, *, source: str = "smtp"
    ) -> Accepted:
        """One email as the SMTP edge hands it over (tests and benchmarks feed mail this way)."""
        return self.ingest(
            Payload(channel="email", raw=raw, received_at=received_at, source=source,
                    meta={"recipients": list(recipients)})
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

    def close_resolved(self) -> list[str]:
        """Close the tickets resolved longer ago than ``resolved_close_after_hours``."""
        from routing.status_rules import run_status_rules
        from tickets.models import utcnow
        from tickets.work import close_resolved

        after = timedelta(hours=self.settings.resolved_close_after_hours)
        with self.db.write() as session:
            closed = close_resolved(session, now=utcnow(), after=after)
            notified = run_status_rules(session, self.current_rules(), self.registry)
        for outbox_id in notified:
            self.actors.deliver_outbox.send(outbox_id)
        if closed:
            log.info("closed %d resolved tickets: %s", len(closed), ", ".join(closed[:10]))
        return closed

    def worker(self) -> dramatiq.Worker:
        return build_worker(self.broker, self.settings)

    def close(self) -> None:
        try:
            self.broker.close()
        finally:
            self.db.dispose()
