"""The email channel on the adapter contract: SMTP and IMAP in, RFC 5322 mail out.

    parse      raw RFC 5322 bytes (+ the SMTP recipients in ``meta``) -> Envelope (``parse.py``)
    runners    ``smtp``: the aiosmtpd edge (``smtp.py``); ``imap``: the pollers (``imap/``)
    identities the domains we serve, the support address, every mailbox's address
    section      ``imap:`` of the channels file (``imap/settings.py``)
    probe      ``channels check``: log in to every mailbox, read-only (``imap/check.py``)
    compose    an intent -> the outbox payload of a mail, our Message-ID as its idempotency key
"""

from __future__ import annotations

import logging
import secrets
import threading
from collections.abc import Mapping
from email.parser import BytesHeaderParser
from email.policy import compat32
from pathlib import Path
from typing import Any

from config.issues import Issue
from config.yamlpos import YamlDocument
from intake.adapter import (
    Adapter,
    ChannelReport,
    Identities,
    Payload,
    PayloadSummary,
    Runner,
    Stopper,
)
from intake.email.details import EmailDetails, mid_key
from intake.email.headers import decode_header_value
from intake.email.imap.settings import ImapMailbox, check_imap_section, resolve_imap_paths
from intake.email.limits import ParseLimits
from intake.email.parse import parse_email
from intake.envelope import Channel, Envelope
from intake.log import Accepted
from intake.outbound import Draft, OutboundIntent

__all__ = ["ADAPTER", "EmailAdapter", "reply_subject"]

log = logging.getLogger("omnidesk")


def reply_subject(ref: str, subject: str) -> str:
    """``[OD-7] Re: <subject>``: the token first so every mail client keeps it in the thread."""
    clean = " ".join(subject.replace(f"[{ref}]", "").split())
    if not clean:
        clean = "your request"
    if not clean.lower().startswith(("re:", "aw:", "sv:", "antw:")):
        clean = f"Re: {clean}"
    return f"[{ref}] {clean}"


