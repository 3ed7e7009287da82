"""A local stand-in for Twilio's REST API (Messages) speaking its documented wire format.

    POST /2010-04-01/Accounts/{AccountSid}/Messages.json   form body, HTTP Basic auth
         -> 201 and a Message resource (JSON), or a scripted error body
            {"code": ..., "message": ..., "more_info": ..., "status": ...}
    GET  /2010-04-01/Accounts/{AccountSid}/Messages.json?To=&From=&PageSize=
         -> a page {"messages": [...], "uri", "page", "page_size", "next_page_uri", ...}

Every request is recorded (``requests``); ``fail_next(status, code)`` makes the next creates
fail the way Twilio does; ``accept_then_fail(status)`` stores the message and still answers with
an error (the provider took it, the answer was lost), to test that a retry does not send twice.
The real ``twilio`` client is pointed here by ``OMNIDESK_TWILIO_API_BASE``.
"""

from __future__ import annotations

import base64
import json
import re
import threading
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, parse_qsl, urlsplit

__all__ = ["FakeTwilio", "Recorded"]

_MESSAGES = re.compile(r"^/2010-04-01/Accounts/(AC[0-9a-f]{32})/Messages\.json$")


@dataclass
class Recorded:
    method: str
    path: str
    form: dict[str, str]
    auth: tuple[str, str] | None


