"""django-helpdesk as the benchmark's peer: set it up in its own virtual environment and measure
it ingesting a generated corpus.

The peer runs exactly as its documentation describes: ``pip install django-helpdesk`` into a
separate venv (default ``bench/.peer/venv``), a minimal Django project on SQLite with Django's and
django-helpdesk's defaults (``bench/peer_helpdesk/``), two queues that import e-mail (one per
corpus address), outgoing mail to a local sink. Its import is its own code path:
``helpdesk.email.process_email()``, the function behind ``manage.py get_email``.

Intake path. By default both queues poll a private Dovecot on 127.0.0.1 over IMAP (the corpus is
APPENDed in shuffled order first), the same real server Omnidesk reads. ``intake="local"`` uses
django-helpdesk's local-directory mailbox instead; it opens each file in text mode with the
locale's encoding, so a single 8-bit message in a legacy charset raises ``UnicodeDecodeError``
and aborts the rest of that queue's run: IMAP is the path that works well for the peer.

What one run reports (``run_peer``): wall time and messages/s of the import process (Django start-
up included, as ``get_email`` from cron would pay it), CPU seconds and peak RSS of that process
(``wait4`` rusage), SQL statements per message (a ``connection.execute_wrapper`` counter inside the
import process), and correctness read back from the peer's database against the corpus manifest:
tickets vs expected threads, replies on their thread's ticket, attachments stored (by SHA-256 of
the stored files), acknowledgements that reached the sink.

Command line::

    python -m bench.peer_helpdesk --n 2000            # default SQLite, then WAL
    python -m bench.peer_helpdesk --n 2000 --runs 3 --json bench/results/peer.json
"""

from __future__ import annotations

import argparse
import email
import email.policy
import hashlib
import json
import os
import shutil
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from bench.corpus import QUEUE_ADDRESSES, Corpus, generate_corpus
from bench.maildir import Dovecot, deliver_imap, write_directories_by_queue

HERE = Path(__file__).resolve().parent
TEMPLATE_DIR = HERE / "peer_helpdesk"
DEFAULT_VENV = HERE / ".peer" / "venv"
# 2.6.1 is the newest release on PyPI when this was written; it needs Python >= 3.10 and
# Django >= 5.2 and installs on 3.11 from wheels only (Django, DRF, bs4, nh3, markdown, ...).
PEER_PACKAGE = os.environ.get("OMNIDESK_BENCH_PEER_PACKAGE", "django-helpdesk==2.6.1")
QUEUE_SLUGS = {QUEUE_ADDRESSES[0]: "support", QUEUE_ADDRESSES[1]: "billing"}
HTML_BODY_NAME = "email_html_body.txt"  # django-helpdesk keeps the HTML body as an attachment


# ------------------------------------------------------------------------------------------------
# the peer's environment
# ------------------------------------------------------------------------------------------------


def venv_python(venv: Path) -> Path:
    return venv / "bin" / "python"


def ensure_venv(
    venv: Path = DEFAULT_VENV, package: str = PEER_PACKAGE, *, quiet: bool = True
) -> Path:
    """Create the peer's venv and install django-helpdesk into it (once); return its python."""
    py = venv_python(venv)
    if py.exists():
        probe = subprocess.run(
            [str(py), "-c", "import helpdesk, django"], capture_output=True, check=False
        )
        if probe.returncode == 0:
            return py
    venv.parent.mkdir(parents=True, exist_ok=True)
    base = getattr(sys, "_base_executable", None) or sys.executable
    subprocess.run([base, "-m", "venv", "--clear", str(venv)], check=True)
    cmd = [str(py), "-m", "pip", "install", "--disable-pip-version-check", package]
    if quiet:
        cmd.insert(4, "-q")
    subprocess.run(cmd, check=True)
    return py


