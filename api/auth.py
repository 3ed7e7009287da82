"""Who is calling: ``Authorization: Bearer od_...`` resolved to an active agent.

No token, or one that is unknown, revoked or belongs to an inactive agent, is ``401``; a valid
token whose role may not do what it asks is ``403``. Agents work tickets; admins also manage
agents and read reports.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from api.context import ApiContext, api_context
from api.errors import Forbidden, Unauthorized
from tickets.agents import AgentRecord, authenticate, touch_token

__all__ = ["Admin", "CurrentAgent", "require_admin", "require_agent"]

_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="omnidesk"'}
# Declares the bearer scheme in the OpenAPI description (every route that needs a token shows
# it). auto_error=False: a missing token is answered below, in the API's own error shape.
_bearer = HTTPBearer(auto_error=False, scheme_name="token",
                     description="An API token: `omnidesk agents add` or `omnidesk agents token` issues one.")


def require_agent(request: Request, ctx: Annotated[ApiContext, Depends(api_context)],
                  credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]) -> AgentRecord:
    token = credentials.credentials.strip() if credentials is not None else ""
    if not token:
        raise Unauthorized("send an API token as 'Authorization: Bearer od_...' "
                           "(create one with `omnidesk agents add` or `omnidesk agents token`)", headers=_CHALLENGE)
    with ctx.db.read() as session:
        found = authenticate(session, token)
    if found is None:
        raise Unauthorized("the API token is not valid: unknown, revoked, or its agent is inactive",
                           headers=_CHALLENGE)
    agent, stale_token = found
    if stale_token is not None:
        with ctx.db.write() as session:
            touch_token(session, stale_token)
    request.state.agent = agent
    return agent


def require_admin(agent: Annotated[AgentRecord, Depends(require_agent)]) -> AgentRecord:
    if not agent.is_admin:
        raise Forbidden(f"{agent.email} is an agent; this needs the admin role")
    return agent


CurrentAgent = Annotated[AgentRecord, Depends(require_agent)]
Admin = Annotated[AgentRecord, Depends(require_admin)]
