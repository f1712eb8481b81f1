"""How the ``strongroom`` CLI shows things: property tables, list tables, JSON/YAML/CSV/value output (the
formats and ``-c COLUMN`` of OpenStackClient's cliff), the ``--wait`` progress line."""

from __future__ import annotations

import csv
import datetime as _dt
import io
import json
from collections.abc import Sequence
from typing import Any, TextIO

#: ``-f``/``--format`` choices (the names cliff gives them in ``openstack``).
FORMATS = ("table", "json", "value", "yaml", "csv")


class ColumnError(ValueError):
    """``-c`` named a column the output does not have."""


def _pick(available: Sequence[str], wanted: Sequence[str] | None) -> list[str]:
    if not wanted:
        return list(available)
    unknown = [c for c in wanted if c not in available]
    if unknown:
        raise ColumnError(f"-c {unknown[0]}: no such column (choose from {', '.join(available)})")
    return list(wanted)


def write_one(out: TextIO, obj: dict[str, Any], fmt: str, columns: Sequence[str] | None = None) -> None:
    """One object: sorted JSON/YAML, ``value`` (one value a line), CSV or a ``Property | Value`` table;
    ``columns`` (``-c``) keeps only those properties."""
    keys = _pick(sorted(obj), columns)
    if columns:
        obj = {key: obj[key] for key in keys}
    if fmt == "json":
        out.write(json.dumps(obj, indent=2, sort_keys=True) + "\n")
    elif fmt == "yaml":
        out.write(_yaml(obj))
    elif fmt == "value":
        out.write("".join(cell(obj[key]) + "\n" for key in keys))
    elif fmt == "csv":
        out.write(_csv(keys, [[cell(obj[key]) for key in keys]]))
    else:
        out.write(render_table(["Property", "Value"], [[key, cell(obj[key])] for key in keys]))


def write_list(out: TextIO, columns: Sequence[str], items: list[dict[str, Any]], fmt: str,
               wanted: Sequence[str] | None = None) -> None:
    """A listing: sorted JSON/YAML, or rows of ``columns`` (dotted names reach into nested objects) as a
    table, CSV or ``value`` (space-separated, no header); ``wanted`` (``-c``) keeps only those columns."""
    if wanted and fmt in ("json", "yaml"):
        fields = set(columns) | {key for item in items for key in item}
        _pick(sorted(fields), wanted)
        items = [{col: get_dotted(item, col) for col in wanted} for item in items]
    if fmt == "json":
        out.write(json.dumps(items, indent=2, sort_keys=True) + "\n")
        return
    if fmt == "yaml":
        out.write(_yaml(items))
        return
    if wanted:  # any field of the objects, not only the default columns
        known = list(columns) + sorted({key for item in items for key in item} - set(columns))
        columns = _pick(known, wanted)
    rows = [[cell(get_dotted(item, col)) for col in columns] for item in items]
    if fmt == "value":
        out.write("".join(" ".join(row) + "\n" for row in rows))
    elif fmt == "csv":
        out.write(_csv(columns, rows))
    else:
        out.write(render_table(columns, rows))


def _yaml(value: Any) -> str:
    import yaml  # PyYAML: oslo.config's dependency; imported only for -f yaml

    return str(yaml.safe_dump(value, default_flow_style=False, sort_keys=True))


def _csv(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, quoting=csv.QUOTE_NONNUMERIC, lineterminator="\n")
    writer.writerow(headers)
    writer.writerows(rows)
    return buf.getvalue()


def progress_line(status: str, done: int, total: int, moved: int, elapsed: float, show_bytes: bool,
                  width: int = 24) -> str:
    """``[#####-----]  12.0/100.0 MiB  12.0%  3.4 MiB/s  ETA 0:00:26  protecting``: the rate is of the bytes
    ``moved`` since the wait began, over ``elapsed`` seconds; the ETA is the rest at that rate.  Only the
    status while there is no byte count (``show_bytes`` off, or a run that has not reported yet)."""
    if not show_bytes or (total <= 0 and done <= 0):
        return f"{status}"
    fraction = min(done / total, 1.0) if total > 0 else (1.0 if status == "available" else 0.0)
    filled = int(round(fraction * width))
    rate = (moved / elapsed) if elapsed > 0 else 0.0
    if total > done and rate > 0:
        eta = str(_dt.timedelta(seconds=int((total - done) / rate + 0.5)))
    else:
        eta = "0:00:00" if total > 0 and done >= total else "-:--:--"
    return (f"[{'#' * filled}{'-' * (width - filled)}] {done / 2**20:8.1f}/{total / 2**20:.1f} MiB "
            f"{fraction * 100:5.1f}%  {rate / 2**20:6.1f} MiB/s  ETA {eta:>8}  {status:<12}")


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


# -- a checkpoint's resources --------------------------------------------------------------------------------


def human_bytes(value: Any) -> str:
    """``24.0 MiB``; ``-`` for no figure."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return "-"
    size = float(value)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(size) < 1024 or unit == "TiB":
            return f"{int(size)} B" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} PiB"  # pragma: no cover - the loop returns at TiB


def human_seconds(value: Any) -> str:
    """``0.42 s``, ``3.1 s``, ``2m05s``, ``1h02m``; ``-`` for no figure."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return "-"
    if value < 10:
        return f"{value:.2f} s"
    if value < 60:
        return f"{value:.1f} s"
    whole = int(value + 0.5)
    if whole < 3600:
        return f"{whole // 60}m{whole % 60:02d}s"
    return f"{whole // 3600}h{whole % 3600 // 60:02d}m"


def resource_tree(resources: Sequence[dict[str, Any]]) -> str:
    """A checkpoint's ``resources`` as an indented tree, one aligned line per resource (dependents two
    spaces under their parent): type, name (or id), status, logical size, bytes stored, duration."""
    if not resources:
        return ""
    rows = []
    for item in resources:
        depth = item.get("depth")
        indent = "  " * (depth if isinstance(depth, int) and depth > 0 else 0)
        rows.append([indent + str(item.get("type") or "-"), str(item.get("name") or item.get("id") or "-"),
                     str(item.get("status") or "-"), "size " + human_bytes(item.get("size_bytes")),
                     "stored " + human_bytes(item.get("stored_bytes")), "took " + human_seconds(item.get("seconds"))])
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(value.ljust(width) for value, width in zip(row, widths, strict=True)).rstrip()
                     for row in rows)


def resources_total(resources: Sequence[dict[str, Any]]) -> str:
    """One line summing a checkpoint's ``resources``: count, logical size, bytes stored, seconds."""
    def total(field: str) -> float | None:
        values = [item.get(field) for item in resources]
        known = [v for v in values if isinstance(v, int | float) and not isinstance(v, bool)]
        return sum(known) if known else None

    count = len(resources)
    return (f"{count} resource{'' if count == 1 else 's'}, size {human_bytes(total('size_bytes'))}, "
            f"stored {human_bytes(total('stored_bytes'))}, took {human_seconds(total('seconds'))}")


def readable_checkpoint(cp: dict[str, Any]) -> dict[str, Any]:
    """A checkpoint for a table: ``resource_graph`` drawn as :func:`resource_tree` (not its JSON text) and
    ``resources`` as their totals; a checkpoint without ``resources`` (an older server, a graph the server
    could not read) is left as it is."""
    resources = cp.get("resources")
    if not resources or not isinstance(resources, list) or not all(isinstance(item, dict) for item in resources):
        return cp
    return {**cp, "resource_graph": resource_tree(resources), "resources": resources_total(resources)}
