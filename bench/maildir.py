"""Deliver a benchmark corpus into a mailbox: a plain directory, a Maildir, or a real Dovecot.

Every helper takes messages in delivery order (e.g. ``corpus.shuffled(seed)``) and keeps that
order: files are named so that sorting them gives the delivery order, Maildir files are written
one by one in that order, and IMAP ``APPEND`` assigns increasing UIDs in that order.

``Dovecot`` runs a private Dovecot IMAP server from a temporary directory (as root, or as an
ordinary user with the adjustments in /work/shared/docs/real-peers.md), with one account per
support address, listening on 127.0.0.1 only::

    with Dovecot(["support@acme.test", "billing@acme.test"]) as imap:
        deliver_imap(imap, corpus.shuffled(7))
        ...  # a help desk polls 127.0.0.1:imap.port as support@acme.test / imap.password

Only the standard library is used, so the peer harness can call it from any interpreter.
"""

from __future__ import annotations

import contextlib
import imaplib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, Self


class _Deliverable(Protocol):
    @property
    def raw(self) -> bytes: ...
    @property
    def to_address(self) -> str: ...
    @property
    def index(self) -> int: ...


# ------------------------------------------------------------------------------------------------
# plain directory and Maildir
# ------------------------------------------------------------------------------------------------


def write_directory(directory: str | Path, messages: Iterable[_Deliverable]) -> list[Path]:
    """One file per message, ``{position:05d}-{index:05d}.eml``; returns the paths in order."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    paths = []
    for pos, m in enumerate(messages, 1):
        p = d / f"{pos:05d}-{m.index:05d}.eml"
        p.write_bytes(m.raw)
        paths.append(p)
    return paths


def write_directories_by_queue(
    root: str | Path, messages: Iterable[_Deliverable]
) -> dict[str, Path]:
    """One directory per destination address under ``root`` (named after the address)."""
    base = Path(root)
    groups: dict[str, list[_Deliverable]] = {}
    for m in messages:
        groups.setdefault(m.to_address, []).append(m)
    out = {}
    for addr, msgs in groups.items():
        out[addr] = base / addr
        write_directory(out[addr], msgs)
    return out


def write_maildir(
    maildir: str | Path,
    messages: Iterable[_Deliverable],
    *,
    uid: int | None = None,
    gid: int | None = None,
) -> int:
    """Deliver into ``maildir/new`` (creating cur/new/tmp) the way an MDA does: write to tmp,
    then rename into new. Returns the number of messages written."""
    md = Path(maildir)
    for sub in ("cur", "new", "tmp"):
        (md / sub).mkdir(parents=True, exist_ok=True)
    host = socket.gethostname().replace("/", "_").replace(":", "_")
    base = int(time.time())
    count = 0
    for count, m in enumerate(messages, 1):
        name = f"{base + count}.M{count:06d}P{os.getpid()}.{host},S={len(m.raw)}"
        tmp = md / "tmp" / name
        tmp.write_bytes(m.raw)
        if uid is not None:
            os.chown(tmp, uid, gid if gid is not None else -1)
        os.rename(tmp, md / "new" / name)
    if uid is not None:
        for p in [md, *(md / s for s in ("cur", "new", "tmp"))]:
            os.chown(p, uid, gid if gid is not None else -1)
    return count


# ------------------------------------------------------------------------------------------------
# Dovecot
# ------------------------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def dovecot_binary() -> str | None:
    for cand in (shutil.which("dovecot"), "/usr/sbin/dovecot"):
        if cand and os.path.exists(cand):
            return cand
    return None


def stop_process(proc: subprocess.Popen[bytes] | None, timeout: float = 10.0) -> None:
    """SIGTERM a server process and wait; SIGKILL it if it does not stop in time."""
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@dataclass
class Dovecot:
    """A private Dovecot IMAP server on 127.0.0.1 with one account per address.

    Start with ``start()`` or a ``with`` block; ``stop()`` sends SIGTERM and removes the
    directory (unless ``keep_dir``)."""

    users: Sequence[str]
    password: str = "bench-secret"
    port: int = 0
    directory: Path | None = None
    keep_dir: bool = False
    proc: subprocess.Popen[bytes] | None = None

    @property
    def host(self) -> str:
        return "127.0.0.1"

    def maildir(self, user: str) -> Path:
        assert self.directory is not None
        return self.directory / "mail" / user

    def _config(self, d: Path) -> str:
        root = os.geteuid() == 0
        me = pwd.getpwuid(os.geteuid()).pw_name
        mail_uid, mail_gid = (65534, 65534) if root else (os.geteuid(), os.getegid())
        lines = [
            f"instance_name = omnidesk-bench-{self.port}",
            f"base_dir = {d}/run",
            f"state_dir = {d}/state",
            "protocols = imap",
            "listen = 127.0.0.1",
            "ssl = no",
            "disable_plaintext_auth = no",
            "auth_mechanisms = plain login",
            f"log_path = {d}/dovecot.log",
            f"mail_location = maildir:{d}/mail/%u",
            "first_valid_uid = 1",
            "mail_max_userip_connections = 50",
        ]
        if root:
            lines += ["default_login_user = dovenull", "default_internal_user = dovecot"]
        else:
            lines += [
                f"default_login_user = {me}",
                f"default_internal_user = {me}",
                f"default_internal_group = {pwd.getpwuid(os.geteuid()).pw_name}",
            ]
        lines += [
            "passdb {",
            "  driver = passwd-file",
            f"  args = scheme=PLAIN username_format=%u {d}/users",
            "}",
            "userdb {",
            "  driver = static",
            f"  args = uid={mail_uid} gid={mail_gid} home={d}/mail/%u",
            "}",
            "service imap-login {",
            "  inet_listener imap {",
            "    address = 127.0.0.1",
            f"    port = {self.port}",
            "  }",
            "  inet_listener imaps {",
            "    port = 0",
            "  }",
        ]
        if not root:
            lines += ["  chroot = "]
        lines += ["}"]
        if not root:
            lines += ["service anvil {", "  chroot = ", "}"]
        return "\n".join(lines) + "\n"

    def start(self, timeout: float = 10.0) -> Self:
        binary = dovecot_binary()
        if binary is None:
            raise RuntimeError("dovecot not found: apt-get install -y dovecot-imapd")
        if not self.port:
            self.port = _free_port()
        d = Path(tempfile.mkdtemp(prefix="omnidesk-bench-dovecot-"))
        os.chmod(d, 0o755)
        self.directory = d
        for sub in ("run", "state", "mail"):
            (d / sub).mkdir()
        if os.geteuid() == 0:
            os.chown(d / "mail", 65534, 65534)
        (d / "users").write_text("".join(f"{u}:{{PLAIN}}{self.password}\n" for u in self.users))
        conf = d / "dovecot.conf"
        conf.write_text(self._config(d))
        self.proc = subprocess.Popen(
            [binary, "-F", "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                err = self.proc.stderr.read().decode(errors="replace") if self.proc.stderr else ""
                raise RuntimeError(f"dovecot exited: {err.strip()}")
            try:
                with socket.create_connection((self.host, self.port), timeout=0.5) as s:
                    if s.recv(64).startswith(b"* OK"):
                        return self
            except OSError:
                pass
            time.sleep(0.03)
        self.stop()
        raise RuntimeError("dovecot did not answer in time")

    def stop(self) -> None:
        stop_process(self.proc)
        self.proc = None
        if self.directory is not None and not self.keep_dir:
            shutil.rmtree(self.directory, ignore_errors=True)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def connect(self, user: str) -> imaplib.IMAP4:
        conn = imaplib.IMAP4(self.host, self.port)
        conn.login(user, self.password)
        return conn

    def count(self, user: str, folder: str = "INBOX") -> int:
        """Messages in ``folder`` of ``user`` (IMAP STATUS)."""
        return mailbox_count(self.host, self.port, user, self.password, folder)


def mailbox_count(host: str, port: int, user: str, password: str, folder: str = "INBOX") -> int:
    conn = imaplib.IMAP4(host, port)
    try:
        conn.login(user, password)
        typ, data = conn.status(folder, "(MESSAGES)")
        if typ != "OK" or not data or data[0] is None:
            return 0
        text = data[0].decode() if isinstance(data[0], bytes) else str(data[0])
        return int(text.rsplit("MESSAGES", 1)[1].strip(" )"))
    finally:
        with contextlib.suppress(Exception):  # best effort on a benchmark connection
            conn.logout()


def deliver_imap(
    server: Dovecot,
    messages: Iterable[_Deliverable],
    folder: str = "INBOX",
    *,
    date_time: str | None = None,
) -> dict[str, int]:
    """APPEND each message to the mailbox of its ``to_address``, in the given order.
    Returns the number delivered per address."""
    conns: dict[str, imaplib.IMAP4] = {}
    counts: dict[str, int] = {}
    try:
        for m in messages:
            conn = conns.get(m.to_address)
            if conn is None:
                conn = conns[m.to_address] = server.connect(m.to_address)
            typ, data = conn.append(folder, "", date_time, m.raw)
            if typ != "OK":
                raise RuntimeError(f"APPEND failed for {m.to_address}: {data!r}")
            counts[m.to_address] = counts.get(m.to_address, 0) + 1
    finally:
        for c in conns.values():
            with contextlib.suppress(Exception):
                c.logout()
    return counts


def deliver_maildir(server: Dovecot, messages: Iterable[_Deliverable]) -> dict[str, int]:
    """Write each message straight into the Maildir of its ``to_address`` (faster than
    APPEND; Dovecot assigns UIDs when it next scans ``new/``, in directory-listing order, so
    use ``deliver_imap`` when the UID order must equal the delivery order)."""
    groups: dict[str, list[_Deliverable]] = {}
    for m in messages:
        groups.setdefault(m.to_address, []).append(m)
    root = os.geteuid() == 0
    out = {}
    for addr, msgs in groups.items():
        out[addr] = write_maildir(
            server.maildir(addr), msgs, uid=65534 if root else None, gid=65534 if root else None
        )
    return out
