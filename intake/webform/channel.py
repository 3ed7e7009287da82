"""The web form adapter: the ``webform`` channel on the channel contract (``intake.adapter``).

A form submission becomes an Envelope whose sender is the submitter's email address, so the
ticket's contact is that email identity and every answer (the acknowledgement included) goes out
by email: ``reply_channel`` says "email" and ``compose`` has nothing to offer. Forms have no
addresses of ours, so ``identities`` is empty.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

from intake.adapter import Adapter, AdapterContext, Payload, PayloadSummary
from intake.envelope import Channel, Envelope
from intake.outbound import Draft, OutboundIntent
from intake.webform.parse import describe_payload, parse_payload
from intake.webform.settings import FormSpec, check_forms_section

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
