"""Dovecot for tests: a throwaway IMAP server on a free port, its mail in a temp dir.

Started with ``dovecot -F -c CONF`` (no systemd), plaintext login on 127.0.0.1, one
``passwd-file`` for the users and a Maildir per user. Works as root (the mail uid is
``nobody``) and as a plain user (everything runs as that user, without chroot).

    server = DovecotServer(tls=True).start()   # TLS too when openssl is there: server.tls_port
    server.add_user("support@example.test", "secret")
    server.append("support@example.test", b"From: ...")
    ...
    server.stop()
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

from imapclient import IMAPClient

from tests.peers import free_port, missing

__all__ = ["DovecotServer"]

_BINARY_DIRS = ("/usr/sbin", "/usr/local/sbin", "/sbin")


def _find_binary() -> str | None:
    found = shutil.which("dovecot")
    if found:
        return found
    for folder in _BINARY_DIRS:
        candidate = Path(folder) / "dovecot"
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return None


class DovecotServer:
    host = "127.0.0.1"

    def __init__(self, *, tls: bool = False) -> None:
        binary = _find_binary()
        if binary is None:
            missing("dovecot not found (apt-get install -y dovecot-imapd)")
        assert binary is not None
        self.binary = binary
        self.port = free_port()
        # Not pytest's tmp_path: it sits under a 0700 directory the mail uid cannot enter.
        self.dir = Path(tempfile.mkdtemp(prefix="omnidesk-dovecot-"))
        self.dir.chmod(0o755)
        # One passwd-file per user: Dovecot re-reads a changed passwd-file at most once a second,
        # but a file it has never read (a new user) is read at once.
        self.users_dir = self.dir / "users"
        self.users_dir.mkdir()
        self.users_dir.chmod(0o755)
        self.config_file = self.dir / "dovecot.conf"
        self.log_file = self.dir / "dovecot.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self._users: dict[str, str] = {}
        # TLS (imaps on tls_port, STARTTLS on port) with a throwaway CA; ca_file verifies it.
        self.tls_port: int | None = None
        self.ca_file: Path | None = None
        self.tls_error = "not requested"
        if tls:
            self._make_certificates()

    def _make_certificates(self) -> None:
        openssl = shutil.which("openssl")
        if openssl is None:
            self.tls_error = "openssl not found (apt-get install -y openssl)"
            return
        d = self.dir / "tls"
        d.mkdir()
        (d / "server.ext").write_text(
            "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n"
            "keyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n"
        )
        ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
        steps = [
            [openssl, "req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
             "-subj", "/CN=Omnidesk test CA", "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign"],
            [openssl, "req", *ec, "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=localhost"],
            [openssl, "x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
             "-CAcreateserial", "-out", "server.pem", "-days", "2", "-extfile", "server.ext"],
        ]
        for step in steps:
            done = subprocess.run(step, cwd=d, capture_output=True, timeout=30, check=False)
            if done.returncode != 0:
                self.tls_error = f"openssl failed: {done.stderr.decode(errors='replace')[-500:]}"
                return
        self.tls_port = free_port()
        self.ca_file = d / "ca.pem"
        self.tls_error = ""

    # --- life cycle --------------------------------------------------------------------------
    def _config(self) -> str:
        d = self.dir
        if os.geteuid() == 0:
            login_user, internal_user, internal_group = "dovenull", "dovecot", "dovecot"
            uid = gid = 65534
            anvil = ""
        else:
            me = pwd.getpwuid(os.geteuid())
            login_user = internal_user = me.pw_name
            internal_group = str(os.getegid())
            uid, gid = os.geteuid(), os.getegid()
            anvil = "  chroot =\n"
        login_chroot = "" if os.geteuid() == 0 else "  chroot =\n"
        return f"""\
