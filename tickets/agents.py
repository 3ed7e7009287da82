"""Agent accounts and their API tokens: the one source of truth for who is an agent.

A token is ``od_<prefix>_<secret>``: the prefix names it in listings and revocations (it is not
secret), the whole token is stored only as its SHA-256. Tokens are long random strings, so a
fast hash is the right one (a slow password hash buys nothing against 256 random bits and would
cost every API request). Verification compares hashes in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from tickets.commands import Executor
from tickets.models import Agent, ApiToken, Role, table_of, utcnow

__all__ = [
    "EMAIL_MAX",
    "EMAIL_PATTERN",
    "LABEL_MAX",
    "LABEL_PATTERN",
    "NAME_MAX",
    "NAME_PATTERN",
    "TEAM_MAX",
    "TOKEN_PREFIX",
    "AgentError",
    "AgentRecord",
    "IssuedToken",
    "add_agent",
    "agent_by_email",
    "agent_states",
    "authenticate",
    "count_agents",
    "inactive_among",
    "issue_token",
    "known_agent_emails",
    "list_agents",
    "list_tokens",
    "revoke_token",
    "rotate_token",
    "set_active",
    "touch_token",
    "update_agent",
]

TOKEN_PREFIX = "od_"
_PREFIX_BYTES = 6  # 12 hex characters: enough to name a token, far too few to guess one
_SECRET_BYTES = 32
# last_used_at is written at most this often per token, so reads do not all become writes.
_TOUCH_EVERY_SECONDS = 60
_agents = table_of(Agent)
# What the store accepts, as patterns the API's schema shows too. The character classes are
# spelt out rather than written \s because Python's \s and JSON Schema's (ECMA) disagree on a
# few characters, and a pattern must mean the same to both:
# - control characters (C0, C1, and the byte-order mark) are refused anywhere in any text:
#   PostgreSQL cannot store NUL at all, and tabs or line breaks would break every listing;
# - the white space around a value is what ``str.strip()`` removes once those are refused.
_CTRL = r"\x00-\x1f\x7f-\x9f\ufeff"
_WS = r"\x20\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
# An address the rules file accepts in a queue's ``agents:`` (one @, a dot in the domain), so
# that every agent can be named there.
EMAIL_PATTERN = rf"^[{_WS}]*[^@{_WS}{_CTRL}]+@[^@{_WS}{_CTRL}]+\.[^@{_WS}{_CTRL}]+[{_WS}]*$"
NAME_PATTERN = rf"^[^{_CTRL}]*[^{_WS}{_CTRL}][^{_CTRL}]*$"  # names and teams: something besides spaces
LABEL_PATTERN = rf"^[^{_CTRL}]*$"
_EMAIL = re.compile(EMAIL_PATTERN)
_CONTROL = re.compile(rf"[{_CTRL}]")
_ID = re.compile(r"[0-9]{1,18}")  # an agent's id, as the CLI and the API accept it for an email
_PREFIX = re.compile(r"[0-9a-f]{1,32}")  # what token_hex makes
# The columns' sizes (tickets/models.py): longer values are refused with a message, not by the
# database with an error. Counted before white space is stripped, as the API's schema counts.
NAME_MAX, EMAIL_MAX, LABEL_MAX, TEAM_MAX = 300, 320, 200, 200


class AgentError(Exception):
    """A bad request about agents or tokens, with a code the API and the CLI report."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class AgentRecord:
    id: int
    name: str
    email: str
    role: str
    teams: tuple[str, ...] = ()
    active: bool = True
    created_at: datetime | None = None

    @property
    def is_admin(self) -> bool:
        return self.role == Role.ADMIN.value

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id, "name": self.name, "email": self.email, "role": self.role,
            "teams": list(self.teams), "active": self.active,
            "created_at": self.created_at.isoformat() if self.created_at else None,
        }


@dataclass(frozen=True)
class IssuedToken:
    """A token as issued: ``token`` is shown to the user once and never stored."""

    agent: AgentRecord
    prefix: str
    token: str
    created_at: datetime = field(default_factory=utcnow)


def _record(agent: Agent) -> AgentRecord:
    return AgentRecord(agent.id, agent.name, agent.email, agent.role, tuple(agent.teams or ()), agent.active,
                       agent.created_at)


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def _normalise_email(email: str) -> str:
    normalised = email.strip().lower()
    # Lower-casing can lengthen a few letters (İ), so the stored form is measured too.
    if not _EMAIL.match(email) or max(len(email), len(normalised)) > EMAIL_MAX:
        raise AgentError("invalid_email", f"{email.strip()!r} is not an email address (expected "
                         f"name@example.com, at most {EMAIL_MAX} characters)")
    return normalised


def _text(value: str, code: str, what: str, limit: int, *, required: bool = True) -> str:
    if _CONTROL.search(value):
        raise AgentError(code, f"{what} cannot contain control characters (tabs, line breaks, NUL): {value!r}")
    if len(value) > limit:
        raise AgentError(code, f"{what} is {len(value)} characters long; at most {limit} fit")
    value = value.strip()
    if required and not value:
        raise AgentError(code, f"{what} cannot be empty")
    return value


