"""The agent API's agents resource: who may call the API, and with which tokens.

    GET    /api/me                        any agent: who am I (name, email, role, teams)
    GET    /api/agents                    admin: the agents, active ones unless include_inactive
    POST   /api/agents                    admin: add an agent; answers its first token, once
    GET    /api/agents/{email}            admin: one agent
    PATCH  /api/agents/{email}            admin: change name, role, teams or active
    GET    /api/agents/{email}/tokens     admin: its tokens by prefix (never the secret)
    POST   /api/agents/{email}/tokens     admin: another token, answered once
    DELETE /api/tokens/{prefix}           admin: revoke a token at once
    POST   /api/tokens/{prefix}/rotate    admin: revoke a token, answer its replacement once

The same store functions as ``omnidesk agents`` (``tickets.agents``), one transaction a request;
their ``AgentError`` codes become the error body's code, under the matching status.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Body, Depends, Query, Response
from pydantic import BaseModel, Field
from sqlalchemy.orm import Session

from api.auth import CurrentAgent, require_admin
from api.context import ApiContext, api_context
from api.errors import ApiError, Conflict, Invalid, NotFound
from api.schemas import QueryParams, RequestBody, error_responses
from tickets import agents as store
from tickets.agents import (
    EMAIL_MAX,
    EMAIL_PATTERN,
    LABEL_MAX,
    LABEL_PATTERN,
    NAME_MAX,
    NAME_PATTERN,
    TEAM_MAX,
    AgentError,
    AgentRecord,
)

__all__ = ["router"]

router = APIRouter(tags=["agents"], responses=error_responses(401))
# Everything but /me is for admins: the dependency runs before the route, so an agent's token
# gets 403 whatever it asks for. Every admin route takes parameters, hence 422 for all.
admin = APIRouter(dependencies=[Depends(require_admin)], responses=error_responses(403, 422))

Ctx = Annotated[ApiContext, Depends(api_context)]
RoleName = Literal["agent", "admin"]
# The store checks names, teams, labels and emails with messages that say what is wrong
# (invalid_name, …); the schema shows its patterns without checking them a second time, and
# checks only the sizes.
Name = Annotated[str, Field(max_length=NAME_MAX, json_schema_extra={"pattern": NAME_PATTERN},
                            examples=["Ana Lima"])]
Team = Annotated[str, Field(max_length=TEAM_MAX, json_schema_extra={"pattern": NAME_PATTERN},
                            examples=["billing"])]
Label = Annotated[str, Field(max_length=LABEL_MAX, json_schema_extra={"pattern": LABEL_PATTERN})]
Email = Annotated[str, Field(max_length=EMAIL_MAX, json_schema_extra={"pattern": EMAIL_PATTERN},
                             examples=["ana@example.com"])]
EmailPath = Annotated[str, Field(description="The agent's email (any case).", examples=["ana@example.com"])]
PrefixPath = Annotated[str, Field(description="The token's prefix, as listings show it.",
                                  examples=["1a2b3c4d5e6f"])]

# AgentError codes by the status they answer with; any other code (invalid_email, invalid_role,
# invalid_team, invalid_name, …) is a value the API cannot accept.
_BY_CODE: dict[str, type[ApiError]] = {
    "agent_not_found": NotFound,
    "token_not_found": NotFound,
    "agent_exists": Conflict,
    "agent_inactive": Conflict,
    "token_revoked": Conflict,
    "last_admin": Conflict,
}


# --- shapes -------------------------------------------------------------------------------------
class Agent(BaseModel):
    id: int
    name: str
    email: str = Field(description="Lower-cased; how the rules file and assignment name the agent.")
    role: RoleName = Field(description="agent works tickets; admin also manages agents and reads reports.")
    teams: list[str] = Field(description="The queues the agent works.")
    active: bool = Field(description="An inactive agent's tokens are refused and assignment skips it.")
    created_at: datetime | None

    @classmethod
    def of(cls, record: AgentRecord) -> Agent:
        return cls.model_validate(record.to_dict())


class AgentQuery(QueryParams):
    include_inactive: bool = Field(False, description="Deactivated agents too.")
    limit: int = Field(100, ge=1, le=1000)
    offset: int = Field(0, ge=0, le=1_000_000_000)  # SQLite takes 64-bit integers at the most


class TokenQuery(QueryParams):
    include_revoked: bool = Field(False, description="Revoked tokens too.")


class AgentPage(BaseModel):
    items: list[Agent]
    total: int = Field(description="How many agents match, beyond this page too.")


class NewAgent(RequestBody):
    name: Name
    email: Email
    role: RoleName = "agent"
    teams: list[Team] = Field(default_factory=list)
    token_label: Label = Field("", description="What the first token is for, e.g. 'laptop'.")


class AgentChanges(RequestBody):
    """Only the fields given change; teams replaces the whole list."""

    name: Name | None = None
    role: RoleName | None = None
    teams: list[Team] | None = None
    active: bool | None = Field(None, description="false deactivates: its tokens stop working at once.")


class NewToken(RequestBody):
    label: Label = Field("", description="What the token is for, e.g. 'zapier'.")


class Token(BaseModel):
    prefix: str = Field(description="Names the token in listings, revocation and rotation; not secret.")
    agent: str = Field(description="The agent's email.")
    label: str
    created_at: datetime
    last_used_at: datetime | None = Field(description="Recorded at most once a minute.")
    revoked_at: datetime | None
    state: Literal["active", "revoked", "agent_inactive"] = Field(
        description="Whether a request with it gets in: only active tokens do.")


class TokenList(BaseModel):
    items: list[Token]


class IssuedToken(BaseModel):
    agent: Agent
    prefix: str
    token: str = Field(description="The token itself, shown this once: only its hash is stored. Send it "
                                   "as 'Authorization: Bearer <token>'.")
    created_at: datetime

    @classmethod
    def of(cls, issued: store.IssuedToken) -> IssuedToken:
        return cls(agent=Agent.of(issued.agent), prefix=issued.prefix, token=issued.token,
                   created_at=issued.created_at)


@contextmanager
def _transaction(ctx: ApiContext, *, write: bool = False) -> Iterator[Session]:
    """One transaction; a refusal of the store answers with its code and the matching status."""
    try:
        with ctx.db.write() if write else ctx.db.read() as session:
            yield session
    except AgentError as exc:
        raise _BY_CODE.get(exc.code, Invalid)(exc.message, code=exc.code) from None


# --- routes ---------------------------------------------------------------------------------------
@router.get("/me", response_model=Agent, summary="Who am I")
def me(agent: CurrentAgent) -> Agent:
    """The agent the token belongs to: name, email, role and teams."""
    return Agent.of(agent)


@admin.get("/agents", response_model=AgentPage, summary="List agents")
def list_agents(ctx: Ctx, query: Annotated[AgentQuery, Query()]) -> AgentPage:
    """Agents by email."""
    with _transaction(ctx) as session:
        found = store.list_agents(session, include_inactive=query.include_inactive, limit=query.limit,
                                  offset=query.offset)
        total = store.count_agents(session, include_inactive=query.include_inactive)
    return AgentPage(items=[Agent.of(a) for a in found], total=total)


@admin.post("/agents", response_model=IssuedToken, status_code=201, summary="Add an agent",
            responses=error_responses(400, 409))
def add_agent(ctx: Ctx, body: NewAgent) -> IssuedToken:
    """Add an agent and issue its first API token, answered this once (only its hash is stored)."""
    with _transaction(ctx, write=True) as session:
        record = store.add_agent(session, name=body.name, email=body.email, role=body.role, teams=body.teams)
        issued = store.issue_token(session, record.email, label=body.token_label)
    return IssuedToken.of(issued)


@admin.get("/agents/{email}", response_model=Agent, summary="One agent", responses=error_responses(404))
def get_agent(ctx: Ctx, email: EmailPath) -> Agent:
    with _transaction(ctx) as session:
        found = store.agent_by_email(session, email)
    if found is None:
        raise NotFound(f"no agent {email} (GET /api/agents lists them)", code="agent_not_found")
    return Agent.of(found)


@admin.patch("/agents/{email}", response_model=Agent, summary="Change an agent",
             responses=error_responses(400, 404, 409))
def update_agent(ctx: Ctx, email: EmailPath, body: AgentChanges) -> Agent:
    """Change the fields given. The last active admin cannot lose the role or be deactivated (409)."""
    with _transaction(ctx, write=True) as session:
        record = store.update_agent(session, email, name=body.name, role=body.role, teams=body.teams)
        if body.active is not None:
            record = store.set_active(session, email, body.active)
    return Agent.of(record)


@admin.get("/agents/{email}/tokens", response_model=TokenList, summary="An agent's tokens",
           responses=error_responses(404))
def list_tokens(ctx: Ctx, email: EmailPath, query: Annotated[TokenQuery, Query()]) -> TokenList:
    """The agent's tokens by prefix, oldest first; the secret is never stored, so never shown."""
    with _transaction(ctx) as session:
        found = store.list_tokens(session, email, include_revoked=query.include_revoked)
    return TokenList(items=[Token.model_validate(t) for t in found])


