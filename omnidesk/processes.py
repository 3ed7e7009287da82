"""Long-running processes: ``serve`` starts the chosen components and stops them cleanly.

``omnidesk run`` starts them all in one process (the laptop shape); the Procfile runs each in its
own process (the production shape). Shutdown on SIGINT/SIGTERM goes edge first: stop taking new
messages (SMTP, HTTP, IMAP), then let the worker finish the jobs it holds, then the sweeper.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable, Iterable
from types import FrameType
from typing import Any

from omnidesk.app import App

__all__ = ["COMPONENTS", "Running", "serve"]

log = logging.getLogger("omnidesk")

# The core's own components; each adapter adds its edges (``Adapter.components``: smtp, imap, ...).
CORE_COMPONENTS = ("worker", "sweeper", "web", "rules-watch")
RULES_POLL_SECONDS = 2.0


def all_components() -> tuple[str, ...]:
    from intake.registry import adapter_classes

    edges = [name for cls in adapter_classes() for name in cls.components]
    return (*CORE_COMPONENTS, *edges)


COMPONENTS = all_components()


class Running:
    """The components started so far, and how to stop each, newest first."""

    def __init__(self, app: App) -> None:
        self.app = app
        self.stop_event = threading.Event()
        self._stoppers: list[tuple[str, Callable[[], None]]] = []

    def start(self, components: Iterable[str]) -> None:
        wanted = set(components)
        # Start consumers before producers, so the first message finds a worker; then the web
        # app, then every adapter's edges.
        for name in ("worker", "sweeper", "rules-watch", "web"):
            if name in wanted:
                getattr(self, "_start_" + name.replace("-", "_"))()
        for name, runner in self.app.registry.components().items():
            if name in wanted:
                stopper = runner(self.stop_event)
                if stopper is not None:
                    self._stoppers.append((name, stopper))
                    log.info("started %s", name)

    def stop(self) -> None:
        self.stop_event.set()
        for name, stopper in reversed(self._stoppers):
            try:
                stopper()
                log.info("stopped %s", name)
            except Exception:
                log.exception("error while stopping %s", name)
        self._stoppers.clear()

    # --- components ------------------------------------------------------------------------
    def _start_worker(self) -> None:
        heartbeat = self.app.heartbeat.start()
        self._stoppers.append(("heartbeat", heartbeat.stop))
        worker = self.app.worker()
        worker.start()
        self._stoppers.append(("worker", worker.stop))
        log.info("worker started with %d threads", self.app.settings.worker_threads)

    def _start_sweeper(self) -> None:
        thread = threading.Thread(
            target=self.app.sweeper.run,
            args=(self.stop_event, self.app.settings.sweep_interval_seconds),
            name="sweeper",
            daemon=True,
        )
        thread.start()
        self._stoppers.append(("sweeper", lambda: thread.join(timeout=10)))

    def _start_rules_watch(self) -> None:
        holder = self.app.rules_holder
        if holder is None:
            return

        def watch() -> None:
            while not self.stop_event.wait(RULES_POLL_SECONDS):
                holder.reload_if_changed()

        thread = threading.Thread(target=watch, name="rules-watch", daemon=True)
        thread.start()
        self._stoppers.append(("rules watch", lambda: thread.join(timeout=5)))

    def _start_web(self) -> None:
        import uvicorn

        from omnidesk.web import create_web_app

        settings = self.app.settings
        config = uvicorn.Config(
            create_web_app(self.app),
            host=settings.http_host,
            port=settings.http_port,
            log_level=settings.log_level.lower(),
            lifespan="off",
        )
        server = uvicorn.Server(config)
        thread = threading.Thread(target=server.run, name="http", daemon=True)
        thread.start()

        def stop() -> None:
            server.should_exit = True
            thread.join(timeout=10)

        self._stoppers.append(("http", stop))
        log.info("HTTP listening on http://%s:%d", settings.http_host, settings.http_port)


def serve(app: App, components: Iterable[str]) -> int:
    """Run components until SIGINT or SIGTERM; SIGHUP reloads the rules file."""
    running = Running(app)

    def on_stop(signum: int, _frame: FrameType | None) -> None:
        log.info("received %s, shutting down", signal.Signals(signum).name)
        running.stop_event.set()

    def on_hup(_signum: int, _frame: FrameType | None) -> None:
        if app.rules_holder is not None:
            app.rules_holder.request_reload()  # the rules-watch thread does the work

    previous: dict[signal.Signals, Any] = {}
    for signum, handler in ((signal.SIGINT, on_stop), (signal.SIGTERM, on_stop), (signal.SIGHUP, on_hup)):
        previous[signum] = signal.signal(signum, handler)
    try:
        running.start(components)
        running.stop_event.wait()
    finally:
        running.stop()
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        app.close()
    return 0