def _name(name: str) -> str:
    return _text(name, "invalid_name", "an agent's name", NAME_MAX)


def _label(label: str) -> str:
    return _text(label, "invalid_label", "a token's label", LABEL_MAX, required=False)


def _check_role(role: str) -> str:
    if role not in {r.value for r in Role}:
        raise AgentError("invalid_role", f"role must be one of {', '.join(r.value for r in Role)}, not {role!r}")
    return role


def _teams(teams: Iterable[str]) -> list[str]:
    out = [_text(team, "invalid_team", "a team (queue) name", TEAM_MAX) for team in teams]
    return list(dict.fromkeys(out))


def add_agent(session: Session, *, name: str, email: str, role: str = Role.AGENT.value,
              teams: Iterable[str] = ()) -> AgentRecord:
    email = _normalise_email(email)
    name = _name(name)
    if session.execute(select(Agent.id).where(Agent.email == email)).first() is not None:
        raise AgentError("agent_exists", f"an agent with the email {email} exists already "
                         "(see `omnidesk agents list`)")
    agent = Agent(name=name, email=email, role=_check_role(role), teams=_teams(teams), active=True,
                  created_at=utcnow())
    session.add(agent)
    session.flush()
    return _record(agent)


def _agent(session: Session, email_or_id: str | int) -> Agent:
    agent: Agent | None
    if isinstance(email_or_id, int) or _ID.fullmatch(email_or_id):
        agent = session.get(Agent, int(email_or_id))
    else:
        agent = _by_email(session, email_or_id)
    if agent is None:
        raise AgentError("agent_not_found", f"no agent {email_or_id} (see `omnidesk agents list`)")
    return agent


def _by_email(session: Session, email: str) -> Agent | None:
    email = email.strip().lower()
    if _CONTROL.search(email):
        return None  # no agent has such an address, and PostgreSQL could not even compare a NUL
    return session.execute(select(Agent).where(Agent.email == email)).scalar_one_or_none()


def agent_by_email(session: Session, email: str) -> AgentRecord | None:
    found = _by_email(session, email)
    return _record(found) if found is not None else None


def update_agent(session: Session, email_or_id: str | int, *, name: str | None = None, role: str | None = None,
                 teams: Iterable[str] | None = None) -> AgentRecord:
    agent = _agent(session, email_or_id)
    if name is not None:
        agent.name = _name(name)
    if role is not None:
        role = _check_role(role)
        if role != Role.ADMIN.value:
            _keep_an_admin(session, agent, "take the admin role from")
        agent.role = role
    if teams is not None:
        agent.teams = _teams(teams)
    session.flush()
    return _record(agent)


def set_active(session: Session, email_or_id: str | int, active: bool) -> AgentRecord:
    """Deactivate (or reactivate) an agent: an inactive agent's tokens stop working at once."""
    agent = _agent(session, email_or_id)
    if not active:
        _keep_an_admin(session, agent, "deactivate")
    agent.active = active
    session.flush()
    return _record(agent)


def _keep_an_admin(session: Session, agent: Agent, what: str) -> None:
    """Refuse a change that leaves no active admin: nobody could manage agents over the API then.

    Every active admin's row is locked until commit, in id order, so two admins demoting each
    other at once take turns instead of both succeeding: the second one's PostgreSQL re-checks
    the condition on the rows it waited for and finds only itself (SQLite has one writer anyway).
    """
    if agent.role != Role.ADMIN.value or not agent.active:
        return
    admins = session.execute(
        select(Agent.id)
        .where(Agent.role == Role.ADMIN.value, Agent.active.is_(True))
        .order_by(Agent.id)
        .with_for_update()
    ).scalars().all()
    if all(admin_id == agent.id for admin_id in admins):
        raise AgentError("last_admin", f"cannot {what} {agent.email}: it is the only active admin; make "
                         "another agent an admin first (`omnidesk agents update EMAIL --role admin`)")


def list_agents(session: Session, *, include_inactive: bool = True, limit: int | None = None,
                offset: int = 0) -> list[AgentRecord]:
    query = select(Agent).order_by(Agent.email).offset(offset).limit(limit)
    if not include_inactive:
        query = query.where(Agent.active.is_(True))
    return [_record(a) for a in session.execute(query).scalars()]


def known_agent_emails(session: Session) -> set[str]:
    return {e for (e,) in session.execute(select(Agent.email).where(Agent.active.is_(True)))}


def agent_states(conn: Executor) -> dict[str, bool]:
    """Every agent's email (lower-cased) and whether it is active: what ``rules check`` compares
    the queues' ``agents:`` lists with."""
    return {str(email): bool(active) for email, active in conn.execute(select(_agents.c.email, _agents.c.active))}


