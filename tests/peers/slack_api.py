"""A local stand-in for Slack's Web API, speaking its wire format, for the real slack_sdk client.

Methods: ``auth.test``, ``chat.postMessage`` (with ``metadata``), ``chat.update``, ``chat.postEphemeral``,
``users.info``, ``conversations.history`` / ``conversations.replies`` (with
``include_all_metadata``) and file downloads under ``/files/``, which need the bot token as a
Bearer header like ``url_private`` does. Faults on demand: ``rate_limit(n, retry_after)`` answers
the next n posts with ``429`` and ``Retry-After``; ``drop_after_post(n)`` posts the next n messages
and then closes the connection without answering (the lost answer a sender must reconcile).

Also signs Events API bodies the way Slack does (``sign``), for the inbound side.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

__all__ = ["SlackApi", "sign"]

BOT_USER = "UBOT0001"
BOT_ID = "BBOT0001"
TOKEN = "xoxb-test-token"


def sign(secret: str, body: bytes, timestamp: int | None = None) -> dict[str, str]:
    """The headers Slack sends with a request: v0 signature over ``v0:{ts}:{body}``."""
    ts = str(int(time.time()) if timestamp is None else timestamp)
    digest = hmac.new(secret.encode(), b"v0:" + ts.encode() + b":" + body, hashlib.sha256).hexdigest()
    return {"X-Slack-Request-Timestamp": ts, "X-Slack-Signature": f"v0={digest}",
            "Content-Type": "application/json"}


@dataclass
class Posted:
    method: str
    args: dict[str, Any]
    at: float
    ts: str = ""


@dataclass
class SlackApi:
    users: dict[str, dict[str, Any]] = field(default_factory=dict)
    files: dict[str, bytes] = field(default_factory=dict)
    calls: list[Posted] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _rate_limited: int = 0
    _retry_after: int = 1
    _drop: int = 0
    _seq: int = 0

    # --- control ------------------------------------------------------------------------------
    def start(self) -> SlackApi:
        api = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                api._handle(self)

            def do_POST(self) -> None:
                api._handle(self)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/"

    @property
    def base(self) -> str:
        return self.url + "api/"

    def rate_limit(self, times: int, retry_after: int = 1) -> None:
        with self._lock:
            self._rate_limited, self._retry_after = times, retry_after

    def drop_after_post(self, times: int = 1) -> None:
        with self._lock:
            self._drop = times

    def posts(self, channel: str | None = None) -> list[Posted]:
        with self._lock:
            return [c for c in self.calls if c.method == "chat.postMessage" and c.ts
                    and (channel is None or c.args.get("channel") == channel)]

    def called(self, method: str) -> list[Posted]:
        with self._lock:
            return [c for c in self.calls if c.method == method]

    def wait_posts(self, count: int, channel: str | None = None, timeout: float = 30.0) -> list[Posted]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.posts(channel)
            if len(found) >= count:
                return found
            time.sleep(0.05)
        raise AssertionError(f"expected {count} posts to {channel or 'any channel'}, got {self.posts(channel)}")

    # --- the wire -----------------------------------------------------------------------------
    def _handle(self, h: BaseHTTPRequestHandler) -> None:
        parts = urlsplit(h.path)
        length = int(h.headers.get("Content-Length") or 0)
        raw = h.rfile.read(length) if length else b""
        auth = h.headers.get("Authorization", "")
        if parts.path.startswith("/files/"):
            data = self.files.get(parts.path)
            if auth != f"Bearer {TOKEN}":
                return self._reply(h, 403, b"forbidden", "text/plain")
            if data is None:
                return self._reply(h, 404, b"no such file", "text/plain")
            return self._reply(h, 200, data, "application/octet-stream")
        method = parts.path.rsplit("/", 1)[-1]
        args: dict[str, Any] = dict(parse_qsl(parts.query))
        ctype = h.headers.get("Content-Type", "")
        if raw and "json" in ctype:
            args.update(json.loads(raw))
        elif raw:
            args.update(parse_qsl(raw.decode()))
        if auth != f"Bearer {TOKEN}":
            return self._json(h, {"ok": False, "error": "not_authed"})
        handler = getattr(self, "_m_" + method.replace(".", "_"), None)
        if handler is None:
            return self._json(h, {"ok": False, "error": "unknown_method"})
        handler(h, args)

    def _reply(self, h: BaseHTTPRequestHandler, status: int, body: bytes, ctype: str,
               headers: dict[str, str] | None = None) -> None:
        h.send_response(status)
        h.send_header("Content-Type", ctype)
        h.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            h.send_header(name, value)
        h.end_headers()
        h.wfile.write(body)

    def _json(self, h: BaseHTTPRequestHandler, data: dict[str, Any], status: int = 200,
              headers: dict[str, str] | None = None) -> None:
        self._reply(h, status, json.dumps(data).encode(), "application/json; charset=utf-8", headers)

    def _m_auth_test(self, h: BaseHTTPRequestHandler, args: dict[str, Any]) -> None:
        self._json(h, {"ok": True, "url": "https://test.slack.com/", "team": "Test", "user": "omnidesk",
                       "team_id": "T0TEST", "user_id": BOT_USER, "bot_id": BOT_ID})

    def _m_users_info(self, h: BaseHTTPRequestHandler, args: dict[str, Any]) -> None:
        user = self.users.get(str(args.get("user")))
        if user is None:
            return self._json(h, {"ok": False, "error": "user_not_found"})
        self._json(h, {"ok": True, "user": {"id": args["user"], "name": user.get("name", ""),
                                            "is_bot": False,
                                            "profile": {"real_name": user.get("name", ""),
                                                        "email": user.get("email", "")}}})

    def _m_chat_postMessage(self, h: BaseHTTPRequestHandler, args: dict[str, Any]) -> None:
        with self._lock:
            if self._rate_limited > 0:
                self._rate_limited -= 1
                self.calls.append(Posted("chat.postMessage", args, time.monotonic()))
                retry = str(self._retry_after)
                limited = True
            else:
                limited = False
                self._seq += 1
                channel = str(args.get("channel", ""))
                if channel.startswith(("U", "W")):
                    channel = "D" + channel[1:]  # posting to a user id goes to the DM with the app
                    args = {**args, "dm_channel": channel}
                ts = f"{1700000000 + self._seq}.{self._seq:06d}"
                self.calls.append(Posted("chat.postMessage", args, time.monotonic(), ts))
                drop = self._drop > 0
                if drop:
                    self._drop -= 1
        if limited:
            return self._json(h, {"ok": False, "error": "ratelimited"}, status=429, headers={"Retry-After": retry})
        if drop:
            h.close_connection = True
            h.connection.shutdown(2)
            return
        self._json(h, {"ok": True, "channel": channel, "ts": ts,
                       "message": {"text": args.get("text", ""), "ts": ts, "bot_id": BOT_ID}})

    def _m_chat_update(self, h: BaseHTTPRequestHandler, args: dict[str, Any]) -> None:
        with self._lock:
            self.calls.append(Posted("chat.update", args, time.monotonic(), str(args.get("ts", ""))))
        self._json(h, {"ok": True, "channel": args.get("channel"), "ts": args.get("ts")})

    def _m_chat_postEphemeral(self, h: BaseHTTPRequestHandler, args: dict[str, Any]) -> None:
        with self._lock:
            self.calls.append(Posted("chat.postEphemeral", args, time.monotonic()))
        self._json(h, {"ok": True, "message_ts": "1.000001"})

    def _history(self, args: dict[str, Any], *, replies: bool) -> list[dict[str, Any]]:
        channel = str(args.get("channel", ""))
        out = []
        with self._lock:
            for c in self.calls:
                if c.method != "chat.postMessage" or not c.ts:
                    continue
                if c.args.get("dm_channel", c.args.get("channel")) != channel:
                    continue
                thread = c.args.get("thread_ts")
                if replies and thread != args.get("ts") and c.ts != args.get("ts"):
                    continue
                if not replies and thread:
                    continue
                message = {"type": "message", "ts": c.ts, "text": c.args.get("text", ""), "bot_id": BOT_ID}
                if thread:
                    message["thread_ts"] = thread
                if c.args.get("metadata"):
                    message["metadata"] = c.args["metadata"]
                out.append(message)
        return out

    def _m_conversations_open(self, h: BaseHTTPRequestHandler, args: dict[str, Any]) -> None:
        user = str(args.get("users", ""))
        self._json(h, {"ok": True, "channel": {"id": "D" + user[1:]}})

    def _m_conversations_history(self, h: BaseHTTPRequestHandler, args: dict[str, Any]) -> None:
        self._json(h, {"ok": True, "messages": list(reversed(self._history(args, replies=False))),
                       "has_more": False})

    def _m_conversations_replies(self, h: BaseHTTPRequestHandler, args: dict[str, Any]) -> None:
        self._json(h, {"ok": True, "messages": self._history(args, replies=True), "has_more": False})
