"""The settings reference, generated from ``Settings`` so docs and code cannot drift apart.

``python -m config.settings_doc`` rewrites ``.env.example`` and prints the README's table.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from config.settings import Settings

__all__ = ["env_example", "markdown_table"]


def _default(value: Any) -> str:
    if hasattr(value, "get_secret_value"):
        value = value.get_secret_value()
    if isinstance(value, tuple):
        value = ",".join(value)
    return str(value)


def env_example() -> str:
    lines = ["# Omnidesk settings. Copy to .env and edit; the environment wins over this file.",
             "# Every value below is the default.", ""]
    for name, field in Settings.model_fields.items():
        lines += [f"# {field.description}", f"OMNIDESK_{name.upper()}={_default(field.default)}", ""]
    return "\n".join(lines)


def markdown_table() -> str:
    rows = ["| variable | default | what it does |", "|---|---|---|"]
    for name, field in Settings.model_fields.items():
        default = _default(field.default)
        shown = f"`{default}`" if default else "(empty)"
        rows.append(f"| `OMNIDESK_{name.upper()}` | {shown} | {field.description} |")
    return "\n".join(rows)


if __name__ == "__main__":
    Path(".env.example").write_text(env_example())
    print(markdown_table())
