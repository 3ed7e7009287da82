"""The benchmark harness works end to end: ``python -m bench.run --quick`` on a tiny corpus prints
a table with every figure and writes JSON with numbers for each. It checks the harness, never a
speed (performance claims live in the benchmark's own output, not in tests)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench.figures import FIGURES

ROOT = Path(__file__).resolve().parents[1]

# Each figure's rows in the table start with its number.
_NUMBER = {name: str(i + 1) for i, name in enumerate(FIGURES)}


@pytest.mark.timeout(240)
@pytest.mark.postgres
@pytest.mark.dovecot
def test_quick_run_prints_every_figure_and_writes_json(tmp_path: Path) -> None:
    from bench.maildir import dovecot_binary
    from tests.peers import missing

    if dovecot_binary() is None:
        missing("dovecot not found (apt-get install -y dovecot-imapd)")
    out = tmp_path / "bench.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith("OMNIDESK_") or k.startswith("OMNIDESK_TEST_")}
    done = subprocess.run(
        [sys.executable, "-m", "bench.run", "--quick", "--skip-peer", "--n", "60", "--json", str(out),
         "--workdir", str(tmp_path / "work")],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=230, check=False,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    text = done.stdout
    assert "FAILED" not in text, text[-4000:]

    table = [line for line in text.splitlines() if line.startswith("| ")]
    assert table[0].split("|")[1].strip() == "figure"
    for name, number in _NUMBER.items():
        rows = [line for line in table if line.split("|")[1].strip().startswith(f"{number} ")]
        assert rows, f"figure {number} ({name}) missing from the table:\n{text[-4000:]}"
        assert any(any(ch.isdigit() for ch in line.split("|")[2]) for line in rows), (
            f"figure {number} ({name}) has no number in the Omnidesk column"
        )
    assert "Goals met:" in text

    data = json.loads(out.read_text())
    assert set(data["figures"]) == set(FIGURES)
    assert data["machine"]["cores"]
    for name, number in _NUMBER.items():
        assert "error" not in data["figures"][name]["data"], data["figures"][name]
        values = [r["omnidesk"] for r in data["rows"] if r["figure"].startswith(f"{number} ")]
        assert any(isinstance(v, (int, float)) or (isinstance(v, str) and any(c.isdigit() for c in v))
                   for v in values), f"{name}: {values}"
    ingest = data["figures"]["ingest"]["data"]
    for variant in ("omnidesk_defaults", "omnidesk_scaled"):
        run = ingest[variant][0]
        assert run["complete"], run
        assert run["msgs_per_s"] > 0 and run["cpu_seconds"] > 0 and run["peak_rss_mib"] > 0
        assert run["correctness"]["messages_imported"] == 60
    for line in data["missed"]:
        assert line.startswith("MISSED ")
