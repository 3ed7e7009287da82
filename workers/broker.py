"""The Dramatiq broker, chosen from the settings.

- ``OMNIDESK_REDIS_URL`` set: the Redis broker, with a short heartbeat so a killed worker's
  messages come back in seconds rather than a minute;
- ``OMNIDESK_BROKER_URL=amqp://...``: RabbitMQ;
- neither: an in-process broker for ``omnidesk run`` on a laptop. It keeps nothing across a
  restart, and needs not: the intake log and the outbox are durable and the sweeper re-enqueues.
"""

from __future__ import annotations

import dramatiq
from dramatiq.brokers.stub import StubBroker

from config.settings import Settings

__all__ = ["build_broker", "build_worker", "is_embedded"]


def build_broker(settings: Settings) -> dramatiq.Broker:
    broker: dramatiq.Broker
    if settings.redis_url:
        from dramatiq.brokers.redis import RedisBroker

        broker = RedisBroker(  # type: ignore[no-untyped-call]
            url=settings.redis_url,
            namespace=settings.redis_namespace,
            heartbeat_timeout=settings.heartbeat_timeout_seconds * 1000,
            # Maintenance (requeueing a dead worker's messages) runs on 1 in N fetches; the
            # default 1000 can leave them stranded on a quiet system.
            maintenance_chance=50,
        )
    elif settings.broker_url:
        from dramatiq.brokers.rabbitmq import RabbitmqBroker

        broker = RabbitmqBroker(url=settings.broker_url)
    else:
        broker = StubBroker()
        broker.emit_after("process_boot")
    dramatiq.set_broker(broker)
    return broker


def is_embedded(broker: dramatiq.Broker) -> bool:
    return isinstance(broker, StubBroker)


def build_worker(broker: dramatiq.Broker, settings: Settings) -> dramatiq.Worker:
    worker = dramatiq.Worker(broker, worker_threads=settings.worker_threads, worker_timeout=200)
    # Dramatiq prefetches 2 x threads by default; a worker whose threads block on the database
    # otherwise idles waiting on broker round trips. The setting lets operators tune it.
    if settings.worker_prefetch:
        worker.queue_prefetch = settings.worker_prefetch
    return worker
