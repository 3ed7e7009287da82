"""The benchmark corpus: deterministic, threads consistent with the manifest, every message
parseable by the standard library and carrying the features the benchmark claims.

No timing assertions and no peer here: django-helpdesk is only run by ``python -m
bench.peer_helpdesk``.
"""

from __future__ import annotations

import email
import email.policy
import hashlib
import json
import os
import struct
import subprocess
import sys
import zlib
from collections import Counter
from datetime import datetime, timedelta
from email.utils import parsedate_to_datetime
from pathlib import Path

import pytest

from bench import corpus as corpus_mod
from bench.corpus import (
    BILLING_ADDRESS,
    CORPUS_DAYS,
    CORPUS_START,
    SUPPORT_ADDRESS,
    Corpus,
    encode_words,
    generate_corpus,
)
from bench.maildir import write_directories_by_queue, write_directory, write_maildir
from bench.report import format_table, machine_info, ratio, write_json

N = 1000


@pytest.fixture(scope="module")
def corpus() -> Corpus:
    return generate_corpus(N, seed=1)


@pytest.fixture(scope="module")
def parsed(corpus: Corpus) -> dict[str, email.message.EmailMessage]:
    return {
        m.message_id: email.message_from_bytes(m.raw, policy=email.policy.default)
        for m in corpus.messages
    }


# --- determinism ---------------------------------------------------------------------------------


def test_same_seed_same_bytes() -> None:
    a = generate_corpus(200, seed=42)
    b = generate_corpus(200, seed=42)
    assert [m.raw for m in a.messages] == [m.raw for m in b.messages]
    assert a.manifest() == b.manifest()
    assert [m.message_id for m in a.shuffled(3)] == [m.message_id for m in b.shuffled(3)]


def test_same_bytes_in_another_process() -> None:
    """Nothing depends on str hashing (set order) or on the process: a fresh interpreter with
    another PYTHONHASHSEED produces the same corpus."""
    code = (
        "import hashlib; from bench.corpus import generate_corpus\n"
        "h = hashlib.sha256()\n"
        "for m in generate_corpus(150, 9).messages: h.update(m.raw)\n"
        "print(h.hexdigest())"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    root = Path(__file__).resolve().parents[1]
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=root, capture_output=True, text=True, check=True
    )
    h = hashlib.sha256()
    for m in generate_corpus(150, 9).messages:
        h.update(m.raw)
    assert out.stdout.strip() == h.hexdigest()


def test_other_seed_other_corpus() -> None:
    a = generate_corpus(200, seed=1)
    b = generate_corpus(200, seed=2)
    assert {m.message_id for m in a.messages}.isdisjoint({m.message_id for m in b.messages})


def test_shuffled_is_a_permutation(corpus: Corpus) -> None:
    order = corpus.shuffled(7)
    assert sorted(m.index for m in order) == [m.index for m in corpus.messages]
    assert [m.index for m in order] != [m.index for m in corpus.messages]
    assert [m.index for m in corpus.shuffled(8)] != [m.index for m in order]


# --- threads and manifest ----------------------------------------------------------------------


def test_counts_and_unique_ids(corpus: Corpus) -> None:
    assert len(corpus.messages) == N
    ids = [m.message_id for m in corpus.messages]
    assert len(set(ids)) == N
    assert [m.index for m in corpus.messages] == list(range(1, N + 1))
    replies = sum(1 for m in corpus.messages if m.parent_id is not None)
    assert abs(replies / N - 0.30) <= 0.01


def test_manifest_threads_are_consistent(corpus: Corpus) -> None:
    man = corpus.manifest()
    by_id = {m.message_id: m for m in corpus.messages}
    assert man["counts"]["threads"] == len(man["threads"])
    assert sum(len(t["messages"]) for t in man["threads"].values()) == N
    seen: set[str] = set()
    for tid, th in man["threads"].items():
        msgs = [by_id[mid] for mid in th["messages"]]
        root = msgs[0]
        assert root.parent_id is None and root.message_id == th["root"]
        assert th["root_subject"] == root.subject
        assert th["queue"] == root.to_address
        assert all(m.thread_id == tid for m in msgs)
        assert all(m.to_address == root.to_address for m in msgs)  # a thread keeps its queue
        assert all(m.parent_id is not None for m in msgs[1:])
        # ordered: every message comes after its parent, dates increase
        pos = {m.message_id: i for i, m in enumerate(msgs)}
        for m in msgs[1:]:
            assert pos[m.parent_id] < pos[m.message_id]
        dates = [datetime.fromisoformat(m.date) for m in msgs]
        assert dates == sorted(dates)
        seen.update(th["messages"])
    assert seen == set(by_id)


