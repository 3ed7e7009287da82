"""The HTTP app: health checks, and every channel adapter's router (web form, webhooks)."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.responses import JSONResponse
from sqlalchemy import text

from intake.registry import Registry
from tickets.db import Database

__all__ = ["create_http_app"]


def create_http_app(db: Database, registry: Registry | None = None) -> FastAPI:
    api = FastAPI(title="Omnidesk", docs_url="/docs", redoc_url=None)
    for _name, router in registry.http_routers() if registry is not None else ():
        api.include_router(router)

    @api.get("/healthz")
    def healthz() -> dict[str, str]:
        """The process is up."""
        return {"status": "ok"}

    @api.get("/readyz")
    def readyz() -> Any:
        """The process can reach its database."""
        try:
            with db.read() as session:
                session.execute(text("SELECT 1"))
        except Exception as exc:
            return JSONResponse({"status": "unavailable", "error": exc.__class__.__name__}, status_code=503)
        return {"status": "ok"}

    return api
