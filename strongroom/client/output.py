"""How the ``strongroom`` CLI shows things: property tables, list tables, JSON, the ``--wait`` progress line."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, TextIO


def write_one(out: TextIO, obj: dict[str, Any], fmt: str) -> None:
    """One object: sorted JSON, or a ``Property | Value`` table."""
    if fmt == "json":
        out.write(json.dumps(obj, indent=2, sort_keys=True) + "\n")
        return
    rows = [[key, cell(obj[key])] for key in sorted(obj)]
    out.write(render_table(["Property", "Value"], rows))


def write_list(out: TextIO, columns: Sequence[str], items: list[dict[str, Any]], fmt: str) -> None:
    """A listing: sorted JSON, or a table of ``columns`` (dotted names reach into nested objects)."""
    if fmt == "json":
        out.write(json.dumps(items, indent=2, sort_keys=True) + "\n")
        return
    rows = [[cell(get_dotted(item, col)) for col in columns] for item in items]
    out.write(render_table(columns, rows))


def progress_line(status: str, done: int, total: int, moved: int, elapsed: float, show_bytes: bool,
                  width: int = 24) -> str:
    """``[#####-----]  12.0/100.0 MiB  12%  3.4 MiB/s  protecting``."""
    if not show_bytes:
        return f"{status}"
    fraction = min(done / total, 1.0) if total > 0 else (1.0 if status == "available" else 0.0)
    filled = int(round(fraction * width))
    rate = (moved / elapsed / 2**20) if elapsed > 0 else 0.0
    return (f"[{'#' * filled}{'-' * (width - filled)}] {done / 2**20:8.1f}/{total / 2**20:.1f} MiB "
            f"{fraction * 100:5.1f}%  {rate:6.1f} MiB/s  {status:<12}")


def render_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [len(h) for h in headers]
    split_rows = []
    for row in rows:
        cells = [str(c).splitlines() or [""] for c in row]
        split_rows.append(cells)
        for i, lines in enumerate(cells):
            widths[i] = max(widths[i], *(len(line) for line in lines))
    rule = "+" + "+".join("-" * (w + 2) for w in widths) + "+\n"

    def line(values: Sequence[str]) -> str:
        return "|" + "|".join(f" {v:<{w}} " for v, w in zip(values, widths, strict=True)) + "|\n"

    out = rule + line(headers) + rule
    for cells in split_rows:
        height = max(len(c) for c in cells)
        for n in range(height):
            out += line([c[n] if n < len(c) else "" for c in cells])
    return out + rule


def get_dotted(item: dict[str, Any], dotted: str) -> Any:
    """``item["a"]["b"]`` for ``"a.b"``; None where a level is missing or not an object."""
    value: Any = item
    for part in dotted.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


def cell(value: Any) -> str:
    """A table cell: empty for None, compact sorted JSON for objects and lists."""
    if value is None:
        return ""
    if isinstance(value, dict | list):
        return json.dumps(value, sort_keys=True)
    return str(value)
