"""The HTTP app of a running Omnidesk: health checks, every channel's router, the agent API."""

from __future__ import annotations

from typing import TYPE_CHECKING

from fastapi import FastAPI

from api import ApiContext, install_api
from intake.web import create_http_app

if TYPE_CHECKING:
    from omnidesk.app import App

__all__ = ["create_web_app"]


def create_web_app(app: App) -> FastAPI:
    web = create_http_app(app.db, app.registry)
    install_api(web, api_context_of(app))
    return web


def api_context_of(app: App) -> ApiContext:
    def deliver(ids: tuple[int, ...]) -> None:
        # Enqueue after the commit; the sweeper retries anything this misses.
        for outbox_id in ids:
            app.actors.deliver_outbox.send(outbox_id)

    return ApiContext(db=app.db, settings=app.settings, blobs=app.blobs, composer=app.registry, rules=app.current_rules,
                      on_outbox=deliver)
