"""Figure 6: the parse ceiling: how many corpus messages one core can parse at all.

Two loops over the same corpus, timed in CPU seconds of this process (one core):

* stdlib, modern API: ``email.message_from_bytes(raw, policy=email.policy.default)``, the body
  (``get_body(('plain', 'html')).get_content()``) and every attachment's decoded content;
* stdlib, legacy API (compat32): ``email.message_from_bytes(raw)`` and every leaf part's
  ``get_payload(decode=True)``, text parts decoded to str: the least any Python email pipeline
  has to do, so the ceiling;
* Omnidesk's ``intake.email.parse.parse_email``: the same plus reply splitting, HTML
  sanitising, thread hints, loop signals and the attachments written to an in-memory blob store.

The table then shows Omnidesk's ingest (figure 1) per CPU-second beside these ceilings.
"""

from __future__ import annotations

import email
import email.policy
import gc
import time
from datetime import UTC, datetime
from typing import Any

from bench.figures import Context, Figure, med, row


def _stdlib(raw: bytes) -> int:
    msg: Any = email.message_from_bytes(raw, policy=email.policy.default)
    size = 0
    body = msg.get_body(preferencelist=("plain", "html"))
    if body is not None:
        try:
            size += len(body.get_content())
        except (LookupError, ValueError, AssertionError):
            size += len(body.get_payload(decode=True) or b"")
    for part in msg.iter_attachments():
        try:
            content = part.get_content()
        except (LookupError, ValueError, AssertionError):
            content = part.get_payload(decode=True) or b""
        size += len(content)
    return size


def _compat32(raw: bytes) -> int:
    msg: Any = email.message_from_bytes(raw)  # policy compat32: the legacy, fastest API
    size = 0
    for part in msg.walk():
        if part.is_multipart():
            continue
        payload = part.get_payload(decode=True) or b""
        if part.get_content_maintype() == "text" and part.get_filename() is None:
            size += len(payload.decode(part.get_content_charset() or "ascii", "replace"))
        else:
            size += len(payload)
    return size


def _time_cpu(fn: Any, raws: list[bytes]) -> float:
    gc.collect()
    start = time.process_time()
    for raw in raws:
        fn(raw)
    return time.process_time() - start


def run(ctx: Context) -> Figure:
    from bench.corpus import Corpus
    from intake.email.parse import parse_email
    from routing.explain_stored import MemoryBlobStore

    fig = Figure("parse_ceiling", "6. Parse ceiling (per core)")
    raws = [m.raw for m in Corpus.load(ctx.corpus_dir()).messages]
    when = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)

    def omnidesk(raw: bytes) -> None:
        parse_email(raw, blobs=MemoryBlobStore(), received_at=when,
                    recipients=["support@acme.test"], ticket_prefix="OD")

    for fn in (_stdlib, _compat32, omnidesk):  # warm-up: imports, codec lookups
        _time_cpu(fn, raws[:50])
    modern_rates, legacy_rates, own_rates = [], [], []
    for i in range(ctx.runs):
        if i == 0:  # the modern API is shown for reference only: measured once
            modern_rates.append(len(raws) / _time_cpu(_stdlib, raws))
        legacy_rates.append(len(raws) / _time_cpu(_compat32, raws))
        own_rates.append(len(raws) / _time_cpu(omnidesk, raws))
    m, c, o = med(modern_rates), med(legacy_rates), med(own_rates)
    s = max(m, c)
    ctx.log(f"  stdlib parse {m:.0f} (modern API) / {c:.0f} (compat32) msg/s per core; "
            f"Omnidesk parse_email {o:.0f} msg/s per core")
    fig.rows += [
        row("6 parse ceiling: stdlib email, compat32, per core (msg/s)", c),
        row("6 stdlib email, policy.default (modern API), per core (msg/s)", m),
        row("6 Omnidesk parse_email, per core (msg/s)", o),
    ]
    ingest = ctx.results.get("ingest")
    if ingest is not None:
        od = ingest.data.get("omnidesk_defaults") or []
        per_cpu = med(r.get("msgs_per_cpu_s") for r in od if r and "error" not in r)
        rate = ingest.data.get("medians", {}).get("omnidesk_defaults_msgs_per_s")
        if per_cpu:
            fig.rows.append(row("6 ingest (fig. 1, defaults) per CPU-second, % of the ceiling",
                                f"{per_cpu:.0f} msg/CPU-s = {100 * per_cpu / s:.0f} %"))
        if rate:
            fig.rows.append(row("6 ingest (fig. 1, defaults) wall msg/s, % of 2-core ceiling",
                                f"{rate:.0f} msg/s = {100 * rate / (2 * s):.0f} %"))
    fig.notes.append(f"parse ceiling: {len(raws)} corpus messages, CPU time of one process; "
                     "stdlib = parse + body + every attachment decoded; the ceiling is the faster stdlib API")
    fig.data = {"ceiling_msgs_per_s": s, "stdlib_compat32_msgs_per_s": c,
                "stdlib_modern_msgs_per_s": m, "omnidesk_parse_msgs_per_s": o,
                "runs": {"modern": modern_rates, "compat32": legacy_rates, "omnidesk": own_rates},
                "messages": len(raws)}
    return fig