def test_references_chain_resolves_to_root(corpus: Corpus) -> None:
    by_id = {m.message_id: m for m in corpus.messages}
    depths = Counter()
    for m in corpus.messages:
        if m.parent_id is None:
            assert m.references == () and m.depth == 0
            continue
        # walking the parents gives exactly the References chain, root first
        chain = []
        p = by_id[m.parent_id]
        while True:
            chain.append(p.message_id)
            assert p.thread_id == m.thread_id
            if p.parent_id is None:
                break
            p = by_id[p.parent_id]
        assert tuple(reversed(chain)) == m.references
        assert m.references[-1] == m.parent_id
        assert by_id[m.references[0]].parent_id is None
        assert m.depth == len(m.references) <= 5
        depths[m.depth] += 1
    assert depths[1] > depths[2] > 0
    assert max(depths) >= 4  # some threads run deep


def test_manifest_json_roundtrip(corpus: Corpus, tmp_path: Path) -> None:
    corpus.write(tmp_path)
    files = sorted(p.name for p in tmp_path.glob("*.eml"))
    assert files[0] == "00001.eml" and len(files) == N
    man = json.loads((tmp_path / "manifest.json").read_text(encoding="utf-8"))
    assert man == json.loads(json.dumps(corpus.manifest(), ensure_ascii=False))
    back = Corpus.load(tmp_path)
    assert back.messages == corpus.messages


# --- every message parses, headers and parts as claimed -------------------------------------


def test_every_message_parses_with_stdlib(corpus: Corpus, parsed: dict) -> None:
    for m in corpus.messages:
        msg = parsed[m.message_id]
        assert not msg.defects, (m.file_name, msg.defects)
        for part in msg.walk():
            assert not part.defects, (m.file_name, part.defects)
        assert msg["Message-ID"] == m.message_id
        assert str(msg["Subject"]) == m.subject
        frm = msg["From"].addresses[0]
        assert (frm.display_name, frm.addr_spec) == (m.from_name, m.from_address)
        assert msg["To"].addresses[0].addr_spec == m.to_address
        if m.parent_id is None:
            assert msg["In-Reply-To"] is None and msg["References"] is None
        else:
            assert msg["In-Reply-To"] == m.parent_id
            assert tuple(str(msg["References"]).split()) == m.references
        body = msg.get_body(("plain", "html"))
        assert body is not None
        text = body.get_content()
        assert isinstance(text, str) and text.strip()
        atts = list(msg.iter_attachments())
        assert len(atts) == m.attachment_count
        assert tuple(a.get_filename() for a in atts) == m.attachment_names
        for a, size, digest in zip(atts, m.attachment_sizes, m.attachment_sha256):
            data = a.get_payload(decode=True)
            assert len(data) == size
            assert hashlib.sha256(data).hexdigest() == digest


def test_lines_fit_smtp_limits(corpus: Corpus) -> None:
    for m in corpus.messages:
        assert b"\r\n\r\n" in m.raw
        head = m.raw.split(b"\r\n\r\n", 1)[0]
        assert head.isascii()  # headers: RFC 2047, never raw 8-bit
        assert max(len(line) for line in m.raw.split(b"\r\n")) <= 998
        assert b"\n" not in m.raw.replace(b"\r\n", b"")  # CRLF only


def test_dates_realistic(corpus: Corpus, parsed: dict) -> None:
    end = CORPUS_START + timedelta(days=CORPUS_DAYS + 10)
    offsets = set()
    for m in corpus.messages:
        hdr = parsed[m.message_id]["Date"]
        d = parsedate_to_datetime(str(hdr))
        assert d.tzinfo is not None
        assert CORPUS_START <= d <= end
        assert d == datetime.fromisoformat(m.date)
        offsets.add(d.utcoffset())
    assert len(offsets) >= 5  # senders in several time zones


# --- feature mix -----------------------------------------------------------------------------


def _share(items: list[bool]) -> float:
    return sum(items) / len(items)