def peer_versions(python: Path) -> dict[str, str]:
    code = (
        "import json, importlib.metadata as m, sqlite3, platform\n"
        "print(json.dumps({'django-helpdesk': m.version('django-helpdesk'),"
        " 'Django': m.version('Django'), 'python': platform.python_version(),"
        " 'sqlite': sqlite3.sqlite_version}))"
    )
    out = subprocess.run([str(python), "-c", code], capture_output=True, text=True, check=True)
    versions: dict[str, str] = json.loads(out.stdout)
    return versions


def dovecot_version() -> str:
    try:
        out = subprocess.run(["dovecot", "--version"], capture_output=True, text=True, check=False)
        return out.stdout.split()[0] if out.returncode == 0 and out.stdout else "?"
    except OSError:
        return "not installed"


def _peer_env(workdir: Path, db: Path, sink: MailSink) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "PYTHON"))}
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "peer_settings",
            "PYTHONPATH": str(TEMPLATE_DIR),
            "PYTHONDONTWRITEBYTECODE": "1",
            "PEER_WORKDIR": str(workdir),
            "PEER_DB_PATH": str(db),
            "PEER_MEDIA_ROOT": str(workdir / "media"),
            "LC_ALL": "C.UTF-8",
            "LANG": "C.UTF-8",
            **sink.env(),
        }
    )
    return env


def _setup(python: Path, env: dict[str, str], *args: str) -> str:
    res = subprocess.run(
        [str(python), str(TEMPLATE_DIR / "peer_setup.py"), *args],
        env=env,
        cwd=str(TEMPLATE_DIR),
        capture_output=True,
        text=True,
        check=False,
    )
    if res.returncode != 0:
        raise RuntimeError(f"peer setup {' '.join(args)} failed:\n{res.stderr[-3000:]}")
    return res.stdout.strip()


def template_db(python: Path, cache_dir: Path) -> Path:
    """A migrated, empty peer database (migrations take seconds; done once per cache dir)."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    v = peer_versions(python)
    db = cache_dir / f"helpdesk-{v['django-helpdesk']}-django-{v['Django']}.sqlite3"
    if not db.exists():
        tmp = db.with_name(db.name + ".tmp")
        tmp.unlink(missing_ok=True)
        sink = MailSink("file", cache_dir / "unused-mail")
        _setup(python, _peer_env(cache_dir, tmp, sink), "migrate")
        os.replace(tmp, db)
    return db


# ------------------------------------------------------------------------------------------------
# the outgoing-mail sink
# ------------------------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class MailSink:
    """Where the peer's outgoing mail goes: an SMTP server on 127.0.0.1 (aiosmtpd, in this
    process) or Django's file backend. ``messages()`` returns what arrived, parsed."""

    def __init__(self, kind: str, directory: Path) -> None:
        self.kind = kind
        self.directory = directory
        self.port = 0
        self._controller: Any = None
        self._received: list[bytes] = []
        self._lock = threading.Lock()

    def start(self) -> MailSink:
        if self.kind == "smtp":
            from aiosmtpd.controller import Controller

            received, lock = self._received, self._lock

            class Handler:
                async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
                    with lock:
                        received.append(envelope.original_content or envelope.content)
                    return "250 OK"

            self.port = _free_port()
            self._controller = Controller(Handler(), hostname="127.0.0.1", port=self.port)
            self._controller.start()
        else:
            self.directory.mkdir(parents=True, exist_ok=True)
        return self

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def env(self) -> dict[str, str]:
        if self.kind == "smtp":
            return {"PEER_MAIL_SINK": "smtp", "PEER_SMTP_PORT": str(self.port)}
        return {"PEER_MAIL_SINK": "file", "PEER_MAIL_DIR": str(self.directory)}

    def messages(self) -> list[email.message.Message]:
        raws: list[bytes] = []
        if self.kind == "smtp":
            with self._lock:
                raws = list(self._received)
        elif self.directory.exists():
            sep = b"\n" + b"-" * 79 + b"\n"
            for p in sorted(self.directory.iterdir()):
                raws.extend(chunk for chunk in p.read_bytes().split(sep) if chunk.strip())
        return [email.message_from_bytes(r, policy=email.policy.default) for r in raws]