def inactive_among(conn: Executor, emails: Iterable[str]) -> set[str]:
    """Which of ``emails`` (compared lower-cased, returned lower-cased) are inactive agents.

    One indexed query (``email`` is unique), cheap enough to run for every new ticket. An email
    the store does not know is not in the answer.
    """
    wanted = {e.lower() for e in emails}
    if not wanted:
        return set()
    rows = conn.execute(select(_agents.c.email).where(_agents.c.email.in_(wanted), _agents.c.active.is_(False)))
    return {str(email) for (email,) in rows}


def issue_token(session: Session, email_or_id: str | int, *, label: str = "") -> IssuedToken:
    agent = _agent(session, email_or_id)
    label = _label(label)
    if not agent.active:
        # It would not authenticate: say so now rather than hand out a token that fails later.
        raise AgentError("agent_inactive", f"{agent.email} is inactive, so a token would not work; "
                         f"activate it first (`omnidesk agents activate {agent.email}`)")
    prefix = secrets.token_hex(_PREFIX_BYTES)
    token = f"{TOKEN_PREFIX}{prefix}_{secrets.token_urlsafe(_SECRET_BYTES)}"
    now = utcnow()
    session.add(ApiToken(agent_id=agent.id, prefix=prefix, token_hash=_hash(token), label=label, created_at=now))
    session.flush()
    return IssuedToken(_record(agent), prefix, token, now)


def list_tokens(session: Session, email_or_id: str | int | None = None, *,
                include_revoked: bool = True) -> list[dict[str, Any]]:
    """Tokens by prefix with their agent, label and times; never the secret (it is not stored)."""
    query = (select(ApiToken, Agent.email, Agent.active).join(Agent, Agent.id == ApiToken.agent_id)
             .order_by(ApiToken.id))
    if email_or_id is not None:
        query = query.where(ApiToken.agent_id == _agent(session, email_or_id).id)
    if not include_revoked:
        query = query.where(ApiToken.revoked_at.is_(None))
    return [
        {
            "prefix": t.prefix, "agent": email, "label": t.label, "created_at": t.created_at.isoformat(),
            "last_used_at": t.last_used_at.isoformat() if t.last_used_at else None,
            "revoked_at": t.revoked_at.isoformat() if t.revoked_at else None,
            # What a request with it gets: only "active" authenticates.
            "state": "revoked" if t.revoked_at else ("active" if agent_active else "agent_inactive"),
        }
        for t, email, agent_active in session.execute(query)
    ]


def _token_row(session: Session, prefix: str) -> ApiToken:
    prefix = prefix.strip().removeprefix(TOKEN_PREFIX).split("_", 1)[0]
    row = (session.execute(select(ApiToken).where(ApiToken.prefix == prefix)).scalar_one_or_none()
           if _PREFIX.fullmatch(prefix) else None)
    if row is None:
        raise AgentError("token_not_found", f"no token with prefix {prefix!r} (see `omnidesk agents tokens`)")
    return row


def revoke_token(session: Session, prefix: str) -> bool:
    """Revoke a token at once; False when it was revoked already (revoking is idempotent)."""
    row = _token_row(session, prefix)
    if row.revoked_at is not None:
        return False
    row.revoked_at = utcnow()
    session.flush()
    return True


def rotate_token(session: Session, prefix: str) -> IssuedToken:
    """Revoke a token and issue its agent a new one with the same label, in one transaction."""
    row = _token_row(session, prefix)
    if row.revoked_at is not None:
        raise AgentError("token_revoked", f"token {row.prefix} is revoked already; issue a new one instead")
    row.revoked_at = utcnow()
    session.flush()
    return issue_token(session, row.agent_id, label=row.label)


def authenticate(session: Session, token: str) -> tuple[AgentRecord, int | None] | None:
    """The active agent a token belongs to, or None (unknown, malformed, revoked, inactive).

    Reads only. The second item is the token's id when its ``last_used_at`` is stale: the
    caller records the use with ``touch_token`` in a write transaction of its own.
    """
    if not token.startswith(TOKEN_PREFIX):
        return None
    prefix = token[len(TOKEN_PREFIX):].split("_", 1)[0]
    if not _PREFIX.fullmatch(prefix):
        return None  # not one of ours: no query needed
    found = session.execute(
        select(ApiToken, Agent).join(Agent, Agent.id == ApiToken.agent_id).where(ApiToken.prefix == prefix)
    ).first()
    if found is None:
        return None
    row, agent = found
    if not hmac.compare_digest(row.token_hash, _hash(token)) or row.revoked_at is not None or not agent.active:
        return None
    now = utcnow()
    stale = row.last_used_at is None or (now - row.last_used_at).total_seconds() > _TOUCH_EVERY_SECONDS
    return _record(agent), (row.id if stale else None)


def touch_token(session: Session, token_id: int) -> None:
    session.execute(update(ApiToken).where(ApiToken.id == token_id).values(last_used_at=utcnow()))


def count_agents(session: Session, *, include_inactive: bool = True) -> int:
    query = select(func.count(Agent.id))
    if not include_inactive:
        query = query.where(Agent.active.is_(True))
    return int(session.execute(query).scalar_one())