instance_name = omnidesk-test-{self.port}
base_dir = {d}/run
state_dir = {d}/state
protocols = imap
listen = 127.0.0.1
{self._ssl_settings()}
disable_plaintext_auth = no
auth_mechanisms = plain login
auth_failure_delay = 0
log_path = {self.log_file}
mail_location = maildir:{d}/mail/%u
default_login_user = {login_user}
default_internal_user = {internal_user}
default_internal_group = {internal_group}
first_valid_uid = 1
first_valid_gid = 1
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {self.users_dir}/%u
}}
userdb {{
  driver = static
  args = uid={uid} gid={gid} home={d}/mail/%u
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {self.port}
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {self.tls_port or 0}
  }}
{login_chroot}}}
# Failed logins (the wrong-password tests) must not slow every later login from 127.0.0.1.
service anvil {{
  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
{anvil}}}
"""

    def _ssl_settings(self) -> str:
        if self.tls_port is None:
            return "ssl = no"
        tls = self.dir / "tls"
        return f"ssl = yes\nssl_cert = <{tls}/server.pem\nssl_key = <{tls}/server.key"

    def start(self) -> DovecotServer:
        self.config_file.write_text(self._config())
        mail = self.dir / "mail"
        mail.mkdir(exist_ok=True)
        if os.geteuid() == 0:
            os.chown(mail, 65534, 65534)  # the mail uid creates each user's Maildir in here
        self.proc = subprocess.Popen(
            [self.binary, "-F", "-c", str(self.config_file)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + 15
        while True:
            if self.proc.poll() is not None:
                err = self.proc.stderr.read().decode(errors="replace") if self.proc.stderr else ""
                raise RuntimeError(f"dovecot exited with {self.proc.returncode}: {err}{self._log_tail()}")
            try:
                with socket.create_connection((self.host, self.port), timeout=1) as sock:
                    sock.settimeout(2)
                    if sock.recv(64).startswith(b"* OK"):
                        return self
            except OSError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"dovecot did not answer on port {self.port}{self._log_tail()}")
            time.sleep(0.02)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)  # SIGKILL would leave its children behind
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        if self.proc is not None and self.proc.stderr is not None:
            self.proc.stderr.close()
        self.proc = None
        shutil.rmtree(self.dir, ignore_errors=True)

    def _log_tail(self) -> str:
        try:
            return "\n" + "\n".join(self.log_file.read_text(errors="replace").splitlines()[-20:])
        except OSError:
            return ""

    # --- users and mail ------------------------------------------------------------------------
    def add_user(self, user: str, password: str) -> None:
        """Add a user (a name without '/'); usable at once."""
        if "/" in user or user in self._users:
            raise ValueError(f"cannot add user {user!r}")
        self._users[user] = password
        (self.users_dir / user).write_text(f"{user}:{{PLAIN}}{password}\n")

    @contextmanager
    def client(self, user: str, password: str | None = None) -> Iterator[IMAPClient]:
        """A logged-in client for the test to look at or change the mailbox."""
        imap = IMAPClient(self.host, self.port, ssl=False, timeout=10)
        try:
            imap.login(user, password if password is not None else self._users[user])
            yield imap
        finally:
            try:
                imap.logout()
            except Exception:  # noqa: BLE001, S110 - already disconnected
                pass

    def append(
        self,
        user: str,
        messages: bytes | Iterable[bytes],
        *,
        folder: str = "INBOX",
        flags: tuple[str, ...] = (),
        when: datetime | None = None,
    ) -> list[int]:
        """Deliver messages into a folder (created if missing); returns their UIDs."""
        batch = [messages] if isinstance(messages, bytes) else list(messages)
        uids: list[int] = []
        with self.client(user) as imap:
            if not imap.folder_exists(folder):
                imap.create_folder(folder)
            for raw in batch:
                response = imap.append(folder, raw, flags=flags, msg_time=when)
                uids.append(_appended_uid(response))
        return uids

    def folder_uids(self, user: str, folder: str = "INBOX", criteria: str = "ALL") -> list[int]:
        with self.client(user) as imap:
            if not imap.folder_exists(folder):
                return []
            imap.select_folder(folder, readonly=True)
            return sorted(imap.search(criteria))

    def flags(self, user: str, folder: str = "INBOX") -> dict[int, set[str]]:
        with self.client(user) as imap:
            imap.select_folder(folder, readonly=True)
            uids = imap.search("ALL")
            fetched = imap.fetch(uids, ["FLAGS"]) if uids else {}
            return {uid: {f.decode() for f in data[b"FLAGS"]} for uid, data in fetched.items()}

    def uidvalidity(self, user: str, folder: str = "INBOX") -> int:
        with self.client(user) as imap:
            return int(imap.folder_status(folder, ["UIDVALIDITY"])[b"UIDVALIDITY"])


def _appended_uid(response: bytes) -> int:
    """UID from an APPEND answer such as ``[APPENDUID 1718 7] Append completed.`` (UIDPLUS)."""
    text = response.decode(errors="replace") if isinstance(response, bytes) else str(response)
    if "APPENDUID" in text:
        return int(text.split("APPENDUID", 1)[1].split("]", 1)[0].split()[1])
    return 0
