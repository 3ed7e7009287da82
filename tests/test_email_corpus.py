"""Conformance of the email parser against other projects' test mail (read-only corpus).

The corpus lives beside the checkout (``../shared/corpus``) or wherever ``OMNIDESK_CORPUS_DIR``
points. Each set has one test that runs *every* message, computes a pass rate, prints it in the
table written at the end of this module, and asserts the target. A set with no cases (the corpus
or its folder missing or empty) has no pass rate: it skips locally with the folder it looked in,
and fails under ``CI=true``, where a green run must mean the cases ran.

Expectations come from the corpus's own files (``*.yml``, ``expected.json``); where an upstream
expectation encodes that project's quirk rather than a correct parse, the case is listed in a
``KNOWN_*`` table below with the reason, counted separately, and kept short.
"""

from __future__ import annotations

import base64
import email
import hashlib
import html as htmlmod
import json
import os
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email import policy
from email.utils import getaddresses
from functools import cache
from pathlib import Path
from typing import Any, NoReturn

import pytest

from intake.blobs import FileBlobStore
from intake.email import html_to_text, parse_addresses, parse_email, split_reply
from intake.envelope import Envelope
from intake.errors import UnparseableMessage
from intake.email.details import EmailDetails, automated_reason
from tests.peers import missing


def _corpus_dir() -> Path:
    configured = os.environ.get("OMNIDESK_CORPUS_DIR")
    if configured:
        return Path(configured)
    return Path(__file__).resolve().parents[2] / "shared" / "corpus"


CORPUS = _corpus_dir()
NOW = datetime(2024, 1, 1, tzinfo=UTC)
FORWARD_MARKER = "\n\n---------- Forwarded message ---------\n"


# ---------------------------------------------------------------------------------------------
# Known differences from upstream expectations (each with the reason we keep our behaviour).
# ---------------------------------------------------------------------------------------------
KNOWN_ZAMMAD_HEADER = {
    "mail018": "Zammad leaves the UTF-7 encoded word undecoded ('+ANw-bermittlungsstatus'); "
    "we decode it to 'Übermittlungsstatus'.",
    "mail046": "raw 8-bit GB2312 display name: Zammad's charset guess gives 'ÎäŔźłÉ'; we decode "
    "with the charset the message declares (gb2312) and get '武兰成'.",
    "mail076": "From: '\"Millions Lottery Spain transfer\"@example.com>' (stray '>'): Zammad keeps "
    "the junk verbatim as address and name; we parse the quoted local part and no name.",
    "mail087": "From: 'Test test@example.com' (unquoted name): Zammad keeps the whole string as "
    "address; we read name 'Test', address 'test@example.com'.",
}
KNOWN_ZAMMAD_BODY = {
    "mail018": "UTF-7 body: Zammad shows '+APw-ber', we decode to 'über'.",
    "mail023": "undeclared GB2312 bytes in a 12-byte line: too short for any honest charset "
    "guess; we fall back to Windows-1252 (Zammad's detector happened to guess right).",
    "mail021": "a stray byte in declared UTF-8 (the torn end of 'ﬀ'): Zammad reads it as "
    "ISO-8859-2 'ď', we as Windows-1252 'ï'; neither can be right.",
    "mail054": "Content-Type boundary on an unindented continuation line: Zammad loses the "
    "body ('no visible content'); we mend the header and show the text.",
    "mail087": "a part without Content-Type after an attachment: Zammad files it as attachment "
    "'file'; RFC 2045 makes it text/plain, so we show it as the body.",
    "mail105": "multipart/mixed without a single boundary line: Zammad shows nothing; we show "
    "the (QP-decoded) text that is there.",
}
KNOWN_MAIL_PARSER = {
    "mail_test_10": "parts without a name: mail-parser names them by raw Content-ID "
    "('<_1_0B4E...>'); we generate 'image.gif', 'image1.gif'... (what Zammad shows).",
    "mail_malformed_2": "mail-parser counts only named parts as attachments; we also keep the "
    "unnamed message/rfc822-headers part of the bounce report.",
}
KNOWN_DJANGO_HELPDESK = {
    "utf-nondecodable.eml": "its text/plain and text/html alternatives say different things; "
    "django-helpdesk reads the HTML, we take text/plain for Envelope.text (RFC 2046) and keep "
    "the HTML in Envelope.html, where the expected phrase is (checked).",
}
KNOWN_ZAMMAD_ATTACHMENTS = {
    "mail087": "see body: the untyped text part is our body, not an attachment 'file'.",
    "mail102": "Zammad invents Content-IDs ('inline_attachment_placeholder_N') for Apple Mail "
    "inline images and renames a repeated file name to '...at 091.00.38.png'; we keep the "
    "sender's name and no Content-ID.",
}


