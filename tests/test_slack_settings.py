"""The slack: section of the channels file, and ``channels check`` for the Slack app."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from intake.channels import ChannelsError, parse_channels
from tests.peers.slack_api import TOKEN, SlackApi


@pytest.fixture
def slack_api() -> Iterator[SlackApi]:
    api = SlackApi().start()
    yield api
    api.stop()


def _errors(text: str) -> list[str]:
    with pytest.raises(ChannelsError) as caught:
        parse_channels(text, "channels.yaml")
    return caught.value.errors


def test_a_good_section_reads_with_its_defaults() -> None:
    config = parse_channels("slack:\n  support_channels:\n    - {id: C0SUPPORT1, queue: billing}\n", "channels.yaml")
    section = config.section("slack")
    assert section.direct_messages is True and section.note_prefix == "note:"
    assert section.support_queue("C0SUPPORT1") == "billing" and section.support_queue("C0OTHER001") is None


def test_a_channel_name_instead_of_an_id_is_an_error_that_says_where_to_find_the_id() -> None:
    (error,) = _errors("slack:\n  support_channels:\n    - {id: '#support'}\n")
    assert error.startswith("channels.yaml:3:") and "channel's details" in error


def test_a_channel_cannot_be_both_support_and_queue_channel() -> None:
    (error,) = _errors("slack:\n  support_channels:\n    - {id: C0SAME0001}\n  queue_channels:\n    general: C0SAME0001\n")
    assert "both a support channel and the queue channel" in error


def test_unknown_keys_are_errors() -> None:
    (error,) = _errors("slack:\n  support_channel: []\n")
    assert "support_channel" in error and error.startswith("channels.yaml:2:")


def test_channels_check_signs_in_to_slack(make_settings: object, slack_api: SlackApi) -> None:
    from config.settings import Settings
    from intake.channels import ChannelsConfig
    from intake.registry import Registry

    def check(token: str) -> object:
        settings = Settings(_env_file=None, slack_signing_secret="s", slack_bot_token=token,  # type: ignore[call-arg,arg-type]
                            slack_api_base=slack_api.base)
        registry = Registry.configuration_only(settings, ChannelsConfig())
        return registry.adapters["slack"].probe(connect=True, timeout=5)

    good = check(TOKEN)
    assert good is not None and good.failed == 0 and "signed in as omnidesk" in good.accounts[0].text  # type: ignore[attr-defined]
    bad = check("xoxb-wrong")
    assert bad is not None and bad.failed == 1 and "OMNIDESK_SLACK_BOT_TOKEN" in bad.accounts[0].text  # type: ignore[attr-defined]
