"""Dramatiq actors: thin wrappers over plain functions of the pipeline.

Actors are declared on the broker handed in (not a module global), so a process, or a test, can
build several pipelines side by side.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import dramatiq

__all__ = ["Actors", "declare_actors"]

ROUTE_QUEUE = "route"
DELIVER_QUEUE = "deliver"


@dataclass(frozen=True)
class Actors:
    route_message: dramatiq.Actor  # type: ignore[type-arg]
    deliver_outbox: dramatiq.Actor  # type: ignore[type-arg]


def declare_actors(
    broker: dramatiq.Broker,
    *,
    route: Callable[[int], tuple[int, ...]],
    deliver: Callable[[int], str],
) -> Actors:
    """``route(intake_id)`` returns the outbox ids it created; each is then handed to delivery."""

    def route_message(intake_id: int) -> None:
        for outbox_id in route(intake_id):
            deliver_actor.send(outbox_id)

    def deliver_outbox(outbox_id: int) -> None:
        deliver(outbox_id)

    route_actor: dramatiq.Actor = dramatiq.actor(  # type: ignore[type-arg, call-overload]
        route_message,
        broker=broker,
        actor_name="route_message",
        queue_name=ROUTE_QUEUE,
        max_retries=5,
        min_backoff=500,
        max_backoff=30_000,
    )
    # Delivery keeps its own retry schedule in the outbox table; Dramatiq must not add another.
    deliver_actor: dramatiq.Actor = dramatiq.actor(  # type: ignore[type-arg, call-overload]
        deliver_outbox, broker=broker, actor_name="deliver_outbox", queue_name=DELIVER_QUEUE, max_retries=0
    )
    return Actors(route_message=route_actor, deliver_outbox=deliver_actor)
