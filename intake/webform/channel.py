"""The web form adapter: the ``webform`` channel on the channel contract (``intake.adapter``).

A form submission becomes an Envelope whose sender is the submitter's email address, so the
ticket's contact is that email identity and every answer (the acknowledgement included) goes out
by email: ``reply_channel`` says "email" and ``compose`` has nothing to offer. Forms have no
addresses of ours, so ``identities`` is empty. ``probe`` lists the forms served (the built-in
one and the channels file's) with their addresses and the sites allowed to post to them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

from intake.adapter import (
    AccountCheck,
    Adapter,
    AdapterContext,
    ChannelReport,
    Payload,
    PayloadSummary,
)
from intake.envelope import Channel, Envelope
from intake.outbound import Draft, OutboundIntent
from intake.webform.parse import describe_payload, parse_payload
from intake.webform.settings import FormSpec, check_forms_section, forms_by_id

if TYPE_CHECKING:
    from fastapi import APIRouter

    from config.issues import Issue
    from config.yamlpos import YamlDocument
    from intake.webform.endpoints import FormEndpoints

__all__ = ["ADAPTER", "WebFormAdapter"]


class WebFormAdapter(Adapter):
    name: ClassVar[str] = "webform"
    channels: ClassVar[tuple[str, ...]] = (Channel.WEBFORM,)
    section: ClassVar[str | None] = "forms"
    # A list of forms, not a model: the contract's annotation names models only.
    settings_model: ClassVar[Any] = list[FormSpec]

    def __init__(self, ctx: AdapterContext) -> None:
        super().__init__(ctx)
        self._endpoints: FormEndpoints | None = None

    def parse(self, payload: Payload) -> Envelope:
        return parse_payload(payload)

    def describe(self, payload: Payload) -> PayloadSummary:
        return describe_payload(payload)

    def http_router(self) -> APIRouter:
        # Imported here so that parsing (quarantine replay, explain) does not load the web stack.
        from intake.webform.endpoints import FormEndpoints

        if self._endpoints is None:
            self._endpoints = FormEndpoints(self.ctx)
        return self._endpoints.router()

    @classmethod
    def check_section(
        cls, doc: YamlDocument, data: Any, *, environ: Mapping[str, str], base_dir: Any, check_env: bool
    ) -> list[Issue]:
        return check_forms_section(doc, data, environ=environ, base_dir=base_dir, check_env=check_env)

    def probe(self, *, connect: bool = True, timeout: float = 20.0) -> ChannelReport:
        # Nothing to log in to: a form is checked when the file loads. What is worth seeing is
        # where each one is served and which other sites may post to it or frame it.
        s = self.ctx.settings
        base = s.public_url.rstrip("/") or f"http://{s.http_host}:{s.http_port}"
        in_file = {form.id for form in self.ctx.section or ()}
        accounts = []
        for form in forms_by_id(self.ctx.section).values():
            built_in = form.id not in in_file  # the default form, unless the file replaces it
            origins = ", ".join(form.allowed_origins) or "none (only its own page may post)"
            text = (f"{form.title!r} at {base}{form.page_path}{' (built in)' if built_in else ''}; "
                    f"other sites allowed: {origins}")
            details = {
                "title": form.title,
                "url": f"{base}{form.page_path}",
                "intake_url": f"{base}{form.intake_path}",
                "allowed_origins": list(form.allowed_origins),
                "queue": form.queue,
                "fields": [spec.name for spec in form.fields],
                "built_in": built_in,
            }
            accounts.append(AccountCheck(form.id, True, text, details))
        return ChannelReport(key="forms", kind=("web form", "web forms"), accounts=tuple(accounts))

    def reply_channel(self, envelope: Envelope) -> str:
        return Channel.EMAIL  # the submitter gave an email address; a web page cannot be answered

    def compose(self, intent: OutboundIntent) -> Draft | None:
        return None

    def acknowledgement(self, *, ref: str, customer_name: str, subject: str) -> tuple[str, str]:
        greeting = f"Hello {customer_name}," if customer_name else "Hello,"
        text = (
            f"{greeting}\n\nThank you for contacting us through our web form. We have received your "
            f"message: your ticket number is {ref}. Our team will get back to you as soon as "
            "possible; to add anything, reply to this email.\n"
        )
        return f"[{ref}] {subject or 'Your request'}", text


ADAPTER = WebFormAdapter