# ------------------------------------------------------------------------------------------------
# one run
# ------------------------------------------------------------------------------------------------


def _queue_specs(intake: str, imap: Dovecot | None, dirs: dict[str, Path]) -> list[dict[str, Any]]:
    specs = []
    for addr in QUEUE_ADDRESSES:
        slug = QUEUE_SLUGS[addr]
        spec: dict[str, Any] = {
            "title": slug.capitalize(),
            "slug": slug,
            "email_address": addr,
            "allow_email_submission": True,
            "email_box_interval": 0,  # poll on every run (the default waits 5 minutes)
            "logging_type": "error",  # errors reach the import's stderr, which we keep
        }
        if intake == "imap":
            assert imap is not None
            spec.update(
                {
                    "email_box_type": "imap",
                    "email_box_host": imap.host,
                    "email_box_port": imap.port,
                    "email_box_ssl": False,
                    "email_box_user": addr,
                    "email_box_pass": imap.password,
                    "email_box_imap_folder": "INBOX",
                }
            )
        else:
            spec.update({"email_box_type": "local", "email_box_local_dir": str(dirs[addr])})
        specs.append(spec)
    return specs


def run_peer(
    corpus_dir: Path,
    *,
    wal: bool,
    workdir: Path,
    intake: str = "imap",
    shuffle_seed: int | None = 7,
    mail_sink: str = "smtp",
    venv: Path = DEFAULT_VENV,
    max_passes: int = 5,
    profile: Path | None = None,
) -> dict[str, Any]:
    """Import the corpus in ``corpus_dir`` (written by ``Corpus.write``) into a fresh
    django-helpdesk, delivered all at once in shuffled order (``shuffle_seed=None``: in date
    order, parents before replies); return figures and correctness."""
    if intake not in ("imap", "local"):
        raise ValueError("intake must be 'imap' or 'local'")
    corpus = Corpus.load(corpus_dir)
    manifest = corpus.manifest()
    python = ensure_venv(venv)
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    run_dir = Path(tempfile.mkdtemp(prefix=f"peer-{'wal' if wal else 'default'}-", dir=workdir))
    db = run_dir / "db.sqlite3"
    shutil.copyfile(template_db(python, workdir / "template"), db)
    sink = MailSink(mail_sink, run_dir / "sent-mail").start()
    imap: Dovecot | None = None
    try:
        env = _peer_env(run_dir, db, sink)
        if profile is not None:
            env["PEER_PROFILE"] = str(profile)
        order = corpus.messages if shuffle_seed is None else corpus.shuffled(shuffle_seed)
        dirs: dict[str, Path] = {}
        t = time.perf_counter()
        if intake == "imap":
            imap = Dovecot(list(QUEUE_ADDRESSES)).start()
            deliver_imap(imap, order)
        else:
            dirs = write_directories_by_queue(run_dir / "maildirs", order)
        deliver_seconds = time.perf_counter() - t
        spec_file = run_dir / "queues.json"
        spec_file.write_text(json.dumps(_queue_specs(intake, imap, dirs)))
        _setup(python, env, "queues", str(spec_file))
        journal = _setup(python, env, "journal", "wal" if wal else "delete")

        stats_file = run_dir / "import-stats.json"
        load_before = os.getloadavg()[0]
        with (
            open(run_dir / "import.stdout", "wb") as out,
            open(run_dir / "import.stderr", "wb") as err,
        ):
            t0 = time.perf_counter()
            proc = subprocess.Popen(
                [
                    str(python),
                    str(TEMPLATE_DIR / "peer_import.py"),
                    str(stats_file),
                    str(max_passes),
                ],
                env=env,
                cwd=str(TEMPLATE_DIR),
                stdout=out,
                stderr=err,
            )
            _, status, usage = os.wait4(proc.pid, 0)
            wall = time.perf_counter() - t0
            proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode != 0:
            tail = (run_dir / "import.stderr").read_text(errors="replace")[-3000:]
            raise RuntimeError(f"peer import exited {proc.returncode}:\n{tail}")
        stats = json.loads(stats_file.read_text())
        left = stats["passes"][-1]["left"] if stats["passes"] else {}
        sent = sink.messages()
    finally:
        sink.stop()
        if imap is not None:
            imap.stop()

    n = len(corpus.messages)
    correctness = check_correctness(db, run_dir / "media", manifest, sent)
    imported = correctness["messages_imported"]
    stderr_text = (run_dir / "import.stderr").read_text(errors="replace")
    versions = peer_versions(python)
    result = {
        "system": "django-helpdesk",
        "versions": {**versions, "dovecot": dovecot_version() if intake == "imap" else None},
        "intake": (
            "imap: Dovecot on 127.0.0.1, get_email polling both queues"
            if intake == "imap"
            else "local directory (email_box_type='local')"
        ),
        "journal_mode": journal,
        "variant": "wal" if wal else "default",
        "mail_sink": mail_sink,
        "delivery_order": "date" if shuffle_seed is None else f"shuffled (seed {shuffle_seed})",
        "messages": n,
        "delivery_seconds": round(deliver_seconds, 3),
        "wall_seconds": round(wall, 3),
        "import_seconds": round(stats["import_seconds"], 3),
        "startup_seconds": round(stats["setup_seconds"], 3),
        "messages_imported": imported,
        "complete": imported == n,
        "msgs_per_s": round(imported / wall, 2),
        "msgs_per_s_import_only": round(imported / stats["import_seconds"], 2),
        "cpu_seconds": round(usage.ru_utime + usage.ru_stime, 3),
        # messages per CPU-second of the import process: steadier than wall time on a busy box
        "msgs_per_cpu_s": round(imported / max(usage.ru_utime + usage.ru_stime, 1e-9), 2),
        "cpu_user_seconds": round(usage.ru_utime, 3),
        "cpu_system_seconds": round(usage.ru_stime, 3),
        "peak_rss_mib": round(usage.ru_maxrss / 1024, 1),
        "sql_statements": stats["sql"]["total"],
        "sql_per_message": round(stats["sql"]["total"] / max(imported, 1), 2),
        "sql_by_verb": {k: v for k, v in stats["sql"].items() if k != "total"},
        "passes": len(stats["passes"]),
        "left_in_mailbox": left,
        "import_errors": _error_summary(stderr_text),
        "correctness": correctness,
        "loadavg_1min_before": round(load_before, 2),
        "workdir": str(run_dir),
    }
    return result


