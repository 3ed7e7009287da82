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

COMPONENTS = ("worker", "sweeper", "smtp", "web", "imap", "rules-watch")
RULES_POLL_SECONDS = 2.0


class Running:
    """The components started so far, and how to stop each, newest first."""

    def __init__(self, app: App) -> None:
        self.app = app
        self.stop_event = threading.Event()
        self._stoppers: list[tuple[str, Callable[[], None]]] = []

    def start(self, components: Iterable[str]) -> None:
        wanted = set(components)
        # Start consumers before producers, so the first message finds a worker.
        for name in ("worker", "sweeper", "rules-watch", "imap", "web", "smtp"):
            if name in wanted:
                getattr(self, "_start_" + name.replace("-", "_"))()

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

    def _start_imap(self) -> None:
        try:
            from intake.imap import start_pollers
        except ImportError:
            return
        stopper = start_pollers(self.app, self.stop_event)
        if stopper is not None:
            self._stoppers.append(("imap pollers", stopper))

    def _start_web(self) -> None:
        import uvicorn

        from intake.web import create_http_app

        settings = self.app.settings
        config = uvicorn.Config(
            create_http_app(self.app.db),
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

    def _start_smtp(self) -> None:
        from intake.smtp import SmtpIntakeHandler, start_smtp_server

        settings = self.app.settings
        handler = SmtpIntakeHandler(
            self.app.accept_email, domains=settings.smtp_domains, max_bytes=settings.max_message_bytes
        )
        controller = start_smtp_server(handler, host=settings.smtp_host, port=settings.smtp_port)

        def stop() -> None:
            controller.stop()
            handler.executor.shutdown(wait=True)

        self._stoppers.append(("smtp", stop))
        log.info(
            "SMTP listening on %s:%d for %s", settings.smtp_host, settings.smtp_port, ", ".join(settings.smtp_domains)
        )


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
