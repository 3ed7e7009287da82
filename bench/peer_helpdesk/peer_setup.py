"""Prepare the peer's database: migrate, then create the e-mail queues described in a JSON file.

Usage (inside the peer's virtual environment, with DJANGO_SETTINGS_MODULE=peer_settings)::

    python peer_setup.py migrate
    python peer_setup.py queues QUEUES.json     # [{"title":..., "slug":..., "email_address":..., ...}]
    python peer_setup.py journal wal            # PRAGMA journal_mode (persists in the file)
"""

import json
import os
import sys

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "peer_settings")

import django

django.setup()

from django.core.management import call_command
from django.db import connection


def migrate() -> None:
    call_command("migrate", verbosity=0, interactive=False)


def queues(path: str) -> None:
    from helpdesk.models import Queue

    with open(path, encoding="utf-8") as f:
        specs = json.load(f)
    for spec in specs:
        Queue.objects.update_or_create(slug=spec["slug"], defaults=spec)


def journal(mode: str) -> None:
    with connection.cursor() as cur:
        cur.execute(f"PRAGMA journal_mode={mode}")
        print(cur.fetchone()[0])


if __name__ == "__main__":
    cmd, *args = sys.argv[1:]
    if cmd == "migrate":
        migrate()
    elif cmd == "queues":
        queues(args[0])
    elif cmd == "journal":
        journal(args[0])
    else:
        raise SystemExit(f"unknown command {cmd!r}")
