"""Figure 3: the rules engine at 10, 1,000 and 10,000 rules: time per message, median and p99.

Reuses ``bench.rules_bench``: a generated rules file shaped like a large deployment's, loaded by
the real loader, evaluated on a fixed set of realistic envelopes with their facts. Each run
evaluates every message ``rounds`` times; the figure is the median over runs of each run's
median and p99. django-helpdesk has no rules engine to compare with.
"""

from __future__ import annotations

import statistics
import time

from bench.figures import Context, Figure, check, med, pct, row

SIZES = (10, 1_000, 10_000)
GOAL_MEDIAN_US = 100.0


def run(ctx: Context) -> Figure:
    from bench.rules_bench import _measure, generate_envelopes, generate_rules_yaml
    from routing.rules import load_rules_text

    fig = Figure("rules", "3. Rules engine")
    count, rounds = (100, 2) if ctx.quick else (300, 5)
    results = {}
    for n in SIZES:
        t = time.perf_counter()
        ruleset = load_rules_text(generate_rules_yaml(n), f"generated-{n}.yaml")
        load_s = time.perf_counter() - t
        messages = generate_envelopes(count, n)
        medians, p99s = [], []
        for _ in range(ctx.runs):
            samples = _measure(ruleset, messages, rounds)
            medians.append(statistics.median(samples))
            p99s.append(pct(samples, 99))
        results[n] = {"load_seconds": round(load_s, 3), "median_us": med(medians),
                      "p99_us": med(p99s), "runs_median_us": medians, "runs_p99_us": p99s,
                      "messages": count, "rounds": rounds}
        ctx.log(f"  {n:>6} rules: median {results[n]['median_us']:.1f} µs, "
                f"p99 {results[n]['p99_us']:.1f} µs (loaded in {load_s:.1f} s)")
    for n in SIZES:
        r = results[n]
        goal = check(r["median_us"], "<=", GOAL_MEDIAN_US, unit=" µs",
                     what=f"rules median at {n:,} rules") if n == 10_000 else None
        fig.rows.append(row(f"3 rules, {n:,} rules: median µs/msg", r["median_us"],
                            goal=f"≤ {GOAL_MEDIAN_US:.0f} µs" if goal else None, check=goal))
        fig.rows.append(row(f"3 rules, {n:,} rules: p99 µs/msg", r["p99_us"]))
    fig.notes.append(f"rules: {count} envelopes x {rounds} rounds per run, bench.rules_bench "
                     "rule mix; no peer (django-helpdesk has no rules engine)")
    fig.data = {str(k): v for k, v in results.items()}
    return fig
