"""The channels file: which mailboxes (and, later, other channel accounts) Omnidesk connects to.

``load_channels(path)`` reads the YAML file (``OMNIDESK_CHANNELS_FILE``, default
``config/channels.yaml``), validates it as strictly as the rules file (unknown keys, wrong types,
duplicate names and unsafe settings are errors) and returns a ``ChannelsConfig``. Every problem is
reported at once, as ``FILE:LINE:COL: path.to.key: message``, in a ``ChannelsError``.

Secrets never live in this file: a mailbox names the environment variable that holds its password
(``password_env``), and ``load_channels`` checks that the variable is set, so a missing secret is a
clear error at start rather than a login failure later. ``config/channels.example.yaml`` documents
every key.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator

from routing.rules.errors import Issue, did_you_mean, format_path
from routing.rules.yamlpos import YamlDocument, parse_yaml

__all__ = [
    "ChannelsConfig",
    "ChannelsError",
    "ImapMailbox",
    "channels_path",
    "configured_channels",
    "load_channels",
]

DEFAULT_PORTS = {"tls": 993, "starttls": 143, "none": 143}
LOCAL_HOSTS = frozenset({"localhost", "localhost.localdomain", "ip6-localhost"})
# Longest wait between two IDLE commands: RFC 2177 servers may drop an idle client after 30 min.
MAX_IDLE_SECONDS = 29 * 60

_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"
_ENV = r"^[A-Za-z_][A-Za-z0-9_]*$"


class ChannelsError(Exception):
    """A channels file that cannot be used; ``errors`` lists every problem, formatted, in file order."""

    def __init__(self, errors: list[str]) -> None:
        self.errors = list(errors)
        count = len(self.errors)
        super().__init__(
            f"{count} error{'s' if count != 1 else ''} in the channels file:\n" + "\n".join(self.errors)
        )


def _is_local(host: str) -> bool:
    host = host.strip().lower().strip("[]")
    if host in LOCAL_HOSTS:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class ImapMailbox(_Strict):
    """One IMAP mailbox folder Omnidesk imports mail from."""

    name: Annotated[str, Field(pattern=_NAME, max_length=64)]
    host: Annotated[str, Field(min_length=1, max_length=253)]
    security: Literal["tls", "starttls", "none"] = "tls"
    port: Annotated[int | None, Field(ge=1, le=65535)] = None
    username: Annotated[str, Field(min_length=1, max_length=320)]
    password_env: Annotated[str, Field(pattern=_ENV, max_length=200)]
    folder: Annotated[str, Field(min_length=1, max_length=500)] = "INBOX"
    move_to: Annotated[str | None, Field(min_length=1, max_length=500)] = None
    address: Annotated[str | None, Field(pattern=r"^[^@\s]+@[^@\s]+$", max_length=320)] = None
    idle: bool = True
    poll_seconds: Annotated[float, Field(ge=1, le=86_400)] = 60.0
    idle_seconds: Annotated[float, Field(ge=10, le=MAX_IDLE_SECONDS)] = 300.0
    timeout_seconds: Annotated[float, Field(ge=1, le=600)] = 60.0
    import_since: dt.date | None = None
    ca_file: Annotated[str | None, Field(min_length=1)] = None

    @field_validator("host")
    @classmethod
    def _check_host(cls, value: str) -> str:
        value = value.strip()
        if not value or any(c.isspace() for c in value) or "/" in value or "@" in value:
            raise ValueError("must be a host name or IP address, such as imap.example.com")
        return value

    @field_validator("security")
    @classmethod
    def _check_security(cls, value: str, info: ValidationInfo) -> str:
        host = info.data.get("host")
        if value == "none" and isinstance(host, str) and not _is_local(host):
            raise ValueError(
                f"'none' sends the password in clear text; it is only allowed for localhost, "
                f"not {host!r}: use tls or starttls"
            )
        return value

    @field_validator("move_to")
    @classmethod
    def _check_move_to(cls, value: str | None, info: ValidationInfo) -> str | None:
        folder = info.data.get("folder")
        if value is not None and isinstance(folder, str) and value == folder:
            raise ValueError("must differ from folder (mail would be moved onto itself)")
        return value

    @property
    def effective_port(self) -> int:
        return self.port if self.port is not None else DEFAULT_PORTS[self.security]

    @property
    def recipient(self) -> str:
        """The support address this mailbox receives mail for (the recipient given to routing)."""
        return self.address or self.username

    @property
    def source(self) -> str:
        """How intake rows name this mailbox, e.g. ``imap:support``."""
        return f"imap:{self.name}"

    def password(self, environ: Mapping[str, str] | None = None) -> str:
        """The password from the environment; a ``ChannelsError`` when it is not set."""
        env = os.environ if environ is None else environ
        value = env.get(self.password_env)
        if not value:
            state = "is empty" if value == "" else "is not set"
            message = (f"imap mailbox {self.name!r}: environment variable {self.password_env} {state} "
                       "(it holds the mailbox password; see password_env)")
            raise ChannelsError([message])
        return value

    def describe(self) -> str:
        """A log-safe one-liner: never the password."""
        return f"{self.username} on {self.host}:{self.effective_port} ({self.security}), folder {self.folder}"


class ChannelsConfig(_Strict):
    imap: list[ImapMailbox] = Field(default_factory=list)


TOP_LEVEL_KEYS = tuple(ChannelsConfig.model_fields)
IMAP_KEYS = tuple(ImapMailbox.model_fields)
_KEYS_AT = {(): TOP_LEVEL_KEYS, ("imap",): IMAP_KEYS}


# --- loading ---------------------------------------------------------------------------------------
def channels_path(settings: Any) -> Path | None:
    """The channels file to read, or None when none is configured.

    The default path (``config/channels.yaml``) may be absent: a laptop with no mailboxes. A path
    set explicitly through ``OMNIDESK_CHANNELS_FILE`` must exist.
    """
    path = Path(settings.channels_file)
    default = type(settings).model_fields["channels_file"].default
    if not path.exists() and path == Path(default):
        return None
    return path


def configured_channels(settings: Any, *, environ: Mapping[str, str] | None = None) -> ChannelsConfig:
    """The channels of these settings (empty when no channels file is configured)."""
    path = channels_path(settings)
    if path is None:
        return ChannelsConfig()
    return load_channels(path, environ=environ)


def load_channels(
    path: str | os.PathLike[str],
    *,
    environ: Mapping[str, str] | None = None,
    check_env: bool = True,
) -> ChannelsConfig:
    """Read and validate a channels file; raise ``ChannelsError`` listing every problem.

    With ``check_env`` (the default) each ``password_env`` variable must be set and non-empty.
    """
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ChannelsError([f"{file}: no such file (set OMNIDESK_CHANNELS_FILE or create it)"]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ChannelsError([f"{file}: cannot read: {exc}"]) from None
    return parse_channels(text, str(file), environ=environ, check_env=check_env, base_dir=file.parent)


def parse_channels(
    text: str,
    file: str = "<channels>",
    *,
    environ: Mapping[str, str] | None = None,
    check_env: bool = True,
    base_dir: Path | None = None,
) -> ChannelsConfig:
    """Validate channels YAML given as text (``load_channels`` without the file)."""
    doc = parse_yaml(text, file)
    issues: list[Issue] = list(doc.issues)
    if doc.root is None and not issues:
        return ChannelsConfig()  # an empty file: no channels
    data = doc.data
    config: ChannelsConfig | None = None
    if data is None and not issues:
        return ChannelsConfig()
    if data is not None and not isinstance(data, dict):
        issues.append(doc.issue((), "the channels file must be a mapping with sections such as imap:"))
    elif data is not None:
        if data.get("imap") is None and "imap" in data:
            data = {**data, "imap": []}  # "imap:" with nothing under it
        issues.extend(_cross_checks(doc, data, base_dir))
        if check_env:
            issues.extend(_env_checks(doc, data, os.environ if environ is None else environ))
        try:
            config = ChannelsConfig.model_validate(data)
        except ValidationError as exc:
            issues.extend(_pydantic_issues(doc, exc))
    if issues:
        raise ChannelsError([str(i) for i in sorted(set(issues))])
    assert config is not None
    if base_dir is not None:
        config = _resolve_paths(config, base_dir)
    return config


def _cross_checks(doc: YamlDocument, data: dict[str, Any], base_dir: Path | None) -> list[Issue]:
    """What one key alone cannot tell: two mailboxes with one name, two entries polling the same
    folder of one account, a mailbox without a support address, a CA file that is not there.

    Run on the plain data (before the models), so these come out together with the type errors."""
    items = data.get("imap")
    if not isinstance(items, list):
        return []
    issues: list[Issue] = []
    names: dict[str, int] = {}
    folders: dict[tuple[str, str, str], int] = {}
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            continue
        name = item.get("name")
        if isinstance(name, str):
            if name in names:
                line, _ = doc.position(("imap", names[name], "name"))
                issues.append(doc.issue(("imap", index, "name"),
                                        f"duplicate mailbox name {name!r} (first used on line {line})"))
            else:
                names[name] = index
        host, user, folder = item.get("host"), item.get("username"), item.get("folder", "INBOX")
        if isinstance(host, str) and isinstance(user, str) and isinstance(folder, str):
            key = (host.strip().lower(), user.strip().lower(), folder)
            if key in folders:
                line, _ = doc.position(("imap", folders[key]))
                issues.append(doc.issue(
                    ("imap", index, "folder"),
                    f"folder {folder!r} of {user} on {host} is already imported by the mailbox on line "
                    f"{line}; one folder, one mailbox entry",
                ))
            else:
                folders[key] = index
        if isinstance(user, str) and "@" not in user and "address" not in item:
            issues.append(_issue_at_parent(
                doc,
                ("imap", index, "address"),
                f"missing: username {user!r} is not an email address, so give the support "
                "address this mailbox receives mail for",
            ))
        ca_file = item.get("ca_file")
        if isinstance(ca_file, str) and ca_file:
            ca = Path(ca_file)
            if not ca.is_absolute() and base_dir is not None:
                ca = base_dir / ca
            if not ca.is_file():
                issues.append(doc.issue(("imap", index, "ca_file"), f"no such file: {ca}"))
            if item.get("security") == "none":
                issues.append(doc.issue(("imap", index, "ca_file"), "has no use with security: none"))
    return issues


def _pydantic_issues(doc: YamlDocument, exc: ValidationError) -> list[Issue]:
    issues: list[Issue] = []
    for error in exc.errors(include_url=False):
        path = tuple(error["loc"])
        kind = error["type"]
        if kind == "extra_forbidden":
            key = str(path[-1])
            parent = tuple(path[:-1])
            known = _known_keys(parent)
            if key == "password":
                message = ("unknown key 'password': passwords never go in this file; put the password "
                           "in an environment variable and name it with password_env")
            else:
                message = f"unknown key {key!r}{did_you_mean(key, known)}"
                if known:
                    message += f"; known keys: {', '.join(known)}"
            issues.append(doc.issue(path, message, key=True))
        elif kind == "missing":
            issues.append(_issue_at_parent(doc, path, "missing (this key is required)"))
        elif kind == "literal_error":
            expected = _literal_choices(error)
            got = error.get("input")
            message = f"must be one of {', '.join(expected)}"
            if isinstance(got, str):
                message = f"{got!r} is not allowed: " + message + did_you_mean(got, expected)
            issues.append(doc.issue(path, message))
        elif kind == "string_pattern_mismatch":
            issues.append(doc.issue(path, _pattern_message(path)))
        elif kind in ("model_type", "dict_type"):
            issues.append(doc.issue(path, "must be a mapping of keys (name:, host:, ...)"))
        elif kind == "list_type":
            issues.append(doc.issue(path, "must be a list of entries, each starting with '- name:'"))
        else:
            message = str(error["msg"]).removeprefix("Value error, ")
            issues.append(doc.issue(path, message[:1].lower() + message[1:]))
    return issues


def _known_keys(parent: tuple[Any, ...]) -> tuple[str, ...]:
    shape = tuple(p for p in parent if not isinstance(p, int))
    return _KEYS_AT.get(shape, ())


def _literal_choices(error: Any) -> list[str]:
    expected = str((error.get("ctx") or {}).get("expected", ""))
    return [part.strip(" '") for part in expected.replace(" or ", ", ").split(",") if part.strip(" '")]


def _pattern_message(path: tuple[Any, ...]) -> str:
    key = path[-1] if path else ""
    if key == "name":
        return "must be a short name of letters, digits, '.', '_' or '-' (used in logs and intake sources)"
    if key == "password_env":
        return "must be the name of an environment variable, such as OMNIDESK_IMAP_SUPPORT_PASSWORD"
    if key == "address":
        return "must be an email address, such as support@example.com"
    return "has an invalid format"


def _env_checks(doc: YamlDocument, data: dict[str, Any], environ: Mapping[str, str]) -> list[Issue]:
    """Each mailbox's password variable must be set (checked on the plain data, with the rest)."""
    items = data.get("imap")
    if not isinstance(items, list):
        return []
    issues: list[Issue] = []
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            continue
        variable = item.get("password_env")
        if not isinstance(variable, str) or not re.match(_ENV, variable):
            continue  # the schema reports it
        value = environ.get(variable)
        if not value:
            state = "is empty" if value == "" else "is not set"
            name = item.get("name")
            whose = f"mailbox {name!r}" if isinstance(name, str) else "this mailbox"
            issues.append(doc.issue(
                ("imap", index, "password_env"),
                f"environment variable {variable} {state}; it must hold the password of {whose}",
            ))
    return issues


def _resolve_paths(config: ChannelsConfig, base_dir: Path) -> ChannelsConfig:
    boxes = []
    for box in config.imap:
        if box.ca_file is not None and not Path(box.ca_file).is_absolute():
            box = box.model_copy(update={"ca_file": str((base_dir / box.ca_file).resolve())})
        boxes.append(box)
    return config.model_copy(update={"imap": boxes})


def _issue_at_parent(doc: YamlDocument, path: tuple[str | int, ...], message: str) -> Issue:
    """An issue about a key that is not in the file: shown where the key belongs."""
    line, column = doc.position(path[:-1])
    return Issue(doc.file, line, column, format_path(path), message)
