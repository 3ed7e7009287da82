"""One contact per person: a Slack user whose profile email we know is the contact of that email.

Done at the edge, before the message is logged, so the router (which finds the contact by the
sender's identity, ``slack:U…``) lands on the same contact the person's emails have:

- only the email is known: the Slack id is added to that contact;
- only the Slack id is known: the email is added to it;
- neither: one contact is created with both;
- both, on two contacts: left alone. They may be one person, but merging is an agent's call
  (``omnidesk contacts merge``); the message is stored all the same.

The link is a convenience: any failure is logged and the message goes on without it.
"""

from __future__ import annotations

import logging
import threading

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from intake.adapter import AdapterContext
from tickets.commands import find_or_create_contact
from tickets.contacts import ContactError, ContactNotFound, add_identity, resolve_contact

__all__ = ["ContactLinker"]

log = logging.getLogger(__name__)


class ContactLinker:
    def __init__(self, ctx: AdapterContext) -> None:
        self.ctx = ctx
        self._done: set[tuple[str, str]] = set()
        self._lock = threading.Lock()

    def link(self, user_id: str, email: str, name: str = "") -> None:
        if not user_id or not email:
            return
        with self._lock:
            if (user_id, email) in self._done:
                return
        try:
            with self.ctx.db.write() as session:
                by_slack = _find(session, f"slack:{user_id}")
                by_email = _find(session, f"email:{email}")
                if by_slack is None and by_email is None:
                    ref = find_or_create_contact(session.connection(), identity=f"email:{email}", kind="email",
                                                 address=email, name=name)
                    add_identity(session, ref.id, "slack", user_id)
                elif by_slack is None and by_email is not None:
                    add_identity(session, by_email, "slack", user_id)
                elif by_email is None and by_slack is not None:
                    add_identity(session, by_slack, "email", email)
                elif by_slack != by_email:
                    log.info("slack user %s and %s are two contacts (%s, %s); merge them if they are one person",
                             user_id, email, by_slack, by_email)
        except (ContactError, SQLAlchemyError) as exc:
            log.warning("could not link slack user %s to %s: %s", user_id, email, exc)
            return
        with self._lock:
            self._done.add((user_id, email))


def _find(session: Session, key: str) -> int | None:
    try:
        return resolve_contact(session, key)
    except ContactNotFound:
        return None