# ---------------------------------------------------------------------------------------------
# Shared machinery
# ---------------------------------------------------------------------------------------------
def no_cases(where: Path, what: str, why: str = "missing or empty") -> NoReturn:
    """Skip (locally) or fail (under CI): ``what`` found nothing to run in ``where``."""
    missing(
        f"{what}: no cases in {where} ({why}). Put the corpus there (a copy of the shared "
        "corpus folder) or point OMNIDESK_CORPUS_DIR at it",
        what="the email corpus",
    )
    raise AssertionError("unreachable: missing() skips or fails")


def require_corpus() -> None:
    if not CORPUS.is_dir():
        no_cases(CORPUS, "the email corpus")


@pytest.fixture(scope="module", autouse=True)
def _corpus_present() -> None:
    require_corpus()


def read_json(path: Path) -> Any:
    """An expectations file of a set; its absence means the set has no cases."""
    if not path.is_file():
        no_cases(path.parent, f"the {path.parent.name} set", why=f"{path.name} is not there")
    return json.loads(path.read_text(encoding="utf-8"))


@dataclass
class SetResult:
    name: str
    source: Path
    passed: int = 0
    total: int = 0
    known: int = 0
    failures: list[str] = field(default_factory=list)

    def check(self, case: str, ok: bool, detail: str = "", known: str | None = None) -> None:
        if known is not None and not ok:
            self.known += 1
            return
        self.total += 1
        if ok:
            self.passed += 1
        else:
            self.failures.append(f"{case}: {detail}"[:400])

    @property
    def rate(self) -> float:
        # Zero of zero is no pass rate: shown as 0 %, never as a 100 % that ran nothing.
        return 100.0 * self.passed / self.total if self.total else 0.0

    def assert_rate(self, minimum: float) -> None:
        """The one verdict of a set: it ran cases, and enough of them passed."""
        if self.total == 0:
            no_cases(self.source, f"the set {self.name!r}")
        assert self.rate >= minimum, self.report()

    def report(self, limit: int = 15) -> str:
        return f"{self.name}: {self.passed}/{self.total}\n" + "\n".join(self.failures[:limit])


RESULTS: dict[str, SetResult] = {}


def result(name: str, source: Path) -> SetResult:
    """A new set's tally; ``source`` is the folder its cases come from (named when it is empty)."""
    RESULTS[name] = SetResult(name, source)
    return RESULTS[name]