def test_body_kinds_and_encodings(corpus: Corpus, parsed: dict) -> None:
    kinds = Counter(m.body_kind for m in corpus.messages)
    assert 0.35 <= kinds["plain"] / N <= 0.65
    assert 0.20 <= kinds["alternative"] / N <= 0.50
    assert 0.07 <= kinds["html"] / N <= 0.25
    for m in corpus.messages:
        msg = parsed[m.message_id]
        types = [p.get_content_type() for p in msg.walk()]
        if m.body_kind == "alternative":
            assert "multipart/alternative" in types
        elif m.body_kind == "html":
            assert "text/html" in types and "multipart/alternative" not in types
            assert msg.get_body(("plain",)) is None
    ctes = Counter(e for m in corpus.messages for e in m.transfer_encodings)
    total = sum(ctes.values())
    for cte in ("quoted-printable", "base64", "8bit", "7bit"):
        assert ctes[cte] / total >= 0.08, ctes
    # the headers in the raw bytes say the same
    raw_ctes = Counter()
    for m in corpus.messages:
        for part in parsed[m.message_id].walk():
            if part.get_content_maintype() == "text" and not part.get_filename():
                raw_ctes[part.get("Content-Transfer-Encoding", "7bit").lower()] += 1
    assert set(raw_ctes) >= {"quoted-printable", "base64", "8bit", "7bit"}
    charsets = Counter(m.charset for m in corpus.messages)
    assert charsets["utf-8"] / N >= 0.7
    legacy = {c for c in charsets if c not in ("utf-8", "us-ascii")}
    assert len(legacy) >= 6, charsets


_SCRIPTS = {
    "latin-accents": lambda c: c in "äöüßéèêàçñíóúÉÄÖÜëïôœæåøÅ",
    "cyrillic": lambda c: "\u0400" <= c <= "\u04ff",
    "greek": lambda c: "\u0370" <= c <= "\u03ff",
    "cjk": lambda c: "\u3040" <= c <= "\u30ff" or "\u4e00" <= c <= "\u9fff",
    "arabic": lambda c: "\u0600" <= c <= "\u06ff",
}


def test_rfc2047_names_and_subjects_in_several_scripts(corpus: Corpus) -> None:
    found_subject = Counter()
    found_name = Counter()
    b_words = q_words = 0
    for m in corpus.messages:
        head = m.raw.split(b"\r\n\r\n", 1)[0].decode("ascii")
        b_words += head.count("?B?")
        q_words += head.count("?Q?")
        for script, test in _SCRIPTS.items():
            if any(test(c) for c in m.subject):
                found_subject[script] += 1
                assert "=?" in head  # non-ASCII subject only as encoded-words
            if any(test(c) for c in m.from_name):
                found_name[script] += 1
    for script in _SCRIPTS:
        assert found_subject[script] >= 5, (script, found_subject)
        assert found_name[script] >= 5, (script, found_name)
    assert b_words > 100 and q_words > 100


def test_reply_subjects_and_quoted_history(corpus: Corpus, parsed: dict) -> None:
    replies = [m for m in corpus.messages if m.parent_id is not None]
    prefixes = Counter(m.subject.split(" ", 1)[0] for m in replies)
    assert prefixes["Re:"] > 0 and prefixes["RE:"] > 0 and prefixes["AW:"] > 0
    assert all(m.subject.split(" ", 1)[0] in ("Re:", "RE:", "AW:") for m in replies)
    roots = {m.thread_id: m for m in corpus.messages if m.parent_id is None}
    assert all(m.subject.endswith(roots[m.thread_id].subject) for m in replies)
    quoted = [m for m in replies if m.has_quote]
    assert 0.5 <= len(quoted) / len(replies) <= 0.9
    styles = Counter()
    for m in quoted:
        text = parsed[m.message_id].get_body(("plain", "html")).get_content()
        if "-----Original Message-----" in text:
            styles["outlook"] += 1
        elif "\n> " in text or "&gt; " in text:
            styles["gt"] += 1
    assert styles["outlook"] > 0 and styles["gt"] > 0
    assert styles["outlook"] + styles["gt"] == len(quoted)


