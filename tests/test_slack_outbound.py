"""The Slack sender against the local Web API: rate limits, pacing and no double posts."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from intake.slack.api import web_client
from tests.peers.slack_api import TOKEN, SlackApi
from workers.errors import PermanentDeliveryError, TemporaryDeliveryError
from workers.outbox import OutboxMessage
from workers.senders.slack import SlackSender

CHANNEL = "C0SUPPORT1"


@pytest.fixture
def slack_api() -> Iterator[SlackApi]:
    api = SlackApi().start()
    yield api
    api.stop()


def sender(api: SlackApi, *, min_interval: float = 0.0, token: str = TOKEN) -> SlackSender:
    from config.settings import Settings

    settings = Settings(_env_file=None, slack_bot_token=token, slack_api_base=api.base)  # type: ignore[call-arg,arg-type]
    return SlackSender(web_client(settings, timeout=5), min_interval=min_interval)


def message(key: str = "slack-k1", *, attempts: int = 1, **payload: Any) -> OutboxMessage:
    body = {"channel": CHANNEL, "thread_ts": "1700000001.000100", "text": "Hello from support",
            "ticket_ref": "OD-1", **payload}
    return OutboxMessage(id=1, channel="slack", kind="reply", recipient="U0CUST0001", idempotency_key=key,
                         payload=body, attempts=attempts)


def test_a_reply_is_posted_into_the_thread_with_our_key(slack_api: SlackApi) -> None:
    provider_id = sender(slack_api).send(message())
    (post,) = slack_api.posts()
    assert provider_id == f"{CHANNEL}:{post.ts}"
    assert post.args["thread_ts"] == "1700000001.000100"
    assert post.args["metadata"] == {"event_type": "omnidesk_outbound",
                                     "event_payload": {"key": "slack-k1", "ticket": "OD-1"}}


def test_429_is_retried_after_retry_after_and_posts_once(slack_api: SlackApi) -> None:
    slack_api.rate_limit(1, retry_after=1)
    started = time.monotonic()
    sender(slack_api).send(message())
    assert time.monotonic() - started >= 1.0  # Retry-After was honoured
    assert len(slack_api.called("chat.postMessage")) == 2 and len(slack_api.posts()) == 1


def test_a_rate_limit_that_lasts_is_a_temporary_failure(slack_api: SlackApi) -> None:
    slack_api.rate_limit(10, retry_after=0)
    with pytest.raises(TemporaryDeliveryError, match="ratelimited"):
        sender(slack_api).send(message())
    assert slack_api.posts() == []


def test_a_lost_answer_is_reconciled_not_posted_twice(slack_api: SlackApi) -> None:
    s = sender(slack_api)
    slack_api.drop_after_post(1)
    with pytest.raises(TemporaryDeliveryError):
        s.send(message("slack-lost"))
    assert len(slack_api.posts()) == 1  # Slack did post it
    provider_id = s.send(message("slack-lost", attempts=2))  # the outbox's retry
    (post,) = slack_api.posts()
    assert provider_id == f"{CHANNEL}:{post.ts}"
    # A retry of another message still posts.
    s.send(message("slack-other", attempts=2))
    assert len(slack_api.posts()) == 2


def test_top_level_and_dm_posts_reconcile_too(slack_api: SlackApi) -> None:
    s = sender(slack_api)
    slack_api.drop_after_post(1)
    with pytest.raises(TemporaryDeliveryError):
        s.send(message("slack-dm", channel="U0CUST0001", thread_ts=""))
    assert s.send(message("slack-dm", attempts=2, channel="U0CUST0001", thread_ts="")).startswith("D0CUST0001:")
    assert len(slack_api.posts()) == 1


def test_posts_to_one_channel_are_paced(slack_api: SlackApi) -> None:
    s = sender(slack_api, min_interval=0.3)
    for n in range(3):
        s.send(message(f"slack-p{n}"))
    s.send(message("slack-elsewhere", channel="C0OTHER001"))
    at = [p.at for p in slack_api.posts(CHANNEL)]
    assert at[1] - at[0] >= 0.29 and at[2] - at[1] >= 0.29
    other = slack_api.posts("C0OTHER001")[0].at
    assert other - at[2] < 0.25  # another channel does not wait for this one


def test_a_long_retry_after_is_left_to_the_outbox_not_slept_through(slack_api: SlackApi) -> None:
    slack_api.rate_limit(1, retry_after=60)
    started = time.monotonic()
    with pytest.raises(TemporaryDeliveryError, match="ratelimited"):
        sender(slack_api).send(message())
    assert time.monotonic() - started < 5
    assert slack_api.posts() == []


def test_refusals_are_permanent_and_say_what_to_do(slack_api: SlackApi) -> None:
    with pytest.raises(PermanentDeliveryError, match="OMNIDESK_SLACK_BOT_TOKEN"):
        sender(slack_api, token="xoxb-wrong").send(message())


def test_a_follow_up_waits_for_the_tickets_first_post_and_then_goes_into_its_thread(slack_api: SlackApi) -> None:
    from workers.senders.slack import PENDING

    found: dict[str, str] = {"ts": PENDING}
    s = sender(slack_api)
    s.find_thread = lambda ticket_id, channel: found["ts"]
    follow_up = message("slack-f1", thread_ts="", in_ticket_thread=True)
    with pytest.raises(TemporaryDeliveryError, match="not sent yet"):
        s.send(follow_up)
    assert slack_api.posts() == []
    found["ts"] = "1700000099.000100"
    s.send(follow_up)
    (post,) = slack_api.posts()
    assert post.args["thread_ts"] == "1700000099.000100"
