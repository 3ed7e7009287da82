"""Output helpers for the benchmarks: the side-by-side table, the machine header, JSON results.

A row is a mapping with the keys ``figure``, ``omnidesk``, ``peer``, ``goal`` and optionally
``ratio`` (computed when missing), ``unit`` and ``higher_is_better`` (default True; the ratio is
then Omnidesk / peer, otherwise peer / Omnidesk, so that > 1 always means Omnidesk is ahead).
Values may be numbers, strings or None (shown as ``-``).
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import platform
import subprocess
import sys
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

COLUMNS = ("figure", "Omnidesk", "django-helpdesk", "ratio", "goal")

_PACKAGES = (
    "omnidesk",
    "dramatiq",
    "redis",
    "SQLAlchemy",
    "psycopg",
    "aiosmtpd",
    "imapclient",
    "pydantic",
    "fastapi",
    "uvicorn",
)


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _ram_gib() -> float | None:
    try:
        with open("/proc/meminfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    return None


def _tool_version(cmd: list[str]) -> str | None:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=5, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    text = (out.stdout or out.stderr).strip().splitlines()
    return text[0] if out.returncode == 0 and text else None


def machine_info(extra_packages: Iterable[str] = ()) -> dict[str, Any]:
    """CPU, cores, RAM, OS, Python and the versions of the packages and servers involved."""
    versions: dict[str, str] = {}
    for name in (*_PACKAGES, *extra_packages):
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    import sqlite3

    servers = {
        "sqlite": sqlite3.sqlite_version,
        "dovecot": _tool_version(["dovecot", "--version"]),
        "postgres": _tool_version(["psql", "--version"]),
        "redis-server": _tool_version(["redis-server", "--version"]),
    }
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "ram_gib": _ram_gib(),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "packages": versions,
        "servers": {k: v for k, v in servers.items() if v},
    }


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        a = abs(value)
        if a >= 1000:
            return f"{value:,.0f}"
        if a >= 100:
            return f"{value:.0f}"
        if a >= 10:
            return f"{value:.1f}"
        if a >= 1:
            return f"{value:.2f}"
        return f"{value:.3g}"
    return str(value)


def ratio(omnidesk: Any, peer: Any, higher_is_better: bool = True) -> float | None:
    """How many times better Omnidesk is (> 1 = ahead), or None when not comparable."""
    if not isinstance(omnidesk, (int, float)) or not isinstance(peer, (int, float)):
        return None
    if isinstance(omnidesk, bool) or isinstance(peer, bool):
        return None
    num, den = (omnidesk, peer) if higher_is_better else (peer, omnidesk)
    if den == 0:
        return None
    return num / den


def _cell(value: Any, unit: str | None) -> str:
    s = _fmt(value)
    return f"{s} {unit}" if unit and value is not None and not isinstance(value, str) else s


def format_table(
    rows: Iterable[Mapping[str, Any]],
    machine: Mapping[str, Any] | None = None,
    *,
    title: str | None = None,
) -> str:
    """A Markdown table (readable as plain text) with a machine/versions header above it."""
    lines: list[str] = []
    if title:
        lines += [f"## {title}", ""]
    if machine:
        lines.append(machine_header(machine))
        lines.append("")
    table = [list(COLUMNS)]
    for r in rows:
        hib = bool(r.get("higher_is_better", True))
        rt = r["ratio"] if "ratio" in r else ratio(r.get("omnidesk"), r.get("peer"), hib)
        unit = r.get("unit")
        table.append(
            [
                str(r["figure"]),
                _cell(r.get("omnidesk"), unit),
                _cell(r.get("peer"), unit),
                (f"{rt:.1f}×" if isinstance(rt, (int, float)) else _fmt(rt)),
                _fmt(r.get("goal")),
            ]
        )
    widths = [max(len(row[i]) for row in table) for i in range(len(COLUMNS))]

    def render(row: list[str]) -> str:
        cells = [row[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(row[1:4], widths[1:4])]
        cells.append(row[4].ljust(widths[4]))
        return "| " + " | ".join(cells) + " |"

    lines.append(render(table[0]))
    lines.append(
        "|"
        + "|".join(
            ("-" * (w + 2)) if i in (0, 4) else ("-" * (w + 1) + ":") for i, w in enumerate(widths)
        )
        + "|"
    )
    lines.extend(render(row) for row in table[1:])
    return "\n".join(lines)


def machine_header(machine: Mapping[str, Any]) -> str:
    parts = [
        (
            f"Measured {machine.get('date', '?')} on {machine.get('cpu', '?')}, "
            f"{machine.get('cores', '?')} cores, {machine.get('ram_gib', '?')} GiB RAM, "
            f"{machine.get('os', '?')}, Python {machine.get('python', '?')}."
        )
    ]
    pk = machine.get("packages") or {}
    if pk:
        parts.append("Packages: " + ", ".join(f"{k} {v}" for k, v in pk.items()) + ".")
    sv = machine.get("servers") or {}
    if sv:
        parts.append("Servers: " + "; ".join(f"{k}: {v}" for k, v in sv.items()) + ".")
    peer = machine.get("peer") or {}
    if peer:
        parts.append("Peer: " + ", ".join(f"{k} {v}" for k, v in peer.items() if v) + ".")
    settings = machine.get("settings") or {}
    if settings:
        parts.append("Settings: " + "; ".join(f"{k}: {v}" for k, v in settings.items()) + ".")
    return "\n".join(parts)


def _default(o: Any) -> Any:
    if isinstance(o, Path):
        return str(o)
    if isinstance(o, (set, frozenset, tuple)):
        return list(o)
    if isinstance(o, datetime):
        return o.isoformat()
    if hasattr(o, "__dict__"):
        return vars(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def write_json(path: str | Path, data: Any) -> Path:
    """Write ``data`` as indented UTF-8 JSON (parent directories created); return the path."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(p.name + ".tmp")
    tmp.write_text(
        json.dumps(data, indent=1, ensure_ascii=False, default=_default) + "\n", encoding="utf-8"
    )
    os.replace(tmp, p)
    return p


if __name__ == "__main__":  # a quick look at the header on this machine
    json.dump(machine_info(), sys.stdout, indent=1)
    print()