@admin.post("/agents/{email}/tokens", response_model=IssuedToken, status_code=201, summary="Issue a token",
            responses=error_responses(400, 404, 409))
def issue_token(ctx: Ctx, email: EmailPath, body: Annotated[NewToken | None, Body()] = None) -> IssuedToken:
    """Another token for the agent, answered this once. An inactive agent gets none (409)."""
    with _transaction(ctx, write=True) as session:
        issued = store.issue_token(session, email, label=body.label if body else "")
    return IssuedToken.of(issued)


@admin.delete("/tokens/{prefix}", status_code=204, response_class=Response, summary="Revoke a token",
              responses=error_responses(404))
def revoke_token(ctx: Ctx, prefix: PrefixPath) -> Response:
    """Requests with the token are refused from now on. Revoking a revoked token changes nothing."""
    with _transaction(ctx, write=True) as session:
        store.revoke_token(session, prefix)
    return Response(status_code=204)


@admin.post("/tokens/{prefix}/rotate", response_model=IssuedToken, status_code=201, summary="Rotate a token",
            responses=error_responses(404, 409))
def rotate_token(ctx: Ctx, prefix: PrefixPath) -> IssuedToken:
    """Revoke the token and issue its agent a replacement with the same label, in one transaction;
    the replacement is answered this once."""
    with _transaction(ctx, write=True) as session:
        issued = store.rotate_token(session, prefix)
    return IssuedToken.of(issued)


router.include_router(admin)