def _error_summary(stderr_text: str) -> dict[str, int]:
    """Count the peer's logged errors by their first line (tracebacks folded away)."""
    counts: dict[str, int] = {}
    for line in stderr_text.splitlines():
        if not line or line.startswith((" ", "\t", "Traceback")):
            continue
        key = line.strip()
        if key.startswith("Unsupported file extension") or "Unsupported file extension" in key:
            key = "attachment rejected: " + key.split("Unsupported file extension:")[-1].strip(
                " ']\""
            )
        counts[key[:160]] = counts.get(key[:160], 0) + 1
    return dict(sorted(counts.items(), key=lambda kv: -kv[1])[:20])


# ------------------------------------------------------------------------------------------------
# correctness against the manifest
# ------------------------------------------------------------------------------------------------


def check_correctness(
    db: Path, media_root: Path, manifest: dict[str, Any], sent: list[email.message.Message]
) -> dict[str, Any]:
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        tickets = con.execute("SELECT COUNT(*) FROM helpdesk_ticket").fetchone()[0]
        followups = con.execute(
            "SELECT id, ticket_id, message_id FROM helpdesk_followup"
        ).fetchall()
        atts = con.execute(
            "SELECT followup_id, filename, file, size FROM helpdesk_followupattachment"
        ).fetchall()
    finally:
        con.close()
    msgs = manifest["messages"]
    ticket_of: dict[str, int] = {}
    followup_msg: dict[int, str] = {}
    unknown_followups = 0
    for fid, tid, mid in followups:
        mid = (mid or "").strip()
        if mid in msgs:
            ticket_of.setdefault(mid, tid)
            followup_msg[fid] = mid
        else:
            unknown_followups += 1
    # threading: a reply is right when it sits on the ticket of its thread's first message
    replies = on_root = on_parent = 0
    for mid, meta in msgs.items():
        if meta["parent"] is None:
            continue
        replies += 1
        root = manifest["threads"][meta["thread"]]["root"]
        t = ticket_of.get(mid)
        if t is not None and t == ticket_of.get(root):
            on_root += 1
        if t is not None and t == ticket_of.get(meta["parent"]):
            on_parent += 1
    threads_right = 0
    tickets_of_thread: dict[str, set[int]] = {}
    for tid_, th in manifest["threads"].items():
        tickets_of_thread[tid_] = {ticket_of.get(m, -1) for m in th["messages"]}
    owner: dict[int, set[str]] = {}
    for tid_, ts in tickets_of_thread.items():
        for t in ts:
            owner.setdefault(t, set()).add(tid_)
    for tid_, ts in tickets_of_thread.items():
        if len(ts) == 1 and -1 not in ts and len(owner[next(iter(ts))]) == 1:
            threads_right += 1
    # attachments: stored files whose bytes match an attachment of that message
    expected = sum(len(m["attachments"]) for m in msgs.values())
    stored = stored_ok = html_bodies = 0
    for fid, filename, path, size in atts:
        if filename == HTML_BODY_NAME:
            html_bodies += 1
            continue
        stored += 1
        mid = followup_msg.get(fid)
        if mid is None:
            continue
        try:
            digest = hashlib.sha256((media_root / path).read_bytes()).hexdigest()
        except OSError:
            continue
        if digest in msgs[mid]["attachment_sha256"]:
            stored_ok += 1
    # acknowledgements that reached the sink
    roots = {th["root"] for th in manifest["threads"].values()}
    opened = updated = other = acks_for_roots = 0
    for m in sent:
        subj = str(m.get("Subject", ""))
        irt = (m.get("In-Reply-To") or "").strip()
        if "(Opened)" in subj:
            opened += 1
        elif "(Updated)" in subj:
            updated += 1
        else:
            other += 1
        if irt in roots and "(Opened)" in subj:
            acks_for_roots += 1
    n_threads = len(manifest["threads"])
    return {
        "messages_expected": len(msgs),
        "messages_imported": len(ticket_of),
        "followups_not_in_corpus": unknown_followups,
        "threads_expected": n_threads,
        "tickets_created": tickets,
        "threads_fully_right": threads_right,
        "replies": replies,
        "replies_on_thread_ticket": on_root,
        "replies_on_parent_ticket": on_parent,
        "threading_pct": round(100.0 * on_root / replies, 1) if replies else 100.0,
        "attachments_expected": expected,
        "attachments_stored": stored,
        "attachments_stored_intact": stored_ok,
        "html_bodies_stored_as_attachments": html_bodies,
        "mails_at_sink": len(sent),
        "acks_new_ticket": opened,
        "acks_new_ticket_for_thread_roots": acks_for_roots,
        "acks_expected": n_threads,
        "notifications_update": updated,
        "mails_other": other,
    }


