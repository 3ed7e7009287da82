"""The ``slack:`` section of the channels file: which Slack channels are support, which are staff.

    slack:
      direct_messages: true            # DMs to the app are support requests (the default)
      note_prefix: "note:"             # an agent's thread reply starting with it is an internal note
      accept_bots: [B0123]             # bot ids whose messages are customers' (none by default)
      support_channels:
        - id: C0SUPPORT1               # a shared (Slack Connect) or internal channel
          queue: billing               # routing sees it as header.x-slack-queue
      queue_channels:
        billing: C0BILLTEAM            # every new billing ticket is posted here, with buttons
      escalation_queue: tier2          # where the Escalate button sends a ticket (default: its queue)

Channel ids, not names: a channel can be renamed, its id stays. A channel is either a support
channel (customers write there) or a queue channel (agents work there), never both: an agent's
thread reply would otherwise also be a customer's message.
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

__all__ = ["SlackSection", "SupportChannel"]

_CHANNEL_ID = re.compile(r"^[CGD][A-Z0-9]{2,}$")


def _channel_id(value: str) -> str:
    value = value.strip()
    if not _CHANNEL_ID.match(value):
        raise ValueError(
            f"{value!r} is not a Slack channel id (like C0123ABCD): open the channel's details in "
            "Slack and copy the id at the bottom; names like #support can be renamed and are not used"
        )
    return value


ChannelId = Annotated[str, AfterValidator(_channel_id)]


class SupportChannel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: ChannelId
    # The queue routing sees (``header.x-slack-queue``); empty: the rules decide alone.
    queue: str = ""


class SlackSection(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    direct_messages: bool = True
    note_prefix: Annotated[str, Field(min_length=1, max_length=40)] = "note:"
    accept_bots: list[str] = Field(default_factory=list)
    support_channels: list[SupportChannel] = Field(default_factory=list)
    queue_channels: dict[str, ChannelId] = Field(default_factory=dict)
    # Where the Escalate button hands a ticket; empty: it stays in its queue, marked escalated.
    escalation_queue: str = ""

    @model_validator(mode="after")
    def _one_role_per_channel(self) -> SlackSection:
        seen: set[str] = set()
        for channel in self.support_channels:
            if channel.id in seen:
                raise ValueError(f"support channel {channel.id} is listed twice; keep one entry")
            seen.add(channel.id)
        for queue, channel_id in self.queue_channels.items():
            if channel_id in seen:
                raise ValueError(
                    f"channel {channel_id} is both a support channel and the queue channel of {queue!r}: "
                    "customers and agents need separate channels, or agents' replies would become "
                    "customer messages"
                )
        return self

    def support_queue(self, channel_id: str) -> str | None:
        """The queue of a support channel ('' for none); None when it is not one."""
        for channel in self.support_channels:
            if channel.id == channel_id:
                return channel.queue
        return None

    def is_queue_channel(self, channel_id: str) -> bool:
        return channel_id in self.queue_channels.values()
