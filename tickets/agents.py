"""Agent accounts and their API tokens: the one source of truth for who is an agent.

A token is ``od_<prefix>_<secret>``: the prefix names it in listings and revocations (it is not
secret), the whole token is stored only as its SHA-256. Tokens are long random strings, so a
fast hash is the right one (a slow password hash buys nothing against 256 random bits and would
cost every API request). Verification compares hashes in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from tickets.models import Agent, ApiToken, Role, utcnow

__all__ = [
    "AgentError",
    "AgentRecord",
    "IssuedToken",
    "TOKEN_PREFIX",
    "add_agent",
    "agent_by_email",
    "authenticate",
    "count_agents",
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
    email = email.strip()
    local, at, domain = email.rpartition("@")
    if not at or not local or "." not in domain or any(c.isspace() for c in email):
        raise AgentError("invalid_email", f"{email!r} is not an email address (expected name@example.com)")
    return email.lower()


def _check_role(role: str) -> str:
    if role not in {r.value for r in Role}:
        raise AgentError("invalid_role", f"role must be one of {', '.join(r.value for r in Role)}, not {role!r}")
    return role


def _teams(teams: Iterable[str]) -> list[str]:
    out = []
    for team in teams:
        team = team.strip()
        if not team:
            raise AgentError("invalid_team", "a team (queue) name cannot be empty")
        out.append(team)
    return list(dict.fromkeys(out))


def add_agent(session: Session, *, name: str, email: str, role: str = Role.AGENT.value,
              teams: Iterable[str] = ()) -> AgentRecord:
    email = _normalise_email(email)
    if not name.strip():
        raise AgentError("invalid_name", "an agent needs a name")
    if session.execute(select(Agent.id).where(Agent.email == email)).first() is not None:
        raise AgentError("agent_exists", f"an agent with the email {email} exists already "
                         "(see `omnidesk agents list`)")
    agent = Agent(name=name.strip(), email=email, role=_check_role(role), teams=_teams(teams), active=True,
                  created_at=utcnow())
    session.add(agent)
    session.flush()
    return _record(agent)


def _agent(session: Session, email_or_id: str | int) -> Agent:
    if isinstance(email_or_id, int) or str(email_or_id).isdigit():
        agent = session.get(Agent, int(email_or_id))
    else:
        agent = session.execute(select(Agent).where(Agent.email == str(email_or_id).strip().lower())).scalar_one_or_none()
    if agent is None:
        raise AgentError("agent_not_found", f"no agent {email_or_id} (see `omnidesk agents list`)")
    return agent


def agent_by_email(session: Session, email: str) -> AgentRecord | None:
    found = session.execute(select(Agent).where(Agent.email == email.strip().lower())).scalar_one_or_none()
    return _record(found) if found is not None else None


def update_agent(session: Session, email_or_id: str | int, *, name: str | None = None, role: str | None = None,
                 teams: Iterable[str] | None = None) -> AgentRecord:
    agent = _agent(session, email_or_id)
    if name is not None:
        if not name.strip():
            raise AgentError("invalid_name", "an agent needs a name")
        agent.name = name.strip()
    if role is not None:
        agent.role = _check_role(role)
    if teams is not None:
        agent.teams = _teams(teams)
    session.flush()
    return _record(agent)


def set_active(session: Session, email_or_id: str | int, active: bool) -> AgentRecord:
    """Deactivate (or reactivate) an agent: an inactive agent's tokens stop working at once."""
    agent = _agent(session, email_or_id)
    agent.active = active
    session.flush()
    return _record(agent)


def list_agents(session: Session, *, include_inactive: bool = True) -> list[AgentRecord]:
    query = select(Agent).order_by(Agent.email)
    if not include_inactive:
        query = query.where(Agent.active.is_(True))
    return [_record(a) for a in session.execute(query).scalars()]


def known_agent_emails(session: Session) -> set[str]:
    return {e for (e,) in session.execute(select(Agent.email).where(Agent.active.is_(True)))}


def issue_token(session: Session, email_or_id: str | int, *, label: str = "") -> IssuedToken:
    agent = _agent(session, email_or_id)
    prefix = secrets.token_hex(_PREFIX_BYTES)
    token = f"{TOKEN_PREFIX}{prefix}_{secrets.token_urlsafe(_SECRET_BYTES)}"
    now = utcnow()
    session.add(ApiToken(agent_id=agent.id, prefix=prefix, token_hash=_hash(token), label=label, created_at=now))
    session.flush()
    return IssuedToken(_record(agent), prefix, token, now)


def list_tokens(session: Session, email_or_id: str | int | None = None) -> list[dict[str, Any]]:
    query = select(ApiToken, Agent.email).join(Agent, Agent.id == ApiToken.agent_id).order_by(ApiToken.id)
    if email_or_id is not None:
        query = query.where(ApiToken.agent_id == _agent(session, email_or_id).id)
    return [
        {
            "prefix": t.prefix, "agent": email, "label": t.label, "created_at": t.created_at.isoformat(),
            "last_used_at": t.last_used_at.isoformat() if t.last_used_at else None,
            "revoked_at": t.revoked_at.isoformat() if t.revoked_at else None,
        }
        for t, email in session.execute(query)
    ]


def _token_row(session: Session, prefix: str) -> ApiToken:
    prefix = prefix.removeprefix(TOKEN_PREFIX).split("_", 1)[0]
    row = session.execute(select(ApiToken).where(ApiToken.prefix == prefix)).scalar_one_or_none()
    if row is None:
        raise AgentError("token_not_found", f"no token with prefix {prefix!r} (see `omnidesk agents tokens`)")
    return row


def revoke_token(session: Session, prefix: str) -> None:
    row = _token_row(session, prefix)
    if row.revoked_at is None:
        row.revoked_at = utcnow()
        session.flush()


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


def count_agents(session: Session) -> int:
    return int(session.execute(select(func.count(Agent.id))).scalar_one())