# ------------------------------------------------------------------------------------------------
# command line
# ------------------------------------------------------------------------------------------------

_LINE_FIELDS = (
    ("variant", "{}"),
    ("msgs_per_s", "{:.1f} msg/s"),
    ("wall_seconds", "{:.1f} s wall"),
    ("cpu_seconds", "{:.1f} s CPU"),
    ("peak_rss_mib", "{:.0f} MiB RSS"),
    ("sql_per_message", "{:.1f} SQL/msg"),
)


def _line(r: dict[str, Any]) -> str:
    c = r["correctness"]
    parts = [fmt.format(r[k]) for k, fmt in _LINE_FIELDS]
    parts.append(f"{r['msgs_per_cpu_s']:.0f} msg/CPU-s")
    parts.append(f"threading {c['threading_pct']:.1f}%")
    parts.append(f"tickets {c['tickets_created']}/{c['threads_expected']}")
    parts.append(f"attachments {c['attachments_stored_intact']}/{c['attachments_expected']}")
    parts.append(f"acks {c['acks_new_ticket']} (+{c['notifications_update']} updates)")
    parts.append(f"load {r['loadavg_1min_before']:.1f}")
    return " | ".join(parts)


def summarize(runs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Median per variant over the runs."""
    out: dict[str, dict[str, Any]] = {}
    for variant in sorted({r["variant"] for r in runs}):
        rs = [r for r in runs if r["variant"] == variant]
        med = {
            k: statistics.median(r[k] for r in rs)
            for k in (
                "msgs_per_s",
                "msgs_per_s_import_only",
                "wall_seconds",
                "cpu_seconds",
                "peak_rss_mib",
                "sql_per_message",
                "msgs_per_cpu_s",
            )
        }
        med["threading_pct"] = statistics.median(r["correctness"]["threading_pct"] for r in rs)
        med["runs"] = len(rs)
        out[variant] = med
    return out


def report_rows(
    summary: dict[str, dict[str, Any]], runs: list[dict[str, Any]] | None = None
) -> list[dict[str, Any]]:
    """Rows for ``bench.report.format_table`` with the peer's medians filled in and the
    Omnidesk column left empty (None) for the caller to fill."""
    d = summary.get("default", {})
    w = summary.get("wal", {})
    rows: list[dict[str, Any]] = [
        {
            "figure": "ingest, defaults (msg/s)",
            "omnidesk": None,
            "peer": d.get("msgs_per_s"),
            "goal": "≥ 10× peer",
        },
        {
            "figure": "ingest, peer with SQLite WAL (msg/s)",
            "omnidesk": None,
            "peer": w.get("msgs_per_s"),
        },
        {
            "figure": "messages per CPU-second of the importer",
            "omnidesk": None,
            "peer": d.get("msgs_per_cpu_s"),
        },
        {
            "figure": "CPU seconds, whole corpus",
            "omnidesk": None,
            "peer": d.get("cpu_seconds"),
            "higher_is_better": False,
        },
        {
            "figure": "peak RSS (MiB)",
            "omnidesk": None,
            "peer": d.get("peak_rss_mib"),
            "higher_is_better": False,
        },
        {
            "figure": "SQL statements / message",
            "omnidesk": None,
            "peer": d.get("sql_per_message"),
            "higher_is_better": False,
        },
        {
            "figure": "replies on the right ticket (%)",
            "omnidesk": None,
            "peer": d.get("threading_pct"),
            "goal": "100 %",
        },
    ]
    if runs:
        c = next(
            (r["correctness"] for r in runs if r["variant"] == "default"), runs[0]["correctness"]
        )
        rows += [
            {
                "figure": "tickets (expected threads)",
                "omnidesk": None,
                "peer": f"{c['tickets_created']} ({c['threads_expected']})",
                "goal": f"{c['threads_expected']}",
            },
            {
                "figure": "attachments stored intact",
                "omnidesk": None,
                "peer": f"{c['attachments_stored_intact']}/{c['attachments_expected']}",
                "goal": f"{c['attachments_expected']}",
            },
            {
                "figure": "acknowledgements (new-ticket)",
                "omnidesk": None,
                "peer": f"{c['acks_new_ticket']}",
                "goal": f"{c['acks_expected']}",
            },
        ]
    return rows


def _print_profile(path: Path, top: int = 25) -> None:
    import pstats

    print(f"profile {path} (top {top} by cumulative time):")
    pstats.Stats(str(path), stream=sys.stdout).sort_stats("cumulative").print_stats(top)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m bench.peer_helpdesk",
        description="Measure django-helpdesk ingesting the corpus.",
    )
    ap.add_argument("--n", type=int, default=2000, help="corpus size (default 2000)")
    ap.add_argument("--seed", type=int, default=1, help="corpus seed (default 1)")
    ap.add_argument(
        "--shuffle-seed",
        type=int,
        default=7,
        help="delivery order seed; -1 delivers in date order (parents first)",
    )
    ap.add_argument("--runs", type=int, default=1, help="runs per variant, alternated")
    ap.add_argument(
        "--variants", default="default,wal", help="comma list of default,wal (default: both)"
    )
    ap.add_argument("--intake", choices=("imap", "local"), default="imap")
    ap.add_argument("--mail-sink", choices=("smtp", "file"), default="smtp")
    ap.add_argument("--venv", type=Path, default=DEFAULT_VENV)
    ap.add_argument(
        "--workdir",
        type=Path,
        default=None,
        help="where databases and mail go (default: a temp dir, removed)",
    )
    ap.add_argument("--keep", action="store_true", help="keep the workdir")
    ap.add_argument("--json", type=Path, default=None, help="write all results as JSON here")
    ap.add_argument(
        "--profile",
        type=Path,
        default=None,
        help="run the import under cProfile, write pstats files with this prefix "
        "and print the top functions (slows the peer: figures not comparable)",
    )
    args = ap.parse_args(argv)

    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="omnidesk-bench-peer-"))
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        print(f"peer venv: {ensure_venv(args.venv)}", flush=True)
        corpus_dir = workdir / f"corpus-n{args.n}-s{args.seed}"
        if not (corpus_dir / "manifest.json").exists():
            generate_corpus(args.n, args.seed).write(corpus_dir)
        runs = []
        for i in range(args.runs):
            for v in variants:
                prof = (
                    args.profile.with_name(f"{args.profile.name}-{v}-{i + 1}.pstats")
                    if args.profile
                    else None
                )
                r = run_peer(
                    corpus_dir,
                    wal=(v == "wal"),
                    workdir=workdir,
                    intake=args.intake,
                    shuffle_seed=None if args.shuffle_seed < 0 else args.shuffle_seed,
                    mail_sink=args.mail_sink,
                    venv=args.venv,
                    profile=prof,
                )
                r["run"] = i + 1
                runs.append(r)
                print(f"run {i + 1}: {_line(r)}", flush=True)
                if prof is not None:
                    _print_profile(prof)
                if not args.keep:
                    shutil.rmtree(r["workdir"], ignore_errors=True)
        first = runs[0]
        print(
            f"intake: {first['intake']}; mail sink: {first['mail_sink']}; "
            f"versions: {json.dumps(first['versions'])}"
        )
        summary = summarize(runs)
        for v, med in summary.items():
            print(
                f"median {v} ({med['runs']} runs): {med['msgs_per_s']:.1f} msg/s, "
                f"{med['cpu_seconds']:.1f} s CPU, {med['peak_rss_mib']:.0f} MiB peak RSS, "
                f"{med['sql_per_message']:.1f} SQL/msg, threading {med['threading_pct']:.1f}%"
            )
        from bench.report import format_table, machine_info, write_json

        machine = machine_info()
        machine["peer"] = first["versions"]
        machine["settings"] = {
            "intake": first["intake"],
            "mail sink": first["mail_sink"],
            "corpus": f"n={args.n} seed={args.seed}",
            "delivery order": first["delivery_order"],
        }
        print()
        print(format_table(report_rows(summary, runs), machine))
        print()
        if runs[0].get("import_errors"):
            print(
                "peer errors (first run): "
                + json.dumps(runs[0]["import_errors"], ensure_ascii=False)
            )
        if args.json:
            write_json(args.json, {"machine": machine, "summary": summary, "runs": runs})
            print(f"wrote {args.json}")
    finally:
        if args.workdir is None and not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
