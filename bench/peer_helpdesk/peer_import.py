"""Run django-helpdesk's own e-mail import (what ``manage.py get_email`` calls) until the queues'
mailboxes are empty, and write figures that only the importing process can see.

Usage (inside the peer's virtual environment)::

    python peer_import.py STATS.json [MAX_PASSES]

A pass is one ``helpdesk.email.process_email()`` call, i.e. one cron run of ``get_email``. When a
pass fails part-way (django-helpdesk then gives up on the rest of that queue until the next run),
the next pass continues, as the next cron run would; the number of passes is reported.
"""

import imaplib
import json
import os
import sys
import time
from typing import Any

T0 = time.perf_counter()
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "peer_settings")

import django

django.setup()

from django.db import connection
from helpdesk.email import process_email
from helpdesk.models import FollowUp, Queue

T_SETUP = time.perf_counter() - T0

STATEMENTS = {"total": 0}


def count_sql(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
    STATEMENTS["total"] += 1
    verb = sql.lstrip().split(None, 1)[0].upper() if sql.strip() else "?"
    STATEMENTS[verb] = STATEMENTS.get(verb, 0) + 1
    return execute(sql, params, many, context)


def remaining(q: Any) -> int:
    """Messages still waiting in the queue's mailbox (not counted as SQL: no ORM involved)."""
    if q.email_box_type == "local":
        d = q.email_box_local_dir
        return sum(1 for f in os.listdir(d) if os.path.isfile(os.path.join(d, f)))
    conn = imaplib.IMAP4(q.email_box_host, int(q.email_box_port))
    try:
        conn.login(q.email_box_user, q.email_box_pass)
        _typ, data = conn.status(q.email_box_imap_folder or "INBOX", "(MESSAGES)")
        return int(data[0].decode().rsplit("MESSAGES", 1)[1].strip(" )"))
    finally:
        conn.logout()


def main() -> None:
    out = sys.argv[1]
    max_passes = int(sys.argv[2]) if len(sys.argv) > 2 else 5
    queues = list(Queue.objects.filter(email_box_type__isnull=False))
    passes = []
    t_import = time.perf_counter()
    with connection.execute_wrapper(count_sql):
        for _ in range(max_passes):
            before = STATEMENTS["total"]
            t = time.perf_counter()
            process_email(quiet=True)
            secs = time.perf_counter() - t
            left = {q.slug: remaining(q) for q in queues}
            passes.append({"seconds": secs, "sql": STATEMENTS["total"] - before, "left": left})
            if sum(left.values()) == 0:
                break
            if len(passes) > 1 and passes[-1]["left"] == passes[-2]["left"]:
                break  # no progress: a message that fails every time blocks the rest
    import_seconds = time.perf_counter() - t_import
    stats = {
        "setup_seconds": T_SETUP,
        "import_seconds": import_seconds,
        "passes": passes,
        "sql": STATEMENTS,
        "followups": FollowUp.objects.count(),
    }
    with open(out, "w", encoding="utf-8") as f:
        json.dump(stats, f, indent=1)


if __name__ == "__main__":
    if os.environ.get("PEER_PROFILE"):  # where the peer's time goes (cProfile, pstats file)
        import cProfile

        cProfile.run("main()", os.environ["PEER_PROFILE"])
    else:
        main()
