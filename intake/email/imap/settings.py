"""The ``imap:`` section of the channels file: the mailboxes the IMAP pollers import mail from.

Secrets never live in the file: a mailbox names the environment variable that holds its password
(``password_env``), and loading checks that the variable is set, so a missing secret is a clear
error at start rather than a login failure later. ``config/channels.example.yaml`` documents every
key. The email adapter offers this section to the channels file (``intake.channels``).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from config.issues import Issue
from config.yamlpos import YamlDocument
from intake.channels import ChannelsError, issue_at_parent

__all__ = ["ImapMailbox", "check_imap_section", "resolve_imap_paths"]

DEFAULT_PORTS = {"tls": 993, "starttls": 143, "none": 143}
LOCAL_HOSTS = frozenset({"localhost", "localhost.localdomain", "ip6-localhost"})
# Longest wait between two IDLE commands: RFC 2177 servers may drop an idle client after 30 min.
MAX_IDLE_SECONDS = 29 * 60

_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"
_ENV = r"^[A-Za-z_][A-Za-z0-9_]*$"


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


def _cross_checks(doc: YamlDocument, items: Any, base_dir: Path | None) -> list[Issue]:
    """What one key alone cannot tell: two mailboxes with one name, two entries polling the same
    folder of one account, a mailbox without a support address, a CA file that is not there.

    Run on the plain data (before the models), so these come out together with the type errors."""
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
            issues.append(issue_at_parent(
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


def _env_checks(doc: YamlDocument, items: Any, environ: Mapping[str, str]) -> list[Issue]:
    """Each mailbox's password variable must be set (checked on the plain data, with the rest)."""
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


def resolve_imap_paths(boxes: list[ImapMailbox], base_dir: Path) -> list[ImapMailbox]:
    """CA files named relative to the channels file, made absolute."""
    out = []
    for box in boxes:
        if box.ca_file is not None and not Path(box.ca_file).is_absolute():
            box = box.model_copy(update={"ca_file": str((base_dir / box.ca_file).resolve())})
        out.append(box)
    return out


def check_imap_section(
    doc: YamlDocument, items: Any, *, environ: Mapping[str, str], base_dir: Path | None, check_env: bool
) -> list[Issue]:
    issues = _cross_checks(doc, items, base_dir)
    if check_env:
        issues.extend(_env_checks(doc, items, environ))
    return issues
