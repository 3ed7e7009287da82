"""A running Omnidesk for agent API tests: the HTTP app (form, API) served by uvicorn on a free
port, a worker and sweeper, replies delivered to a real SMTP sink; and agents with tokens."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx

from config.settings import Settings
from tests.pipeline import Pipeline
from tickets.agents import add_agent, issue_token

__all__ = ["AgentDesk", "running_desk"]


class AgentDesk(Pipeline):
    """``Pipeline`` plus the web component, with helpers to act as agents over HTTP."""

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.settings.http_port}"

    def agent(self, name: str, email: str, *, role: str = "agent", teams: tuple[str, ...] = ()) -> str:
        """Create an agent in the store; returns its API token."""
        with self.app.db.write() as session:
            add_agent(session, name=name, email=email, role=role, teams=teams)
            return issue_token(session, email).token

    def client(self, token: str | None = None, **kwargs: Any) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.base_url, headers=headers, timeout=30, **kwargs)


@contextmanager
def running_desk(settings: Settings,
                 components: tuple[str, ...] = ("worker", "sweeper", "smtp", "web")) -> Iterator[AgentDesk]:
    """Make ``settings`` with ``outbound_smtp_url=smtp_sink.url`` to receive what is sent."""
    desk = AgentDesk(settings.model_copy(update={"http_host": "127.0.0.1"}))
    try:
        desk.start(components)
        desk.wait_until(_serving(desk), 15, "the HTTP server")
        yield desk
    finally:
        desk.stop()


def _serving(desk: AgentDesk) -> Any:
    def check() -> bool:
        try:
            return httpx.get(desk.base_url + "/healthz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    return check
