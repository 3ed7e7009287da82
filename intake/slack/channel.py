"""The Slack adapter: the ``slack`` channel on the channel contract (``intake.adapter``).

Customers write in support channels (shared Slack Connect channels, listed by id in the
channels file's ``slack:`` section) and in DMs to the app (on with nothing but the signing secret
and the bot token). Each top-level message opens a ticket; replies in its thread continue it, and
our answers go into that thread. Agents see each new ticket of a queue in its queue channel
(``watchers``), with the customer's follow-ups from any channel mirrored into that post's thread.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

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
from intake.slack.compose import compose_slack
from intake.slack.events import describe_payload, parse_payload
from intake.slack.settings import SlackSection

if TYPE_CHECKING:
    from fastapi import APIRouter

    from intake.slack.endpoints import SlackEndpoints

__all__ = ["ADAPTER", "SlackAdapter"]


class SlackAdapter(Adapter):
    name: ClassVar[str] = "slack"
    channels: ClassVar[tuple[str, ...]] = (Channel.SLACK,)
    section: ClassVar[str | None] = "slack"
    settings_model: ClassVar[type[SlackSection]] = SlackSection

    def __init__(self, ctx: AdapterContext) -> None:
        super().__init__(ctx)
        self._endpoints: SlackEndpoints | None = None

    @property
    def slack_section(self) -> SlackSection:
        section = self.ctx.section
        return section if isinstance(section, SlackSection) else SlackSection()

    def parse(self, payload: Payload) -> Envelope:
        return parse_payload(payload, self.slack_section)

    def describe(self, payload: Payload) -> PayloadSummary:
        return describe_payload(payload)

    def http_router(self) -> APIRouter:
        # Imported here: parsing (replay, explain) and workers need no web stack.
        from intake.slack.endpoints import SlackEndpoints

        if self._endpoints is None:
            self._endpoints = SlackEndpoints(self.ctx)
        return self._endpoints.router()

    def probe(self, *, connect: bool = True, timeout: float = 20.0) -> ChannelReport | None:
        s = self.ctx.settings
        if not s.slack_signing_secret.get_secret_value() and not s.slack_bot_token.get_secret_value():
            return None
        section = self.slack_section
        problems = []
        if not s.slack_signing_secret.get_secret_value():
            problems.append("OMNIDESK_SLACK_SIGNING_SECRET is empty: every event would be refused")
        if not s.slack_bot_token.get_secret_value():
            problems.append("OMNIDESK_SLACK_BOT_TOKEN is empty: nothing can be posted")
        if connect and not problems:
            from slack_sdk.errors import SlackApiError, SlackClientError

            from intake.slack.api import web_client

            try:
                who = web_client(s, timeout=int(timeout)).auth_test()
                detail = f"signed in as {who.get('user')} in {who.get('team')}"
            except (SlackApiError, SlackClientError, OSError) as exc:
                problems.append(f"auth.test failed: {exc}; check OMNIDESK_SLACK_BOT_TOKEN and OMNIDESK_SLACK_API_BASE")
        else:
            detail = "not contacted (offline)"
        text = "; ".join(problems) or (
            f"{len(section.support_channels)} support channel(s), DMs {'on' if section.direct_messages else 'off'}, "
            f"{len(section.queue_channels)} queue channel(s); {detail}")
        account = AccountCheck("slack app", not problems, text, {
            "support_channels": [c.id for c in section.support_channels],
            "queue_channels": dict(section.queue_channels), "direct_messages": section.direct_messages})
        return ChannelReport(key="slack", kind=("Slack app", "Slack apps"), accounts=(account,))

    def compose(self, intent: OutboundIntent) -> Draft | None:
        return compose_slack(intent)

    def watchers(self, *, queue: str, event: str) -> tuple[str, ...]:
        channel = self.slack_section.queue_channels.get(queue)
        if channel is None or event not in ("new_ticket", "follow_up"):
            return ()
        return (f"{Channel.SLACK}:{channel}",)

    def acknowledgement(self, *, ref: str, customer_name: str, subject: str) -> tuple[str, str]:
        text = (f"Thanks{', ' + customer_name if customer_name else ''}! We have your message as ticket "
                f"{ref}; we will answer in this thread.")
        return f"[{ref}] {subject or 'Your request'}", text


ADAPTER = SlackAdapter
