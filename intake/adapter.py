"""The channel contract: one shape every channel implements, each hook a no-op until it needs one.

Like Dramatiq's ``Middleware`` (or Zammad's channel drivers), an ``Adapter`` is a class with hooks
that the core calls at fixed points; a channel overrides the ones it has:

    parse(payload)        raw payload -> Envelope. The one function used by intake, quarantine
                          replay and ``route explain``, so a stored payload can always be parsed again.
    describe(payload)     best-effort who/what/id of a payload that could not be parsed (quarantine).
    http_router()         the FastAPI router mounted under ``/intake/<name>/`` by the web process.
    runners()             long-running edges by component name (``smtp``, ``imap``), for
                          ``omnidesk run``, the Procfile processes and ``--without``.
    identities()          the addresses, numbers and bot ids that are ours: never a customer.
    section / settings    its section of the channels file, a strict pydantic model.
    check_section(...)    what the model alone cannot check (duplicates, secrets in the environment).
    probe(connect=...)    ``omnidesk channels check``: its accounts (mailboxes, forms), each OK
                          or FAILED with one line; with ``connect`` it logs in to test them.
    reply_channel(env)    which channel answers a message of this one (a web form is answered by email).
    compose(intent)       an ``OutboundIntent`` -> the channel's ``Draft``, inside the routing transaction.
    acknowledgement(...)  the default acknowledgement text for this channel ("reply to this email").
    watchers(queue, ev)   staff targets (``slack:C0123``) told about every new ticket or customer
                          follow-up on a queue: a team channel that sees its queue's traffic.

Senders live in ``workers/senders/`` (one module per channel); they are found the same way.
Adapters are found by ``intake.registry`` in every ``intake.<package>.channel`` module: adding a
channel is a new package, and the router, the intake log, the outbox and the CLI do not change.
An adapter never imports the process wiring (``omnidesk``): what it needs comes in its
``AdapterContext``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar

from intake.envelope import Envelope, Party
from intake.outbound import Draft, OutboundIntent

if TYPE_CHECKING:
    from fastapi import APIRouter

    from config.issues import Issue
    from config.settings import Settings
    from config.yamlpos import YamlDocument
    from intake.blobs import BlobStore
    from intake.log import Accepted
    from tickets.db import Database

__all__ = [
    "AccountCheck",
    "Adapter",
    "AdapterContext",
    "ChannelReport",
    "Identities",
    "Payload",
    "PayloadSummary",
    "Runner",
    "Stopper",
]

Stopper = Callable[[], None]
# A runner starts an edge (a server, pollers) and returns how to stop it, or None when it has
# nothing to run with this configuration.
Runner = Callable[[threading.Event], "Stopper | None"]


@dataclass(frozen=True)
class Payload:
    """What an edge received, exactly as it is stored for parsing and replay.

    ``raw``: the bytes (a mail; a webhook's body). ``meta``: the few facts of the transport the
    bytes alone do not carry and parsing needs (SMTP RCPT TO, an HTTP content type), stored with
    the intake row so a replay parses the same way.
    """

    channel: str
    raw: bytes
    received_at: datetime
    source: str = ""
    meta: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class PayloadSummary:
    """Whose a stuck payload is, as far as can be told without parsing it fully."""

    sender: str = ""
    subject: str = ""
    reference: str = ""  # Message-ID, MessageSid, submission id, ...


@dataclass(frozen=True)
class Identities:
    """What is ours on a channel: identities (``email:support@example.com``) and email domains."""

    identities: frozenset[str] = frozenset()
    domains: frozenset[str] = frozenset()

    def owns(self, party: Party) -> bool:
        if party.identity in self.identities:
            return True
        if party.kind == "email" and self.domains:
            return party.address.rpartition("@")[2].lower() in self.domains
        return False

    def __or__(self, other: Identities) -> Identities:
        return Identities(self.identities | other.identities, self.domains | other.domains)


@dataclass(frozen=True)
class AccountCheck:
    """One configured account of a channel (a mailbox, a form) as ``channels check`` shows it.

    ``text`` is the one line after its name and OK/FAILED; ``details`` its JSON form besides
    ``name`` and ``ok``. A failure's text says what is wrong and what to change.
    """

    name: str
    ok: bool
    text: str
    details: Mapping[str, Any] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return {"name": self.name, "ok": self.ok, **self.details}


@dataclass(frozen=True)
class ChannelReport:
    """What one adapter's ``probe`` found: its accounts under one heading.

    ``key`` is the heading's JSON key (``mailboxes``, ``forms``); ``kind`` names one account and
    several (``("IMAP mailbox", "IMAP mailboxes")``) for the text report.
    """

    key: str
    kind: tuple[str, str]
    accounts: tuple[AccountCheck, ...] = ()

    @property
    def failed(self) -> int:
        return sum(1 for account in self.accounts if not account.ok)

    def heading(self) -> str:
        count = len(self.accounts)
        return f"{count} {self.kind[0] if count == 1 else self.kind[1]}"


@dataclass
class AdapterContext:
    """Everything an adapter may use, built by the process wiring from the settings."""

    settings: Settings
    db: Database
    blobs: BlobStore
    # ``ingest(payload)``: parse with the payload's adapter and log it, or quarantine it.
    # Raises ``IntakeUnavailable`` when it could not be stored; only then may the edge say "retry".
    ingest: Callable[[Payload], Accepted]
    # Reads this adapter's section of the channels file (validated; None or empty when the file
    # has none). Read when first needed: a process that never starts the channel's edge (a
    # worker) does not need its secrets in the environment.
    load_section: Callable[[], Any] = lambda: None
    # For edges where staff act on tickets (a Slack thread reply, a button press), so they take
    # the agent API's path: the registry's outbound side (``reply_channel``/``compose``/
    # ``channels``, filled in by ``Registry`` once every adapter exists), the current rules (the
    # ``status_changed`` rules run before the commit) and who delivers the outbox rows written,
    # after the commit. Without them staff actions still work; rows then wait for the sweeper.
    composer: Any = None
    rules: Callable[[], Any] = lambda: None
    on_outbox: Callable[[tuple[int, ...]], Any] = lambda ids: None
    _section: Any = field(default=None, init=False, repr=False)
    _loaded: bool = field(default=False, init=False, repr=False)

    @property
    def section(self) -> Any:
        if not self._loaded:
            self._section = self.load_section()
            self._loaded = True
        return self._section


class Adapter:
    """Base class of every channel adapter; every hook but ``parse`` has a do-nothing default."""

    #: Short name: the package under ``intake/`` and the ``/intake/<name>/`` prefix.
    name: ClassVar[str] = ""
    #: Envelope channels this adapter parses and composes for (email: ("email",)).
    channels: ClassVar[tuple[str, ...]] = ()
    #: Channels-file section it owns, and the pydantic model of that section.
    section: ClassVar[str | None] = None
    settings_model: ClassVar[Any] = None
    #: Long-running edges it offers, by component name, with a one-line help for the CLI
    #: (``omnidesk <component>`` runs one alone; ``omnidesk run --without <component>``).
    components: ClassVar[dict[str, str]] = {}

    def __init__(self, ctx: AdapterContext) -> None:
        self.ctx = ctx

    # --- intake -------------------------------------------------------------------------------
    def parse(self, payload: Payload) -> Envelope:
        """Raw payload -> Envelope; ``UnparseableMessage`` (with a reason) when it cannot be."""
        raise NotImplementedError(f"{type(self).__name__} does not parse payloads")

    def describe(self, payload: Payload) -> PayloadSummary:
        return PayloadSummary()

    def http_router(self) -> APIRouter | None:
        return None

    def runners(self) -> Mapping[str, Runner]:
        """One runner per name in ``components``."""
        return {}

    def identities(self) -> Identities:
        return Identities()

    # --- the channels file -----------------------------------------------------------------
    @classmethod
    def check_section(
        cls, doc: YamlDocument, data: Any, *, environ: Mapping[str, str], base_dir: Any, check_env: bool
    ) -> list[Issue]:
        """Checks across entries of the section (run on the plain data, before the model)."""
        return []

    @classmethod
    def finish_section(cls, section: Any, *, base_dir: Any) -> Any:
        """The validated section with relative paths resolved against the file's folder."""
        return section

    def probe(self, *, connect: bool = True, timeout: float = 20.0) -> ChannelReport | None:
        """``channels check``: every configured account, checked; None when it has none to show.

        Only the settings and ``ctx.section`` may be used: the command opens no database and
        stores nothing. With ``connect`` False (``--offline``) nothing is contacted either;
        ``timeout`` bounds each connection in seconds.
        """
        return None

    # --- outbound -------------------------------------------------------------------------------
    def reply_channel(self, envelope: Envelope) -> str:
        return envelope.channel

    def compose(self, intent: OutboundIntent) -> Draft | None:
        """The channel's draft of ``intent``; None when this adapter cannot reach ``intent.to``."""
        return None

    def watchers(self, *, queue: str, event: str) -> tuple[str, ...]:
        """Staff targets (``kind:address``, composed by the adapter of ``kind``) to tell about a
        ``new_ticket`` or a customer's ``follow_up`` on ``queue``: e.g. the queue's Slack channel.
        Their intents carry the ticket's essentials in ``OutboundIntent.details``."""
        return ()

    def acknowledgement(self, *, ref: str, customer_name: str, subject: str) -> tuple[str, str]:
        """(subject, text) of the default acknowledgement when the rules file names none."""
        greeting = f"Hello {customer_name}," if customer_name else "Hello,"
        text = (
            f"{greeting}\n\nThank you for contacting us. We have received your message: "
            f"your ticket number is {ref}. Our team will get back to you as soon as possible.\n"
        )
        return f"[{ref}] {subject or 'Your request'}", text