def test_attachments_mix(corpus: Corpus, parsed: dict) -> None:
    with_att = [m for m in corpus.messages if m.attachment_count]
    assert 0.11 <= len(with_att) / N <= 0.19
    exts = Counter(name.rsplit(".", 1)[1] for m in with_att for name in m.attachment_names)
    assert set(exts) == {"pdf", "png", "csv", "txt", "log"}
    assert any(not n.isascii() for m in with_att for n in m.attachment_names)
    sizes = [s for m in with_att for s in m.attachment_sizes]
    assert max(sizes) <= 520_000 and sorted(sizes)[len(sizes) // 2] < 60_000
    # the files are what their names say
    for m in with_att:
        for part in parsed[m.message_id].iter_attachments():
            data = part.get_payload(decode=True)
            name = part.get_filename()
            if name.endswith(".png"):
                assert data.startswith(b"\x89PNG\r\n\x1a\n")
                length, kind = struct.unpack(">I4s", data[8:16])
                assert kind == b"IHDR"
                crc = struct.unpack(">I", data[16 + length : 20 + length])[0]
                assert crc == zlib.crc32(data[12 : 16 + length]) & 0xFFFFFFFF
                assert part.get_content_type() == "image/png"
            elif name.endswith(".pdf"):
                assert data.startswith(b"%PDF-1.4") and data.rstrip().endswith(b"%%EOF")
                startxref = int(data.rsplit(b"startxref", 1)[1].split()[0])
                assert data[startxref : startxref + 4] == b"xref"
            elif name.endswith(".csv"):
                assert data.decode("utf-8").startswith("date,invoice,")


def test_a_few_large_attachments_at_full_size() -> None:
    big = generate_corpus(2000, seed=1)
    sizes = [s for m in big.messages for s in m.attachment_sizes]
    assert 1 <= sum(1 for s in sizes if s > 250_000) <= 40
    assert max(sizes) <= 520_000


def test_two_queues(corpus: Corpus) -> None:
    queues = Counter(m.to_address for m in corpus.messages)
    assert set(queues) == {SUPPORT_ADDRESS, BILLING_ADDRESS}
    assert 0.2 <= queues[BILLING_ADDRESS] / N <= 0.5


# --- helpers -----------------------------------------------------------------------------------


def test_encoded_words_respect_length_and_characters() -> None:
    text = "Заказ 12345 до сих пор не доставлен — 注文番号の商品が届きません"
    for b in (True, False):
        words = encode_words(text, "utf-8", b)
        assert all(len(w) <= 75 for w in words)
        hdr = "Subject: " + "\r\n ".join(words) + "\r\n\r\n"
        msg = email.message_from_string(hdr, policy=email.policy.default)
        assert str(msg["Subject"]) == text
    words = encode_words("日本語の件名です", "iso-2022-jp", True)
    msg = email.message_from_string(
        "Subject: " + " ".join(words) + "\r\n\r\n", policy=email.policy.default
    )
    assert str(msg["Subject"]) == "日本語の件名です"


def test_cli_writes_corpus(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert corpus_mod.main(["--n", "40", "--seed", "3", "--out", str(tmp_path / "c")]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["messages"] == 40
    assert len(list((tmp_path / "c").glob("*.eml"))) == 40
    assert Corpus.load(tmp_path / "c").messages == generate_corpus(40, 3).messages


def test_delivery_helpers_keep_order(tmp_path: Path) -> None:
    c = generate_corpus(60, seed=4)
    order = c.shuffled(1)
    paths = write_directory(tmp_path / "flat", order)
    assert [p.read_bytes() for p in sorted(paths)] == [m.raw for m in order]
    dirs = write_directories_by_queue(tmp_path / "byq", order)
    assert set(dirs) == {m.to_address for m in c.messages}
    for addr, d in dirs.items():
        got = [p.read_bytes() for p in sorted(d.iterdir())]
        assert got == [m.raw for m in order if m.to_address == addr]
    assert write_maildir(tmp_path / "md", order) == 60
    assert len(list((tmp_path / "md" / "new").iterdir())) == 60
    assert not list((tmp_path / "md" / "tmp").iterdir())


def test_report_table_and_json(tmp_path: Path) -> None:
    rows = [
        {"figure": "ingest (msg/s)", "omnidesk": 900.0, "peer": 45.0, "goal": "≥ 10× peer"},
        {"figure": "peak RSS (MiB)", "omnidesk": 50.0, "peer": 100.0, "higher_is_better": False},
        {"figure": "threading (%)", "omnidesk": None, "peer": 35.3, "goal": "100 %"},
    ]
    info = machine_info()
    assert {"cpu", "cores", "ram_gib", "python", "packages"} <= set(info)
    table = format_table(rows, info)
    lines = table.splitlines()
    header = next(line for line in lines if line.startswith("| figure"))
    assert [c.strip() for c in header.strip("|").split("|")] == [
        "figure",
        "Omnidesk",
        "django-helpdesk",
        "ratio",
        "goal",
    ]
    assert "20.0×" in table and "2.0×" in table
    assert ratio(1, 0) is None and ratio(None, 3) is None
    p = write_json(tmp_path / "r" / "out.json", {"rows": rows, "path": tmp_path})
    assert json.loads(p.read_text(encoding="utf-8"))["rows"][0]["peer"] == 45.0
