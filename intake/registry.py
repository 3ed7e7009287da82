"""The registry of channel adapters: found once, asked by everything that is per channel.

Adapters are found in every ``intake.<package>.channel`` module that defines ``ADAPTER`` (the
shipped channels), and in the ``omnidesk.channels`` entry-point group (channels installed as
separate distributions). ``omnidesk run`` and the Procfile processes, ``--without``,
``channels check``, the HTTP app, the router's composer, quarantine replay and ``route explain``
all ask the registry; none of them names a channel.
"""

from __future__ import annotations

import importlib
import logging
import pkgutil
from collections.abc import Callable, Iterator, Mapping
from functools import cache
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any, cast

import intake
from intake.adapter import Adapter, AdapterContext, Identities, Payload, PayloadSummary, Runner
from intake.envelope import Envelope
from intake.errors import UnparseableMessage
from intake.outbound import Draft, OutboundIntent

if TYPE_CHECKING:
    from fastapi import APIRouter

    from config.settings import Settings
    from intake.blobs import BlobStore
    from intake.channels import ChannelsConfig
    from intake.log import Accepted
    from tickets.db import Database

__all__ = ["Registry", "adapter_classes"]

log = logging.getLogger(__name__)


@cache
def adapter_classes() -> tuple[type[Adapter], ...]:
    """Every adapter class installed, shipped ones first, in package-name order."""
    found: dict[str, type[Adapter]] = {}
    for info in sorted(pkgutil.iter_modules(intake.__path__), key=lambda m: m.name):
        if not info.ispkg:
            continue
        try:
            module = importlib.import_module(f"intake.{info.name}.channel")
        except ModuleNotFoundError as exc:
            if exc.name == f"intake.{info.name}.channel":
                continue  # a helper package, not a channel
            raise
        cls = getattr(module, "ADAPTER", None)
        if isinstance(cls, type) and issubclass(cls, Adapter):
            found[cls.name] = cls
    for point in entry_points(group="omnidesk.channels"):
        cls = point.load()
        if isinstance(cls, type) and issubclass(cls, Adapter) and cls.name not in found:
            found[cls.name] = cls
    return tuple(found.values())


class _NotOpened:
    """Stands in for the store in a configuration-only registry: any use says what is wrong."""

    def __init__(self, what: str) -> None:
        self._what = what

    def __getattr__(self, name: str) -> Any:
        raise RuntimeError(
            f"no {self._what} here: this adapter was built to read its configuration only "
            f"(channels check); reading or writing the {self._what} belongs in a runner"
        )

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.__getattr__("__call__")


