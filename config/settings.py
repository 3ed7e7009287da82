"""Every setting Omnidesk reads, in one place.

Settings come from environment variables prefixed ``OMNIDESK_`` and from a ``.env`` file in the
working directory (the environment wins). The README lists each one with its default; keep the two
in step (``tests/test_settings.py`` checks that every field here is documented there).

This module imports nothing of ours: everything else imports it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

__all__ = ["Settings", "SettingsError", "load_settings"]


class SettingsError(Exception):
    """A setting has a value Omnidesk cannot start with; the message names the variable."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="OMNIDESK_",
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        frozen=True,
    )

    # --- storage -------------------------------------------------------------------------
    data_dir: Path = Field(Path("./var"), description="Holds the SQLite file and the blob store.")
    database_url: str = Field(
        "",
        description="SQLAlchemy URL of the store. Empty: SQLite file omnidesk.db in the data dir.",
    )

    # --- broker --------------------------------------------------------------------------
    redis_url: str = Field("", description="Redis URL for the Dramatiq broker. Empty: embedded.")
    redis_namespace: str = Field(
        "omnidesk",
        pattern=r"^[A-Za-z0-9_.:-]+$",
        description="Prefix of the broker's Redis keys; give each Omnidesk sharing a Redis its own.",
    )
    broker_url: str = Field(
        "",
        description="amqp:// URL to use RabbitMQ as the broker instead of Redis. Empty: unused.",
    )
    worker_threads: int = Field(8, ge=1, le=256, description="Worker threads per process.")
    worker_prefetch: int = Field(
        0, ge=0, description="Messages a worker holds ahead of its threads; 0 = 2 x threads."
    )
    heartbeat_timeout_seconds: int = Field(
        15,
        ge=5,
        description="Seconds before a dead Redis worker's messages are given to another worker.",
    )
    sweep_interval_seconds: float = Field(
        10.0, gt=0, description="How often the sweeper looks for unrouted intake and due outbox rows."
    )
    sweep_grace_seconds: float = Field(
        30.0,
        ge=0,
        description="How old an unrouted intake row (or a stuck delivery) must be to be re-enqueued.",
    )
    process_dead_seconds: float = Field(
        20.0,
        ge=4,
        description="Seconds without a heartbeat after which a worker counts as dead and its claimed "
        "deliveries are retried by the next sweep (it beats every quarter of this).",
    )

    # --- HTTP ----------------------------------------------------------------------------
    http_host: str = Field("127.0.0.1", description="Address the HTTP server binds.")
    http_port: int = Field(8000, ge=1, le=65535, description="Port of the HTTP server.")
    public_url: str = Field(
        "",
        description="The externally visible base URL behind a proxy (https://desk.example.com); "
        "empty: http://HTTP_HOST:HTTP_PORT. Links and webhook signatures use it.",
    )

    # --- web form ------------------------------------------------------------------------
    form_rate_limit_per_minute: int = Field(
        10, ge=0, description="Web form posts per client IP per minute, per web process (0: no limit)."
    )
    form_max_attachment_bytes: int = Field(
        10 * 1024 * 1024, ge=0, description="Largest single web form attachment, in bytes."
    )
    form_max_total_attachment_bytes: int = Field(
        25 * 1024 * 1024, ge=0, description="All attachments of one web form submission together, in bytes."
    )
    form_max_attachments: int = Field(
        5, ge=0, description="Attachments per web form submission (0: no attachments)."
    )
    form_allowed_attachment_types: Annotated[tuple[str, ...], NoDecode] = Field(
        (),
        description="Comma-separated content types a web form accepts (type/* and prefix.* "
        "patterns work); empty: images, PDF, text and office documents (never SVG).",
    )
    form_secret: SecretStr = Field(
        SecretStr(""),
        description="Key of the web form's CSRF tokens and stored IP hashes. Empty: a random key "
        "per process start; set it when several web processes serve the form.",
    )
    form_token_max_age_seconds: int = Field(
        7200, ge=60, description="How long a served form page may be posted before it must be reloaded."
    )

    # --- Slack ---------------------------------------------------------------------------
    slack_signing_secret: SecretStr = Field(
        SecretStr(""),
        description="The Slack app's signing secret (Basic Information page): every request to "
        "/intake/slack/* must carry its v0 signature. Empty: the Slack endpoints answer 503.",
    )
    slack_bot_token: SecretStr = Field(
        SecretStr(""),
        description="The Slack app's bot token (xoxb-...): posts replies and notifications, reads "
        "users.info and downloads files. Empty: nothing is sent to Slack.",
    )
    slack_api_base: str = Field(
        "https://slack.com/api/",
        description="Base URL of Slack's Web API (ends in /api/); tests point it at a local server.",
    )
    slack_min_post_interval_seconds: float = Field(
        1.0, ge=0, le=60,
        description="Least time between two posts to one Slack channel from one process (Slack "
        "allows about one message per second per channel).",
    )

    # --- inbound SMTP --------------------------------------------------------------------
    smtp_host: str = Field("127.0.0.1", description="Address the SMTP intake server binds.")
    smtp_port: int = Field(2525, ge=1, le=65535, description="Port of the SMTP intake server.")
    smtp_domains: Annotated[tuple[str, ...], NoDecode] = Field(
        ("example.com",),
        description="Comma-separated domains the SMTP server accepts mail for (never a relay).",
    )
    max_message_bytes: int = Field(
        25 * 1024 * 1024,
        ge=1024,
        description="Largest message accepted: SMTP answers 552 above it, larger IMAP mail is quarantined.",
    )
    # RFC 5321 4.5.3.1.6 caps a line at 1,000 bytes with its CRLF, but that binds senders: real
    # mail breaks it (HTML bodies from shops and mailing tools, long header values) and a refusal
    # is a bounce the customer sees; Postfix and Exim take far longer lines. 64 KiB is no line a
    # person wrote: past it the client is broken or hostile. max_message_bytes bounds the whole.
    smtp_max_line_bytes: int = Field(
        64 * 1024,
        ge=1001,
        description="Longest line of a message the SMTP server takes, in bytes with its line end "
        "(CRLF or a bare LF); longer lines are refused with 500. RFC 5321 asks senders for 1000, "
        "real mail sends more.",
    )
    mime_max_depth: int = Field(
        20, ge=1, description="Deepest MIME nesting parsed; deeper mail is quarantined with the reason."
    )
    mime_max_parts: int = Field(
        500, ge=1, description="Most MIME parts in one message; more are quarantined with the reason."
    )
    mime_max_header_bytes: int = Field(
        256 * 1024, ge=1024, description="Largest header block of a message or part; larger is quarantined."
    )

    # --- outbound ------------------------------------------------------------------------
    outbound_smtp_url: SecretStr = Field(
        SecretStr(""),
        description="smtp://user:pass@host:port, smtp+starttls://..., smtps://... Empty: no mail out.",
    )
    support_address: str = Field(
        "support@example.com",
        description="From address of replies when the address the customer wrote to is unknown.",
    )
    message_id_domain: str = Field(
        "",
        description="Domain of the Message-IDs we generate. Empty: the support address's domain.",
    )
    auto_reply_limit_per_hour: int = Field(
        5, ge=0, description="Most auto-replies one contact gets in an hour, across all channels."
    )
    delivery_max_attempts: int = Field(
        8, ge=1, description="Delivery attempts before an outbound message is marked failed."
    )

    # --- Twilio (SMS, WhatsApp, voice) -----------------------------------------------------
    twilio_account_sid: str = Field(
        "", description="Twilio account SID (AC...). With the auth token set, every number of the "
        "account is served with defaults; the channels file's twilio: section refines them.",
    )
    twilio_auth_token: SecretStr = Field(
        SecretStr(""), description="Twilio auth token: signs webhooks (X-Twilio-Signature) and "
        "logs in to the REST API. Empty: the Twilio endpoints refuse every request.",
    )
    twilio_api_base: str = Field(
        "https://api.twilio.com", description="Base URL of Twilio's REST API (a proxy or a local "
        "test server instead of Twilio's own).",
    )
    twilio_media_max_bytes: int = Field(
        16 * 1024 * 1024, ge=1024, description="Largest photo or file of an inbound MMS or WhatsApp "
        "message that is downloaded; a larger one is named on the ticket instead.",
    )
    twilio_voice_greeting: str = Field(
        "Thank you for calling. Please leave a message after the tone, and we will get back to you "
        "as soon as possible.", min_length=1, description="What callers hear before the voicemail tone "
        "(a number's greeting in the channels file wins).",
    )
    twilio_voice_max_length_seconds: int = Field(
        120, ge=5, le=3600, description="Longest voicemail recorded, in seconds.",
    )
    twilio_transcription_wait_seconds: float = Field(
        300, ge=0, description="How long a voicemail waits for Twilio's transcription before it goes "
        "on the ticket without one.",
    )
    twilio_missed_call_grace_seconds: float = Field(
        60, ge=0, description="After a call ends without a recording, how long to wait for a late "
        "recording callback before the call counts as missed.",
    )
    twilio_timeout_seconds: float = Field(
        15, gt=0, description="Timeout of one request to Twilio's REST API; a timeout is retried.",
    )

    # --- tickets and routing -------------------------------------------------------------
    ticket_prefix: str = Field(
        "OD", pattern=r"^[A-Z][A-Z0-9]{0,9}$", description="Prefix of ticket numbers (OD-1042)."
    )
    foreign_token_policy: Literal["follow_up", "new_ticket"] = Field(
        "new_ticket",
        description="A [OD-n] token from a sender not on that ticket: follow_up adds the message to "
        "it; new_ticket opens a new ticket linked to it (nobody can write into others' tickets).",
    )
    resolved_close_after_hours: float = Field(
        96, ge=0, description="A resolved ticket closes this many hours after it was resolved; until "
        "then a customer message reopens it (counted in the reopen rate). 0: close at once.",
    )
    closed_ticket_reply: Literal["new_ticket", "reopen"] = Field(
        "new_ticket",
        description="A customer message on a closed ticket: new_ticket opens a new ticket linked to "
        "the closed one; reopen reopens the closed ticket.",
    )
    conversation_reopen_days: float = Field(
        7, ge=0, description="A message in a conversation (an SMS or WhatsApp number, a chat) reopens "
        "its closed ticket if it was closed less than this many days ago; after that it opens a new "
        "ticket linked to the old one.",
    )
    rules_file: Path = Field(Path("config/routing.yaml"), description="The routing rules file.")
    channels_file: Path = Field(Path("config/channels.yaml"), description="The channels file.")

    log_level: str = Field("INFO", description="DEBUG, INFO, WARNING or ERROR.")

    @field_validator("form_allowed_attachment_types", mode="before")
    @classmethod
    def _split_types(cls, value: Any) -> Any:
        if isinstance(value, str):
            return tuple(part.strip().lower() for part in value.replace(";", ",").split(",") if part.strip())
        return value

    @field_validator("smtp_domains", mode="before")
    @classmethod
    def _split_domains(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = [part for part in value.replace(";", ",").split(",")]
        if isinstance(value, (list, tuple)):
            domains = tuple(str(d).strip().lower().rstrip(".") for d in value if str(d).strip())
            if not domains:
                raise ValueError("give at least one domain, e.g. example.com")
            for domain in domains:
                if "@" in domain or " " in domain or "." not in domain:
                    raise ValueError(f"{domain!r} is not a domain name (e.g. example.com)")
            return domains
        return value

    @field_validator("support_address")
    @classmethod
    def _check_address(cls, value: str) -> str:
        if value.count("@") != 1 or not value.split("@")[1]:
            raise ValueError("must be an email address such as support@example.com")
        return value.strip()

    @field_validator("slack_api_base")
    @classmethod
    def _check_slack_base(cls, value: str) -> str:
        value = value.strip()
        if not value.startswith(("http://", "https://")):
            raise ValueError("must be an http(s) URL such as https://slack.com/api/")
        # slack_sdk joins method names onto the base: without the slash "chat.postMessage" would
        # replace the last path segment ("api") instead of following it.
        return value if value.endswith("/") else value + "/"

    @field_validator("log_level")
    @classmethod
    def _check_level(cls, value: str) -> str:
        level = value.strip().upper()
        if level not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
            raise ValueError("must be one of DEBUG, INFO, WARNING, ERROR")
        return level

    @field_validator("database_url")
    @classmethod
    def _check_database(cls, value: str) -> str:
        if value and not value.startswith(("sqlite", "postgresql")):
            raise ValueError("must be a sqlite:/// or postgresql:// URL")
        return value

    @field_validator("redis_url")
    @classmethod
    def _check_redis(cls, value: str) -> str:
        if value and urlsplit(value).scheme not in {"redis", "rediss", "unix"}:
            raise ValueError("must be a redis://, rediss:// or unix:// URL")
        return value

    @field_validator("broker_url")
    @classmethod
    def _check_broker(cls, value: str) -> str:
        if value and urlsplit(value).scheme not in {"amqp", "amqps"}:
            raise ValueError("must be an amqp:// or amqps:// URL")
        return value

    @field_validator("twilio_api_base")
    @classmethod
    def _check_twilio_base(cls, value: str) -> str:
        parts = urlsplit(value.strip())
        if parts.scheme not in {"http", "https"} or not parts.hostname or parts.path not in ("", "/"):
            raise ValueError("must be a base URL such as https://api.twilio.com (scheme and host, no path)")
        return value.strip().rstrip("/")

    @field_validator("twilio_account_sid")
    @classmethod
    def _check_twilio_sid(cls, value: str) -> str:
        value = value.strip()
        if value and not (value.startswith("AC") and len(value) == 34):
            raise ValueError("must be an account SID: AC followed by 32 characters, as in the Twilio console")
        return value

    @field_validator("outbound_smtp_url")
    @classmethod
    def _check_outbound(cls, value: SecretStr) -> SecretStr:
        raw = value.get_secret_value()
        if raw:
            parts = urlsplit(raw)
            if parts.scheme not in {"smtp", "smtps", "smtp+starttls"} or not parts.hostname:
                raise ValueError("must look like smtp://user:pass@host:port (or smtps://, smtp+starttls://)")
        return value

    @model_validator(mode="after")
    def _one_broker(self) -> Settings:
        if self.redis_url and self.broker_url:
            raise ValueError("set OMNIDESK_REDIS_URL or OMNIDESK_BROKER_URL, not both")
        return self

    # --- derived values --------------------------------------------------------------------
    @property
    def effective_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'omnidesk.db').resolve()}"

    @property
    def blob_dir(self) -> Path:
        return self.data_dir / "blobs"

    @property
    def effective_message_id_domain(self) -> str:
        return self.message_id_domain or self.support_address.split("@", 1)[1]

    def __repr_args__(self) -> Any:
        # repr() ends up in tracebacks and debug logs: never let a URL password reach them.
        return list(self.redacted().items())

    def redacted(self) -> dict[str, Any]:
        """The settings as a dict safe to log: passwords in URLs are masked."""
        out: dict[str, Any] = {}
        for name in type(self).model_fields:
            value = getattr(self, name)
            if isinstance(value, SecretStr):
                # A URL keeps its host (useful in logs) with the password masked; any other
                # secret (a token, a signing key) is masked whole.
                raw = value.get_secret_value()
                value = _mask_url(raw) if "://" in raw else ("***" if raw else "")
            elif isinstance(value, str) and "://" in value:
                value = _mask_url(value)
            out[name] = value
        return out


def _mask_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.password:
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
        return parts._replace(netloc=netloc).geturl()
    return url


def load_settings(**overrides: Any) -> Settings:
    """Read the settings; on a bad value raise SettingsError naming each variable at fault."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        lines = []
        for error in exc.errors():
            field = str(error["loc"][0]) if error["loc"] else ""
            name = f"OMNIDESK_{field.upper()}" if field else "settings"
            message = str(error["msg"]).removeprefix("Value error, ")
            lines.append(f"{name}: {message}")
        raise SettingsError("; ".join(lines)) from None