@pytest.fixture(scope="module", autouse=True)
def _pass_rate_table(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    if not RESULTS:
        return
    lines = [
        "",
        "email corpus conformance",
        f"  {'set':<36}{'passed':>8}{'total':>8}{'rate':>9}{'known diff':>12}",
    ]
    for item in RESULTS.values():
        lines.append(
            f"  {item.name:<36}{item.passed:>8}{item.total:>8}{item.rate:>8.1f}%{item.known:>12}"
        )
    # Printed even under output capture (what capsys.disabled() does, at module scope).
    capture = request.config.pluginmanager.getplugin("capturemanager")
    if capture is not None:
        with capture.global_and_fixture_disabled():
            print("\n".join(lines))
    else:
        print("\n".join(lines))


@pytest.fixture(scope="module")
def blobs(tmp_path_factory: pytest.TempPathFactory) -> FileBlobStore:
    return FileBlobStore(tmp_path_factory.mktemp("corpus-blobs"), fsync=False)


_PARSED: dict[Path, Envelope | UnparseableMessage] = {}


def parsed(path: Path, blobs: FileBlobStore) -> Envelope | UnparseableMessage:
    """Parse once per run; UnparseableMessage is a result (quarantine), anything else a crash."""
    if path not in _PARSED:
        try:
            _PARSED[path] = parse_email(path.read_bytes(), blobs=blobs, received_at=NOW)
        except UnparseableMessage as exc:
            _PARSED[path] = exc
    return _PARSED[path]


def envelope(path: Path, blobs: FileBlobStore) -> Envelope:
    outcome = parsed(path, blobs)
    if isinstance(outcome, UnparseableMessage):
        pytest.fail(f"{path.name} quarantined: {outcome.reason}")
    return outcome


# ---------------------------------------------------------------------------------------------
# Zammad: .box + .yml
# ---------------------------------------------------------------------------------------------
def _yaml_loader() -> Callable[[Path], dict[str, Any]]:
    from ruamel.yaml import YAML

    yaml = YAML(typ="safe", pure=True)

    def ruby(constructor: Any, _suffix: str, node: Any) -> Any:
        # '!ruby/hash:ActiveSupport::HashWithIndifferentAccess' is a plain mapping to us.
        if isinstance(node.value, list):
            return constructor.construct_mapping(node, deep=True)
        return constructor.construct_scalar(node)

    yaml.constructor.add_multi_constructor("!ruby/", ruby)
    yaml.constructor.add_constructor(
        "!binary", lambda c, n: base64.b64decode(c.construct_scalar(n))
    )

    def load(path: Path) -> dict[str, Any]:
        data = yaml.load(path.read_text(encoding="utf-8"))
        return dict(data or {})

    return load


@cache
def zammad_cases() -> list[tuple[str, Path, dict[str, Any]]]:
    load = _yaml_loader()
    folder = CORPUS / "zammad-mail"
    return [(p.stem, p.with_suffix(".box"), load(p)) for p in sorted(folder.glob("*.yml"))]


def _pairs(value: str | None) -> list[tuple[str, str]]:
    # A display name that only repeats the address is no name (we and mail-parser drop it).
    out = []
    for name, address in getaddresses([value or ""]):
        if address:
            out.append(("" if name.lower() == address.lower() else name, address))
    return out


def test_zammad_headers_exact(blobs: FileBlobStore) -> None:
    res = result("zammad-mail subject/from/to/cc", CORPUS / "zammad-mail")
    for stem, box, expected in zammad_cases():
        env = envelope(box, blobs)
        problems = []
        if "subject" in expected and (expected["subject"] or "") != env.subject:
            problems.append(f"subject {expected['subject']!r} != {env.subject!r}")
        if "from_email" in expected and expected["from_email"] != env.sender.address:
            problems.append(f"from {expected['from_email']!r} != {env.sender.address!r}")
        if "from_display_name" in expected and (expected["from_display_name"] or "") != (
            env.sender.name
        ):
            problems.append(f"name {expected['from_display_name']!r} != {env.sender.name!r}")
        for key, parties in (("to", EmailDetails.of(env).to), ("cc", EmailDetails.of(env).cc)):
            if key in expected:
                ours = [("" if p.name == p.address else p.name, p.address) for p in parties]
                if _pairs(expected[key]) != ours:
                    problems.append(f"{key} {expected[key]!r} != {ours!r}")
        if "reply-to" in expected:
            ours_reply = [(n, a) for n, a in _pairs(env.headers.get("reply-to"))]
            if _pairs(expected["reply-to"]) != ours_reply:
                problems.append(f"reply-to {expected['reply-to']!r}")
        res.check(stem, not problems, "; ".join(problems), KNOWN_ZAMMAD_HEADER.get(stem))
    res.assert_rate(100.0)


_TAG = re.compile(r"<[^>]*>")
_TITLE = re.compile(r"<title[^>]*>(.*?)</title>", re.IGNORECASE | re.DOTALL)


def _flat(text: str, markup: bool) -> str:
    """Compare text with markup, entities and all whitespace removed."""
    if markup:
        text = htmlmod.unescape(_TAG.sub("", text))
    # &lang;/&rang; are U+2329/U+232A in HTML 4 tables and U+27E8/U+27E9 in HTML 5.
    text = text.replace("\u2329", "\u27e8").replace("\u232a", "\u27e9")
    return re.sub(r"\s+", "", text)


def _zammad_title(expected: dict[str, Any]) -> str:
    for attachment in expected.get("attachments") or []:
        if attachment.get("filename") == "message.html":
            data = attachment.get("data") or ""
            text = data.decode("utf-8", "replace") if isinstance(data, bytes) else str(data)
            match = _TITLE.search(text)
            if match:
                return _flat(match.group(1), True)
    return ""


def test_zammad_body(blobs: FileBlobStore) -> None:
    """Body text equal after markup/whitespace normalisation.

    Zammad conventions normalised away: 'no visible content' is its placeholder for an empty
    body; it keeps the HTML <title> text at the top of the body (we drop <head>); it does not
    append an attached message's text (we do, after a forward marker).
    """
    res = result("zammad-mail body", CORPUS / "zammad-mail")
    for stem, box, expected in zammad_cases():
        if "body" not in expected:
            continue
        env = envelope(box, blobs)
        want_raw = expected["body"] or ""
        html = expected.get("content_type") == "text/html" or (
            "content_type" not in expected and re.search(r"<[a-z]+[\s>/]", want_raw) is not None
        )
        want = "" if want_raw.strip() == "no visible content" else _flat(want_raw, html)
        if html and env.html is not None:
            got = _flat(env.html, True)
        else:
            text = env.full_text
            if any(a.content_type == "message/rfc822" for a in env.attachments):
                text = text.split(FORWARD_MARKER)[0]
            got = _flat(text, False)
        title = _zammad_title(expected) if html else ""
        if title and want.startswith(title) and not got.startswith(title):
            want = want[len(title) :]
        ok = want == got
        pairs = zip(want, got)
        where = next((i for i, (a, b) in enumerate(pairs) if a != b), min(len(want), len(got)))
        detail = f"at {where}: want {want[where : where + 60]!r} got {got[where : where + 60]!r}"
        res.check(stem, ok, detail, KNOWN_ZAMMAD_BODY.get(stem))
    res.assert_rate(100.0)


def _normalised_hash(data: bytes, text_like: bool) -> str:
    if text_like:
        data = data.replace(b"\r\n", b"\n")
    return hashlib.sha256(data).hexdigest()


def test_zammad_attachments(blobs: FileBlobStore) -> None:
    """Every attachment Zammad lists is ours too, by content, with its name, type and CID.

    Zammad also lists the HTML body as 'message.html'; we keep it in Envelope.html instead, so
    that entry is skipped. Message/* attachments compare with line endings normalised (Zammad
    stores them with LF; we keep the bytes as received).
    """
    res = result("zammad-mail attachments", CORPUS / "zammad-mail")
    for stem, box, expected in zammad_cases():
        if "attachments" not in expected:
            continue
        env = envelope(box, blobs)
        ours = []
        for ref in env.attachments:
            text_like = ref.content_type.startswith(("message/", "text/"))
            ours.append((_normalised_hash(blobs.get(ref.sha256), text_like), ref))
        problems = []
        used: set[int] = set()
        listed = 0
        for item in expected["attachments"] or []:
            if item.get("filename") == "message.html":
                continue
            listed += 1
            data = item.get("data") or b""
            data = data if isinstance(data, bytes) else str(data).encode("utf-8")
            prefs = dict(item.get("preferences") or {})
            candidates = [
                (i, ref)
                for i, (digest, ref) in enumerate(ours)
                if i not in used
                and digest in (_normalised_hash(data, True), _normalised_hash(data, False))
            ]
            # Identical bytes may be attached twice under different names: prefer the same name.
            candidates.sort(key=lambda c: c[1].filename != item.get("filename"))
            if not candidates:
                problems.append(f"missing {item.get('filename')!r}")
                continue
            index, ref = candidates[0]
            used.add(index)
            if item.get("filename") and item["filename"] != ref.filename:
                problems.append(f"name {item['filename']!r} != {ref.filename!r}")
            cid = prefs.get("Content-ID")
            if cid and cid.strip("<>") != ref.content_id:
                problems.append(f"cid {cid!r} != {ref.content_id!r}")
            mime = prefs.get("Mime-Type")
            if mime and mime.lower() != ref.content_type:
                problems.append(f"type {mime!r} != {ref.content_type!r}")
        if listed != len(env.attachments):
            problems.append(f"count {listed} != {len(env.attachments)}")
        res.check(stem, not problems, "; ".join(problems), KNOWN_ZAMMAD_ATTACHMENTS.get(stem))
    res.assert_rate(100.0)


# ---------------------------------------------------------------------------------------------
# No crashes, anywhere
# ---------------------------------------------------------------------------------------------
def _all_messages() -> list[Path]:
    paths: list[Path] = []
    paths += sorted((CORPUS / "zammad-mail").glob("*.box"))
    paths += sorted(
        p
        # glob, not iterdir: a missing folder is no cases (reported by the test), not a crash.
        for p in (CORPUS / "mail-parser").glob("*")
        if p.is_file() and p.suffix not in (".json", ".md")
    )
    paths += sorted((CORPUS / "cpython-test-email").glob("msg_*.txt"))
    paths += sorted((CORPUS / "django-helpdesk").glob("*.eml"))
    paths += sorted((CORPUS / "talon").rglob("*.eml"))
    return paths


def test_no_crash_on_any_message(blobs: FileBlobStore) -> None:
    """Every message becomes an Envelope that round-trips through JSON, or is quarantined with
    a reason (UnparseableMessage); any other exception is a crash."""
    res = result("all raw messages: no crash", CORPUS)
    for path in _all_messages():
        try:
            outcome = parsed(path, blobs)
            if isinstance(outcome, Envelope):
                # It must also survive the intake log: JSON out and back.
                assert Envelope.model_validate_json(outcome.model_dump_json()) == outcome
            res.check(path.name, True)
        except Exception as exc:  # noqa: BLE001 - exactly what this test is looking for
            res.check(str(path.relative_to(CORPUS)), False, f"{type(exc).__name__}: {exc}")
    res.assert_rate(100.0)


# ---------------------------------------------------------------------------------------------
# mail-parser (SpamScope): malformed and spam
# ---------------------------------------------------------------------------------------------
def test_mail_parser_expectations(blobs: FileBlobStore) -> None:
    """The portable subset of mail-parser's assertions: subject, addresses, Message-ID,
    attachment names/count, headers present. (Defect lists, Received-hop parsing and body hashes
    are that library's own model.)"""
    expected = read_json(CORPUS / "mail-parser" / "expected.json")
    res = result("mail-parser expectations", CORPUS / "mail-parser")
    for name, exp in expected.items():
        if name.startswith("_"):
            continue
        outcome = parsed(CORPUS / "mail-parser" / name, blobs)
        if name == "mail_outlook_1":
            # A binary Outlook .msg, not RFC 5322: quarantine with a reason is the right outcome.
            res.check(name, isinstance(outcome, UnparseableMessage), "should be quarantined")
            continue
        if isinstance(outcome, UnparseableMessage):
            res.check(name, False, f"quarantined: {outcome.reason}")
            continue
        env = outcome
        problems = []
        if "subject" in exp and exp["subject"] != env.subject:
            problems.append(f"subject {env.subject!r}")
        if "message_id" in exp and exp["message_id"] != EmailDetails.of(env).message_id:
            problems.append(f"message_id {EmailDetails.of(env).message_id!r}")
        pairs = {
            "from": [(env.sender.name, env.sender.address)],
            "to": [(p.name, p.address) for p in EmailDetails.of(env).to],
            "cc": [(p.name, p.address) for p in EmailDetails.of(env).cc],
        }
        for key in ("from", "to", "cc"):
            if key in exp and [tuple(p) for p in exp[key]] != pairs[key]:
                problems.append(f"{key} {pairs[key]!r}")
        if "reply_to" in exp:
            reply_to = parse_addresses(env.headers.get("reply-to", ""))
            if [tuple(p) for p in exp["reply_to"]] != reply_to:
                problems.append(f"reply_to {reply_to!r}")
        if "from_first_address" in exp and exp["from_first_address"] != env.sender.address:
            problems.append("from_first_address")
        if "to_first_address" in exp and (
            not EmailDetails.of(env).to or exp["to_first_address"] != EmailDetails.of(env).to[0].address
        ):
            problems.append("to_first_address")
        if "to_count" in exp and exp["to_count"] != len(EmailDetails.of(env).to):
            problems.append(f"to_count {len(EmailDetails.of(env).to)}")
        for domain in exp.get("to_domains_include", []):
            if not any(p.address.lower().endswith("@" + domain) for p in EmailDetails.of(env).to):
                problems.append(f"to domain {domain}")
        if "attachments_count" in exp and exp["attachments_count"] != len(env.attachments):
            problems.append(f"attachments {len(env.attachments)}")
        if "attachment_filenames" in exp:
            names = [a.filename for a in env.attachments]
            if names != exp["attachment_filenames"]:
                problems.append(f"filenames {names!r}")
        for header in exp.get("headers_include", []):
            if header.lower() not in env.headers:
                problems.append(f"header {header}")
        for key, value in (exp.get("headers") or {}).items():
            if isinstance(value, str) and env.headers.get(key.lower()) != value:
                problems.append(f"header {key} {env.headers.get(key.lower())!r}")
        md5 = re.search(r"attachment md5 = ([0-9a-f]{32})", exp.get("note", ""))
        if md5:  # the uuencoded attachment of mail_test_15, decoded byte for byte
            digests = [hashlib.md5(blobs.get(a.sha256)).hexdigest() for a in env.attachments]
            if md5.group(1) not in digests:
                problems.append(f"attachment md5 {digests!r}")
        for key in ("X-MSMail-Priority",):
            if key in exp and env.headers.get(key.lower()) != exp[key]:
                problems.append(key)
        res.check(name, not problems, "; ".join(problems), KNOWN_MAIL_PARSER.get(name))
    res.assert_rate(100.0)


# ---------------------------------------------------------------------------------------------
# CPython's email test messages: the index names test functions, not values. We check that
# nothing crashes, and cross-check what we decode against the stdlib's own header parser.
# ---------------------------------------------------------------------------------------------
def test_cpython_messages(blobs: FileBlobStore) -> None:
    res = result("cpython-test-email (stdlib x-check)", CORPUS / "cpython-test-email")
    for path in sorted((CORPUS / "cpython-test-email").glob("msg_*.txt")):
        raw = path.read_bytes()
        outcome = parsed(path, blobs)
        reference = email.message_from_bytes(raw, policy=policy.default)
        try:
            ref_from = reference["from"]
            ref_subject = reference["subject"]
            ref_addresses = [a.addr_spec for a in ref_from.addresses] if ref_from else []
        except Exception:  # noqa: BLE001 - the stdlib itself cannot read it: nothing to compare
            res.check(path.name, True)
            continue
        if isinstance(outcome, UnparseableMessage):
            # Quarantine is right only when there is no From address at all.
            ok = not any("@" in a for a in ref_addresses)
            res.check(path.name, ok, f"quarantined: {outcome.reason}")
            continue
        problems = []
        if ref_subject is not None and " ".join(str(ref_subject).split()) != " ".join(
            outcome.subject.split()
        ):
            problems.append(f"subject {str(ref_subject)!r} != {outcome.subject!r}")
        if ref_addresses and ref_addresses[0] and ref_addresses[0] != outcome.sender.address:
            problems.append(f"from {ref_addresses[0]!r} != {outcome.sender.address!r}")
        res.check(path.name, not problems, "; ".join(problems))
    res.assert_rate(100.0)


# ---------------------------------------------------------------------------------------------
# django-helpdesk
# ---------------------------------------------------------------------------------------------
def test_django_helpdesk(blobs: FileBlobStore) -> None:
    expected = read_json(CORPUS / "django-helpdesk" / "expected.json")
    res = result("django-helpdesk", CORPUS / "django-helpdesk")
    for name, exp in expected.items():
        if name.startswith("_"):
            continue
        env = envelope(CORPUS / "django-helpdesk" / name, blobs)
        problems = []
        if "title" in exp and exp["title"] != env.subject:
            problems.append(f"title {env.subject!r}")
        if "title_truncated" in exp:
            stem = exp["title_truncated"].removesuffix("...")
            if not env.subject.startswith(stem):
                problems.append(f"title {env.subject[:60]!r}")
        if "description" in exp and exp["description"].strip() != env.text.strip():
            problems.append(f"description {env.text[:120]!r}")
        if "description_stripped" in exp and exp["description_stripped"] != env.text.strip():
            problems.append(f"description {env.text[:120]!r}")
        known = None
        if "description_contains" in exp and exp["description_contains"] not in env.text:
            problems.append("description_contains")
            known = KNOWN_DJANGO_HELPDESK.get(name)
            assert known is None or exp["description_contains"] in html_to_text(env.html or "")
        if "forwarded_part_text" in exp and exp["forwarded_part_text"] not in env.full_text:
            problems.append("forwarded part missing from full_text")
        if "attachment0_contains" in exp:
            # django-helpdesk files the HTML part as attachment 0; we keep it as Envelope.html.
            haystack = (env.html or "") + "".join(
                blobs.get(a.sha256).decode("utf-8", "replace") for a in env.attachments
            )
            needle = exp["attachment0_contains"]
            if _flat(needle, True) not in _flat(haystack, True):
                problems.append("attachment0_contains")
        for item in exp.get("attachments", []):
            # django-helpdesk stores files as "part-<n>_<name>"; the name is the sender's.
            wanted = re.sub(r"^part-\d+_", "", item["filename"])
            match = [a for a in env.attachments if a.filename == wanted]
            if not match:
                problems.append(f"attachment {item['filename']!r} missing")
            elif (
                not blobs.get(match[0].sha256)
                .decode("utf-8", "replace")
                .startswith(item["content_startswith"])
            ):
                problems.append(f"attachment {item['filename']!r} content")
        res.check(name, not problems, "; ".join(problems), known)
    res.assert_rate(100.0)


# ---------------------------------------------------------------------------------------------
# Reply extraction: talon and email-reply-parser
# ---------------------------------------------------------------------------------------------
def _first_plain(path: Path) -> str:
    message = email.message_from_bytes(path.read_bytes(), policy=policy.default)
    body = message.get_body(("plain",))
    return str(body.get_content()) if body is not None else ""


def test_talon_replies() -> None:
    """talon's quotation fixtures (its signature-classifier cases are not reply extraction).

    talon strips quotations only, so its expected replies keep signatures ('Sent from my
    iPhone'): we call split_reply(strip_signature=False) to compare like with like. Its HTML
    cases go through html_to_text first (our pipeline for HTML-only mail).
    """
    cases = read_json(CORPUS / "talon" / "expected.json")["cases"]
    res = result("talon reply extraction", CORPUS / "talon")

    def squash(text: str) -> str:
        return re.sub(r"\s+", "", text)

    for name, exp in cases.items():
        kind = exp["kind"]
        path = CORPUS / "talon" / name
        if kind == "plain_reply":
            reply, _ = split_reply(_first_plain(path), strip_signature=False)
            res.check(name, reply.strip() == exp["expected_reply"].strip(), repr(reply[:200]))
        elif kind == "plain_reply_loose":
            text = path.read_text(encoding="utf-8", errors="replace")
            reply, _ = split_reply(text, strip_signature=False)
            res.check(name, bool(reply.strip()) and "From" not in reply, repr(reply[:200]))
        elif kind == "html_reply":
            text = html_to_text(path.read_text(encoding="utf-8", errors="replace"))
            reply, _ = split_reply(text, strip_signature=False)
            want = exp["expected_text_ignoring_whitespace"]
            res.check(name, squash(reply) == squash(want), repr(reply[:200]))
        elif kind == "html_stripped":
            text = html_to_text(path.read_text(encoding="utf-8", errors="replace"))
            reply, _ = split_reply(text, strip_signature=False)
            want = html_to_text(exp["expected_html_nows"])
            res.check(name, squash(reply) == squash(want), repr(reply[:200]))
    res.assert_rate(95.0)


def test_email_reply_parser() -> None:
    """zapier/email-reply-parser: the reply-text expectations, plus what its fragment lists say
    about the visible reply (a visible fragment's text is in our reply, a hidden one's is not;
    one- and two-character markers such as '>' or '--' are skipped, they occur in both)."""
    folder = CORPUS / "email-reply-parser"
    expected = read_json(folder / "expected.json")
    res = result("email-reply-parser", folder)
    for name, exp in expected.items():
        if name.startswith("_"):
            continue
        text = (folder / f"{name}.txt").read_text(encoding="utf-8")
        started = time.perf_counter()
        reply, _ = split_reply(text)
        elapsed = time.perf_counter() - started
        checks: list[tuple[str, bool]] = []
        if "reply_equals" in exp:
            checks.append(("equals", reply == exp["reply_equals"]))
        if "reply_equals_stripped" in exp:
            checks.append(("equals", reply.strip() == exp["reply_equals_stripped"]))
        checks += [(f"has {s!r}", s in reply) for s in exp.get("reply_contains", [])]
        checks += [(f"lacks {s!r}", s not in reply) for s in exp.get("reply_not_contains", [])]
        hidden = exp.get("hidden")
        for index_text, needles in exp.get("fragment_contains", {}).items():
            index = int(index_text)
            visible = (not hidden[index]) if hidden else (index == 0 or None)
            if visible is None:
                continue
            for needle in needles:
                if not visible and (len(needle) < 3 or not any(c.isalnum() for c in needle)):
                    continue
                checks.append((f"fragment {index} {needle!r}", (needle in reply) == visible))
        for index_text, prefix in exp.get("fragment_startswith", {}).items():
            index = int(index_text)
            visible = (not hidden[index]) if hidden else (index == 0 or None)
            if visible is True:
                checks.append((f"starts {prefix!r}", reply.startswith(prefix)))
            elif visible is False:
                checks.append((f"hides {prefix!r}", prefix not in reply))
        if "max_parse_seconds" in exp:
            checks.append(("speed", elapsed < exp["max_parse_seconds"]))
        if not checks:
            continue  # only a fragment count: that is the library's own model
        failed = [label for label, ok in checks if not ok]
        res.check(name, not failed, f"{failed} reply={reply[:200]!r}")
    res.assert_rate(95.0)