class Registry:
    """The adapters of one process, built with their context."""

    def __init__(self, adapters: Mapping[str, Adapter]) -> None:
        self.adapters = dict(adapters)
        self._by_channel: dict[str, Adapter] = {}
        for adapter in self.adapters.values():
            for channel in adapter.channels:
                self._by_channel.setdefault(channel, adapter)
            # An edge where staff act composes through every channel (see AdapterContext.composer).
            ctx = getattr(adapter, "ctx", None)
            if isinstance(ctx, AdapterContext) and ctx.composer is None:
                ctx.composer = self

    @classmethod
    def build(
        cls, context: Callable[[type[Adapter]], AdapterContext], *, only: tuple[str, ...] | None = None
    ) -> Registry:
        """One instance of every adapter class (or of those named in ``only``)."""
        adapters = {}
        for adapter_cls in adapter_classes():
            if only is not None and adapter_cls.name not in only:
                continue
            adapters[adapter_cls.name] = adapter_cls(context(adapter_cls))
        return cls(adapters)

    @classmethod
    def offline(cls, settings: Any, db: Any, blobs: Any) -> Registry:
        """Adapters for parsing and composing only (explain, benchmarks): they ingest nothing."""

        def no_ingest(payload: Payload) -> Any:
            raise RuntimeError("this registry parses and composes only; it stores nothing")

        return cls.build(lambda _cls: AdapterContext(settings, db, blobs, ingest=no_ingest))

    @classmethod
    def configuration_only(cls, settings: Settings, sections: ChannelsConfig) -> Registry:
        """Adapters that see only their settings and channels-file section (``channels check``).

        They get no store: the check must run where the database is not reachable (a deploy
        step, a laptop), and probing must never write. Using one says so instead of connecting.
        """

        def context(adapter_cls: type[Adapter]) -> AdapterContext:
            name = adapter_cls.section
            return AdapterContext(
                settings,
                cast("Database", _NotOpened("database")),
                cast("BlobStore", _NotOpened("blob store")),
                ingest=cast("Callable[[Payload], Accepted]", _NotOpened("intake log")),
                load_section=lambda: sections.section(name) if name else None,
            )

        return cls.build(context)

    def __iter__(self) -> Iterator[Adapter]:
        return iter(self.adapters.values())

    def names(self) -> tuple[str, ...]:
        return tuple(self.adapters)

    def channels(self) -> tuple[str, ...]:
        return tuple(self._by_channel)

    def for_channel(self, channel: str) -> Adapter:
        try:
            return self._by_channel[channel]
        except KeyError:
            raise LookupError(
                f"no adapter for channel {channel!r}; installed: {', '.join(self._by_channel) or 'none'}"
            ) from None

    # --- intake -------------------------------------------------------------------------------
    def parse(self, payload: Payload) -> Envelope:
        try:
            adapter = self.for_channel(payload.channel)
        except LookupError as exc:
            raise UnparseableMessage(str(exc)) from None
        return adapter.parse(payload)

    def describe(self, payload: Payload) -> PayloadSummary:
        """Best effort: a summary never fails, it is only emptier."""
        try:
            return self.for_channel(payload.channel).describe(payload)
        except Exception:  # describing a broken payload must not break the listing
            log.debug("could not describe a %s payload", payload.channel, exc_info=True)
            return PayloadSummary()

    def identities(self) -> Identities:
        out = Identities()
        for adapter in self:
            out = out | adapter.identities()
        return out

    def components(self) -> dict[str, Runner]:
        """Runner by component name (``smtp``, ``imap``, ...), across adapters."""
        out: dict[str, Runner] = {}
        for adapter in self:
            for name, runner in adapter.runners().items():
                if name in out:
                    raise ValueError(f"two adapters offer the component {name!r}")
                out[name] = runner
        return out

    def http_routers(self) -> list[tuple[str, APIRouter]]:
        routers = []
        for adapter in self:
            router = adapter.http_router()
            if router is not None:
                routers.append((adapter.name, router))
        return routers

    # --- outbound -------------------------------------------------------------------------------
    def reply_channel(self, envelope: Envelope) -> str:
        try:
            return self.for_channel(envelope.channel).reply_channel(envelope)
        except LookupError:
            return envelope.channel

    def compose(self, intent: OutboundIntent, *, channel: str) -> Draft:
        """The draft of ``intent`` on ``channel``; ``LookupError`` when no adapter can compose it."""
        draft = self.for_channel(channel).compose(intent)
        if draft is None:
            raise LookupError(f"the {channel} channel cannot send a {intent.kind} to {intent.to.identity}")
        return draft

    def watchers(self, *, queue: str, event: str) -> tuple[str, ...]:
        """Every adapter's staff targets for ``event`` on ``queue`` (see ``Adapter.watchers``)."""
        return tuple(dict.fromkeys(t for adapter in self for t in adapter.watchers(queue=queue, event=event)))

    def channel_for_party(self, kind: str) -> str | None:
        """The channel that reaches an address of this kind when nothing else says (staff mail)."""
        for channel in self._by_channel:
            if channel == kind:
                return channel
        return None

    def acknowledgement(self, channel: str, *, ref: str, customer_name: str, subject: str) -> tuple[str, str]:
        try:
            adapter = self.for_channel(channel)
        except LookupError:
            adapter = Adapter(None)  # type: ignore[arg-type]
        return adapter.acknowledgement(ref=ref, customer_name=customer_name, subject=subject)
