"""The benchmark: one command, one table of figures, Omnidesk beside django-helpdesk.

    python -m bench.run                      # everything: ~10 minutes on 2 cores
    python -m bench.run --quick              # a reduced run, under 2 minutes
    python -m bench.run --only ingest --runs 1 --profile
    python -m bench.run --quick --skip-peer --n 100 --json /tmp/bench.json

Figures (``bench/figures/``): 1 ingest, 2 smtp_load, 3 rules, 4 thread_lookup, 5 memory,
6 parse_ceiling, 7 http_intake, 8 twilio_load, 9 slack_events, 10 ticket_api. Each is the median of ``--runs`` runs (default 3;
``--quick``: 1), the peer and Omnidesk alternated. The machine, versions and settings are printed
above the table; every goal missed gets a line at the end saying by how much. Results go to
``bench/results/latest.json`` (or ``--json``). See bench/README.md for what each figure means.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

from bench.figures import FIGURES, Context, Figure
from bench.report import format_table, machine_info, write_json

DEFAULT_JSON = Path(__file__).resolve().parent / "results" / "latest.json"
_ALIASES = {str(i + 1): name for i, name in enumerate(FIGURES)} | {
    "smtp": "smtp_load", "thread": "thread_lookup", "parse": "parse_ceiling", "lookup": "thread_lookup",
    "http": "http_intake", "webform": "http_intake", "twilio": "twilio_load",
    "slack": "slack_events",
    "tickets": "ticket_api", "search": "ticket_api",
}


def _figures(only: list[str] | None) -> list[str]:
    if not only:
        return list(FIGURES)
    wanted: list[str] = []
    for item in only:
        for part in item.split(","):
            part = part.strip().replace("-", "_")
            if not part:
                continue
            name = _ALIASES.get(part, part)
            if name not in FIGURES:
                raise SystemExit(f"unknown figure {part!r}; choose from {', '.join(FIGURES)} "
                                 f"or 1-{len(FIGURES)}")
            if name not in wanted:
                wanted.append(name)
    # The run order is fixed: memory and parse_ceiling read figure 1's results when it ran.
    return [f for f in FIGURES if f in wanted]


def _missed_lines(figures: list[Figure]) -> list[str]:
    lines = []
    for fig in figures:
        for r in fig.rows:
            c = r.get("check")
            if c and not c["met"]:
                if c["value"] is None:
                    lines.append(f"MISSED {c['what']}: {c['by']}")
                    continue
                value = c["value"]
                shown = f"{value:,.1f}" if isinstance(value, (int, float)) else str(value)
                target = c["target"]
                tshown = f"{target:,.1f}" if isinstance(target, (int, float)) else str(target)
                lines.append(f"MISSED {c['what']}: {shown}{c['unit']} vs goal {c['op']} "
                             f"{tshown}{c['unit']}: {c['by']}")
    return lines


def _settings(ctx: Context, args: argparse.Namespace, names: list[str]) -> dict[str, Any]:
    s: dict[str, Any] = {
        "mode": "quick" if args.quick else "full",
        "corpus": f"n={ctx.n} seed={ctx.seed}, shuffled (seed {ctx.shuffle_seed})",
        "runs per figure": ctx.runs,
        "figures": ", ".join(names),
        "Omnidesk defaults": "SQLite (WAL) in the data dir, embedded broker, 8 worker threads, "
        "packaged routing.yaml",
        "peer": "skipped" if ctx.skip_peer else "django-helpdesk in bench/.peer/venv, SQLite "
        "(default journal, then WAL)",
    }
    if ctx._services is not None:
        sv = ctx._services
        s["PostgreSQL"] = sv.postgres_source
        s["Redis"] = sv.redis_source
    return s


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="reduced run (< 2 minutes)")
    ap.add_argument("--n", type=int, default=None, help="corpus size (default 2000; quick 300)")
    ap.add_argument("--runs", type=int, default=None, help="runs per figure (default 3; quick 1)")
    ap.add_argument("--json", type=Path, default=DEFAULT_JSON, help=f"default {DEFAULT_JSON}")
    ap.add_argument("--skip-peer", action="store_true", help="do not run django-helpdesk")
    ap.add_argument("--only", action="append", metavar="FIG",
                    help="run only these figures (name or number; repeat or comma-separate)")
    ap.add_argument("--profile", action="store_true",
                    help="when the ingest goal is missed, profile one more Omnidesk run (py-spy)")
    ap.add_argument("--workdir", type=Path, default=None, help="scratch dir (default: temp, removed)")
    ap.add_argument("--seed", type=int, default=1, help="corpus seed (default 1)")
    args = ap.parse_args(argv)

    names = _figures(args.only)
    started = time.monotonic()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="omnidesk-bench-run-"))
    workdir.mkdir(parents=True, exist_ok=True)
    ctx = Context(
        quick=args.quick,
        n=args.n if args.n is not None else (300 if args.quick else 2000),
        runs=max(1, args.runs if args.runs is not None else (1 if args.quick else 3)),
        skip_peer=args.skip_peer,
        workdir=workdir,
        seed=args.seed,
        profile=args.profile,
        log=lambda text: print(text, flush=True),
    )
    figures: list[Figure] = []
    try:
        for name in names:
            print(f"== {name} ==", flush=True)
            t = time.monotonic()
            try:
                module = __import__(f"bench.figures.{name}", fromlist=["run"])
                fig: Figure = module.run(ctx)
            except Exception as exc:  # noqa: BLE001 - one broken figure must not hide the rest
                traceback.print_exc()
                fig = Figure(name, name, notes=[f"{name} FAILED: {exc.__class__.__name__}: {exc}"],
                             data={"error": f"{exc.__class__.__name__}: {exc}"})
                fig.rows.append({"figure": f"{name} (failed)", "omnidesk": None, "peer": None,
                                 "check": {"met": False, "value": None, "op": "", "target": None,
                                           "unit": "", "what": name, "by": "figure failed"}})
            fig.seconds = round(time.monotonic() - t, 1)
            print(f"   ({fig.seconds:.0f} s)", flush=True)
            ctx.results[name] = fig
            figures.append(fig)

        machine = machine_info()
        ingest = ctx.results.get("ingest")
        if ingest is not None:
            peer_runs = [r for r in ingest.data.get("peer_default", []) if r and "versions" in r]
            if peer_runs:
                machine["peer"] = peer_runs[0]["versions"]
        machine["settings"] = _settings(ctx, args, names)
        rows = [r for fig in figures for r in fig.rows]
        elapsed = time.monotonic() - started
        title = "Omnidesk benchmark" + (" (quick)" if args.quick else "")
        print()
        print(format_table(rows, machine, title=title))
        print()
        for fig in figures:
            for note in fig.notes:
                print(f"- {note}")
        missed = _missed_lines(figures)
        met = sum(1 for r in rows if r.get("check") and r["check"]["met"])
        print()
        print(f"Goals met: {met} of {met + len(missed)}. Total time {elapsed:.0f} s.")
        for line in missed:
            print(line)
        result = {
            "machine": machine,
            "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
            "elapsed_seconds": round(elapsed, 1),
            "rows": rows,
            "missed": missed,
            "figures": {f.name: {"title": f.title, "seconds": f.seconds, "notes": f.notes,
                                 "data": f.data} for f in figures},
        }
        path = write_json(args.json, result)
        print(f"\nwrote {path}")
    finally:
        ctx.close()
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