class EmailAdapter(Adapter):
    name = "email"
    channels = (Channel.EMAIL,)
    section = "imap"
    settings_model = list[ImapMailbox]
    components = {"smtp": "the SMTP intake server", "imap": "the IMAP pollers of the channels file"}

    # --- intake -------------------------------------------------------------------------------
    @property
    def limits(self) -> ParseLimits:
        s = self.ctx.settings
        return ParseLimits(
            max_bytes=s.max_message_bytes,
            max_depth=s.mime_max_depth,
            max_parts=s.mime_max_parts,
            max_header_bytes=s.mime_max_header_bytes,
        )

    def parse(self, payload: Payload) -> Envelope:
        ours = self.identities()
        return parse_email(
            payload.raw,
            blobs=self.ctx.blobs,
            received_at=payload.received_at,
            recipients=list(payload.meta.get("recipients") or ()),
            ticket_prefix=self.ctx.settings.ticket_prefix,
            limits=self.limits,
            own_domains=tuple(sorted(ours.domains)),
            own_addresses=tuple(sorted(i.partition(":")[2] for i in ours.identities)),
        )

    def describe(self, payload: Payload) -> PayloadSummary:
        # Headers only, with the stdlib's tolerant parser: enough to tell whose mail is stuck.
        head = payload.raw[:65536]
        headers = BytesHeaderParser(policy=compat32).parsebytes(head)

        def get(name: str) -> str:
            value = headers.get(name)
            return decode_header_value(str(value)).strip()[:300] if value is not None else ""

        return PayloadSummary(sender=get("From"), subject=get("Subject"), reference=get("Message-ID"))

    def accept(self, raw: bytes, recipients: list[str], received_at: Any, *, source: str = "smtp") -> Accepted:
        """One mail from a transport: what the SMTP handler and the IMAP pollers call."""
        return self.ctx.ingest(
            Payload(
                channel=Channel.EMAIL,
                raw=raw,
                received_at=received_at,
                source=source,
                meta={"recipients": list(recipients)},
            )
        )

    def identities(self) -> Identities:
        s = self.ctx.settings
        addresses = {f"email:{s.support_address.lower()}"}
        for box in self.mailboxes():
            addresses.add(f"email:{box.recipient.lower()}")
        domains = {d.lower() for d in (*s.smtp_domains, s.effective_message_id_domain)}
        return Identities(frozenset(addresses), frozenset(domains))

    def mailboxes(self) -> list[ImapMailbox]:
        return list(self.ctx.section or [])

    def runners(self) -> Mapping[str, Runner]:
        return {"smtp": self._start_smtp, "imap": self._start_imap}

    def _start_smtp(self, stop_event: threading.Event) -> Stopper | None:
        from intake.email.smtp import SmtpIntakeHandler, start_smtp_server

        s = self.ctx.settings
        handler = SmtpIntakeHandler(self.accept, domains=s.smtp_domains, max_bytes=s.max_message_bytes)
        controller = start_smtp_server(
            handler, host=s.smtp_host, port=s.smtp_port, max_line_bytes=s.smtp_max_line_bytes
        )
        log.info("SMTP listening on %s:%d for %s", s.smtp_host, s.smtp_port, ", ".join(s.smtp_domains))

        def stop() -> None:
            controller.stop()
            handler.executor.shutdown(wait=True)

        return stop

    def _start_imap(self, stop_event: threading.Event) -> Stopper | None:
        from intake.channels import configured_channels
        from intake.email.imap import start_pollers

        mailboxes = self.mailboxes()
        if mailboxes:
            # Every password variable must be set before any poller starts: one error per missing
            # variable, at its place in the channels file.
            configured_channels(self.ctx.settings)
        return start_pollers(mailboxes, accept=self.accept, db=self.ctx.db, stop_event=stop_event)

    # --- the channels file -----------------------------------------------------------------
    @classmethod
    def check_section(
        cls, doc: YamlDocument, data: Any, *, environ: Mapping[str, str], base_dir: Any, check_env: bool
    ) -> list[Issue]:
        return check_imap_section(doc, data, environ=environ, base_dir=base_dir, check_env=check_env)

    @classmethod
    def finish_section(cls, section: Any, *, base_dir: Any) -> Any:
        return resolve_imap_paths(list(section), Path(base_dir))

    def probe(self, *, connect: bool = True, timeout: float = 20.0) -> ChannelReport:
        from intake.email.imap.check import check_mailboxes

        return check_mailboxes(self.mailboxes(), connect=connect, timeout=timeout)

    # --- outbound -------------------------------------------------------------------------------
    def _from_address(self, intent: OutboundIntent) -> str:
        """The support address the customer wrote to, when it is one of ours; else the default."""
        s = self.ctx.settings
        for party in (intent.business,) if intent.business is not None else ():
            if party.kind == "email" and party.address.rpartition("@")[2].lower() in s.smtp_domains:
                return party.address
        return s.support_address

    def compose(self, intent: OutboundIntent) -> Draft | None:
        if intent.to.kind != "email":
            return None
        s = self.ctx.settings
        message_id = f"<{secrets.token_hex(16)}@{s.effective_message_id_domain}>"
        from_address = self._from_address(intent)
        subject = intent.subject
        if intent.kind in ("ack", "reply", "survey"):
            # "[OD-n] Re: <theirs>", whatever a template says: the customer's client threads it.
            theirs = intent.answering.subject if intent.answering is not None else intent.subject
            subject = reply_subject(intent.ticket_ref, theirs)
        payload: dict[str, Any] = {
            "from": from_address,
            "to": intent.to.address,
            "to_name": intent.to.name,
            "subject": subject,
            "text": intent.text,
            "ticket_ref": intent.ticket_ref,
        }
        if intent.html:
            payload["html"] = intent.html
        if intent.automatic:
            payload["auto_submitted"] = "auto-generated" if intent.kind == "notify" else "auto-replied"
        if intent.attachments:
            payload["attachments"] = [a.model_dump(mode="json") for a in intent.attachments]
        if intent.answering is not None:
            details = EmailDetails.of(intent.answering)
            references = list(details.references)
            if details.message_id and details.message_id not in references:
                references.append(details.message_id)
            if details.message_id:
                payload["in_reply_to"] = details.message_id
            if references:
                payload["references"] = references
        return Draft(
            channel=Channel.EMAIL,
            recipient=intent.to.address,
            idempotency_key=message_id,
            payload=payload,
            thread_keys=(mid_key(message_id),),
            sender=from_address,
            subject=subject,
            text=intent.text,
        )

    def acknowledgement(self, *, ref: str, customer_name: str, subject: str) -> tuple[str, str]:
        greeting = f"Hello {customer_name}," if customer_name else "Hello,"
        text = (
            f"{greeting}\n\n"
            f"Thank you for contacting us. We have received your message and opened ticket {ref}.\n"
            "Our team will get back to you as soon as possible.\n\n"
            f"To add anything, simply reply to this email and keep [{ref}] in the subject.\n"
        )
        return reply_subject(ref, subject), text


ADAPTER = EmailAdapter