@dataclass
class FakeTwilio:
    account_sid: str = "AC" + "0" * 32
    auth_token: str = "test-auth-token"
    requests: list[Recorded] = field(default_factory=list)
    messages: list[dict[str, Any]] = field(default_factory=list)
    _script: list[tuple[int, int | None, bool]] = field(default_factory=list)
    # Media files by URL path: (content type, bytes), served with Basic auth like Twilio's.
    media: dict[str, tuple[str, bytes]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def fail_next(self, status: int, code: int | None = None, *, times: int = 1) -> None:
        with self._lock:
            self._script.extend([(status, code, False)] * times)

    def accept_then_fail(self, status: int = 500) -> None:
        with self._lock:
            self._script.append((status, None, True))

    def add_media(self, content_type: str, data: bytes) -> str:
        """Serve a file as Twilio serves a message's media; returns its public (twilio.com) URL."""
        path = (f"/2010-04-01/Accounts/{self.account_sid}/Messages/MM{uuid.uuid4().hex}"
                f"/Media/ME{uuid.uuid4().hex}")
        self.media[path] = (content_type, data)
        return "https://api.twilio.com" + path

    def add_recording(self, data: bytes) -> str:
        """Serve a voicemail recording; returns its RecordingUrl (Twilio adds .mp3 for MP3)."""
        path = f"/2010-04-01/Accounts/{self.account_sid}/Recordings/RE{uuid.uuid4().hex}"
        self.media[path + ".mp3"] = ("audio/mpeg", data)
        return "https://api.twilio.com" + path

    def created(self) -> list[Recorded]:
        return [r for r in self.requests if r.method == "POST"]

    # --- the server ----------------------------------------------------------------------------
    def start(self) -> FakeTwilio:
        peer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # quiet
                pass

            def _auth(self) -> tuple[str, str] | None:
                header = self.headers.get("Authorization", "")
                if not header.startswith("Basic "):
                    return None
                user, _, password = base64.b64decode(header[6:]).decode().partition(":")
                return user, password

            def _reply(self, status: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _error(self, status: int, code: int | None, message: str) -> None:
                self._reply(status, {"code": code, "message": message, "status": status,
                                     "more_info": f"https://www.twilio.com/docs/errors/{code}"})

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                form = dict(parse_qsl(self.rfile.read(length).decode(), keep_blank_values=True))
                peer._handle(self, "POST", form)

            def do_GET(self) -> None:
                query = {k: v[0] for k, v in parse_qs(urlsplit(self.path).query).items()}
                peer._handle(self, "GET", query)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def _handle(self, h: Any, method: str, form: dict[str, str]) -> None:
        path = urlsplit(h.path).path
        auth = h._auth()
        with self._lock:
            self.requests.append(Recorded(method, path, form, auth))
        if method == "GET" and ("/Media/" in path or "/Recordings/" in path):
            if auth != (self.account_sid, self.auth_token):
                h._error(401, 20003, "Authenticate")
                return
            if path not in self.media:
                h._error(404, 20404, f"The requested resource {path} was not found")
                return
            kind, data = self.media[path]
            h.send_response(200)
            h.send_header("Content-Type", kind)
            h.send_header("Content-Length", str(len(data)))
            h.end_headers()
            h.wfile.write(data)
            return
        match = _MESSAGES.match(path)
        if match is None:
            h._error(404, 20404, f"The requested resource {path} was not found")
            return
        if auth != (self.account_sid, self.auth_token) or match.group(1) != self.account_sid:
            h._error(401, 20003, "Authenticate")
            return
        if method == "GET":
            self._list(h, form)
            return
        with self._lock:
            step = self._script.pop(0) if self._script else None
        if step is not None and not step[2]:
            status, code, _ = step
            h._error(status, code, "scripted failure")
            return
        if not form.get("To") or not (form.get("Body") or form.get("ContentSid")):
            h._error(400, 21602, "Message body is required.")
            return
        resource = self._resource(form)
        with self._lock:
            self.messages.append(resource)
        if step is not None:
            h._error(step[0], step[1], "accepted, but the answer was lost")
            return
        h._reply(201, resource)

    def _resource(self, form: dict[str, str]) -> dict[str, Any]:
        sid = "SM" + uuid.uuid4().hex
        now = format_datetime(datetime.now(UTC), usegmt=True)
        return {
            "sid": sid, "account_sid": self.account_sid, "api_version": "2010-04-01",
            "to": form["To"], "from": form.get("From"), "body": form.get("Body", ""),
            "status": "queued", "direction": "outbound-api", "num_segments": "1", "num_media": "0",
            "date_created": now, "date_updated": now, "date_sent": None,
            "error_code": None, "error_message": None, "price": None, "price_unit": "USD",
            "messaging_service_sid": None,
            "uri": f"/2010-04-01/Accounts/{self.account_sid}/Messages/{sid}.json",
            "subresource_uris": {"media": f"/2010-04-01/Accounts/{self.account_sid}/Messages/{sid}/Media.json"},
        }

    def _list(self, h: Any, query: dict[str, str]) -> None:
        with self._lock:
            found = [m for m in reversed(self.messages)
                     if (not query.get("To") or m["to"] == query["To"])
                     and (not query.get("From") or m["from"] == query["From"])]
        size = int(query.get("PageSize") or 50)
        base = f"/2010-04-01/Accounts/{self.account_sid}/Messages.json"
        h._reply(200, {"messages": found[:size], "uri": base, "first_page_uri": base, "next_page_uri": None,
                       "previous_page_uri": None, "page": 0, "page_size": size, "start": 0, "end": len(found)})


def post_webhook(base_url: str, path: str, params: dict[str, str] | list[tuple[str, str]], auth_token: str, *,
                 signed_url: str | None = None, signature: str | None = None, timeout: float = 30) -> Any:
    """POST a form to one of our webhooks, signed exactly as Twilio signs it (``httpx.Response``).

    ``signed_url``: the URL the signature is computed for (default: the URL posted to), to test
    a proxy's public URL or a wrong one; ``signature`` overrides the signature itself.
    """
    import httpx
    from twilio.request_validator import RequestValidator

    url = base_url.rstrip("/") + path
    pairs = list(params.items()) if isinstance(params, dict) else list(params)
    if signature is None:
        signature = RequestValidator(auth_token).compute_signature(signed_url or url, dict(pairs))
    headers = {"X-Twilio-Signature": signature} if signature else {}
    return httpx.post(url, data=dict(pairs), headers=headers, timeout=timeout)
