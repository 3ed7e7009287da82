"""The HTTP app: health checks now; channel webhooks and the agent API mount here."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.responses import JSONResponse
from sqlalchemy import text

from tickets.db import Database

__all__ = ["create_http_app"]


def create_http_app(db: Database) -> FastAPI:
    api = FastAPI(title="Omnidesk", docs_url="/docs", redoc_url=None)

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
