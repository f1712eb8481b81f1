"""Metadata export and import: move a whole metadata store to another one (e.g. sqlite to PostgreSQL).

``strongroom-manage db export FILE`` / ``db import FILE`` (cinderlib's idea).  Table-driven: every table of
:data:`strongroom.db.models.ALL_MODELS` is copied, parents before children, so a table added there later
travels without a change here.  taskflow's progress tables are not copied: export with the services stopped.

The file is JSON lines, streamed both ways (a large catalogue never sits in memory)::

    {"format": "strongroom-metadata", "format_version": 1, "schema_revision": "0001_initial",
     "exported_at": "...", "source": "<URL without password>", "tables": {"plans": ["id", ...], ...}}
    {"table": "plans", "row": {"id": "...", "created_at": "2026-01-01T00:00:00+00:00", ...}}
    ...
    {"end": {"plans": 2, "resources": 3, ...}}

The last line carries the row count of every table: a truncated file is refused.  Datetimes are ISO-8601
UTC strings, JSON columns stay JSON, bytes are ``{"$base64": "..."}``.

Import upgrades the target's schema first (``db sync``), then copies in one transaction (a failed import
changes nothing).  A target holding rows is refused unless ``mode`` says otherwise:

- ``force``: the target's rows are deleted first; the file's rows replace them, ids included.
- ``merge``: the target's rows stay; a file row is added unless a row with the same key is there already
  (the primary key, or for tables keyed by a database-assigned number, such as ``services``, their unique
  key such as (host, binary)); the children of a row kept from the target are skipped with it.  Rows added
  to such tables get new numbers from the target.

A file written by a newer Strongroom (unknown schema revision or format version) is refused; a file from an
older schema revision is accepted: columns added since take their defaults, and rows are changed as the
migrations since changed the rows of a database (:data:`ROW_UPGRADES`).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import dataclasses
import datetime as _dt
import decimal
import enum
import json
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, TextIO

import sqlalchemy as sa
from alembic.script import ScriptDirectory
from sqlalchemy.schema import sort_tables

from strongroom import exceptions
from strongroom.db import drivers, migration, runs
from strongroom.db.api import Database
from strongroom.db.models import ALL_MODELS, CheckpointModel, RestoreModel

FORMAT = "strongroom-metadata"
FORMAT_VERSION = 1
BATCH = 500

#: (table, column, upgrade): a row of a file whose ``table`` has no ``column`` yet is passed through
#: ``upgrade``, which changes it as the migration that added the column changed the rows already stored.
ROW_UPGRADES: tuple[tuple[str, str, Callable[[dict[str, Any]], dict[str, Any]]], ...] = (
    ("restores", "progress", runs.restore_row_before_progress),
)


class Mode(enum.StrEnum):
    EMPTY = "empty"  # refuse a target that holds rows
    FORCE = "force"
    MERGE = "merge"


@dataclasses.dataclass
class Summary:
    revision: str
    rows: dict[str, int]  # exported, or inserted, per table
    skipped: dict[str, int] = dataclasses.field(default_factory=dict)  # merge: kept from the target

    @property
    def total(self) -> int:
        return sum(self.rows.values())

    def describe(self) -> str:
        """``11 rows (plans: 3, resources: 6, ...)``."""
        return _describe(self.rows)

    def describe_skipped(self) -> str:
        """Merge: what was already in the target and kept, or '' when nothing was."""
        return _describe({k: v for k, v in self.skipped.items() if v}) if any(self.skipped.values()) else ""


def _describe(counts: Mapping[str, int]) -> str:
    return f"{sum(counts.values())} rows ({', '.join(f'{name}: {count}' for name, count in counts.items())})"


def tables() -> list[sa.Table]:
    """The exported tables, parents before children."""
    return list(sort_tables([model.__table__ for model in ALL_MODELS]))  # type: ignore[misc]


# -- values -------------------------------------------------------------------


def _python_type(column: sa.Column[Any]) -> type | None:
    kind: Any = column.type
    if isinstance(kind, sa.types.TypeDecorator):
        kind = kind.impl_instance
    try:
        return kind.python_type  # type: ignore[no-any-return]
    except NotImplementedError:
        return None


def _codec(column: sa.Column[Any]) -> str:
    python_type = _python_type(column)
    if python_type is None:
        return "plain"
    if issubclass(python_type, _dt.datetime):
        return "datetime"
    if issubclass(python_type, _dt.date):
        return "date"
    if issubclass(python_type, bytes):
        return "bytes"
    if issubclass(python_type, decimal.Decimal):
        return "decimal"
    return "plain"


def _encode(value: Any, codec: str) -> Any:
    if value is None or codec == "plain":
        return value
    if codec in ("datetime", "date"):
        return value.isoformat()
    if codec == "bytes":
        return {"$base64": base64.b64encode(value).decode("ascii")}
    return str(value)


def _decode(value: Any, codec: str) -> Any:
    if value is None or codec == "plain":
        return value
    if codec == "datetime":
        return _dt.datetime.fromisoformat(value)
    if codec == "date":
        return _dt.date.fromisoformat(value)
    if codec == "bytes":
        return base64.b64decode(value["$base64"], validate=True)
    return decimal.Decimal(value)


# -- export -------------------------------------------------------------------


def _source_revision(db: Database) -> str:
    revision = db.version()
    head = migration.head()
    if revision is None:
        raise exceptions.InvalidInput(reason=f"{db.url_for_display} has no schema: there is nothing to export")
    if revision != head:
        raise exceptions.InvalidInput(
            reason=f"{db.url_for_display} is at schema revision {revision} but this Strongroom writes {head}: "
                   f"run 'strongroom-manage db sync' on it first")
    return revision


@contextlib.contextmanager
def _snapshot(db: Database) -> Iterator[sa.Connection]:
    """One read transaction: every table is read as of the same moment."""
    with db.engine.connect() as conn:
        if conn.dialect.name != "sqlite":  # sqlite: one BEGIN reads one snapshot (WAL)
            conn = conn.execution_options(isolation_level="REPEATABLE READ")
        with conn.begin():
            yield conn


def export(db: Database, out: TextIO, *, now: _dt.datetime | None = None) -> Summary:
    """Write every row of every table of ``db`` to ``out``."""
    with db.errors():
        revision = _source_revision(db)
        exported = tables()
        header = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "schema_revision": revision,
            "exported_at": (now or _dt.datetime.now(_dt.UTC)).isoformat(),
            "source": db.url_for_display,
            "tables": {t.name: [c.name for c in t.columns] for t in exported},
        }
        out.write(_line(header))
        counts: dict[str, int] = {}
        with _snapshot(db) as conn:
            for table in exported:
                codecs = {c.name: _codec(c) for c in table.columns}
                stmt = sa.select(table).order_by(*table.primary_key.columns)
                count = 0
                for row in conn.execution_options(yield_per=BATCH).execute(stmt).mappings():
                    out.write(_line({"table": table.name,
                                     "row": {k: _encode(v, codecs[k]) for k, v in row.items()}}))
                    count += 1
                counts[table.name] = count
        out.write(_line({"end": counts}))
        return Summary(revision=revision, rows=counts)


def _line(obj: Mapping[str, Any]) -> str:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")) + "\n"


def in_flight(db: Database) -> dict[str, int]:
    """Checkpoints and restores still running: their flow progress (taskflow) does not travel."""
    with db.errors(), db.engine.connect() as conn:
        checkpoints = conn.execute(sa.select(sa.func.count()).where(
            CheckpointModel.status.in_(("protecting", "deleting", "copying")))).scalar_one()
        runs = conn.execute(sa.select(sa.func.count()).where(RestoreModel.status == "in_progress")).scalar_one()
    return {"checkpoints": int(checkpoints), "restores/verifications": int(runs)}


# -- import -------------------------------------------------------------------


class _Reader:
    """Numbered JSON lines of one file; errors name the file and the line."""

    def __init__(self, lines: Iterable[str], name: str) -> None:
        self._lines = enumerate(lines, 1)
        self.name = name
        self.lineno = 0

    def error(self, reason: str) -> exceptions.InvalidInput:
        where = f"{self.name} line {self.lineno}" if self.lineno else self.name
        return exceptions.InvalidInput(reason=f"{where}: {reason}")

    def __iter__(self) -> Iterator[dict[str, Any]]:
        for lineno, text in self._lines:
            self.lineno = lineno
            if not text.strip():
                continue
            try:
                obj = json.loads(text)
            except json.JSONDecodeError as err:
                raise self.error(f"not a JSON line ({err.msg} at column {err.colno})") from None
            if not isinstance(obj, dict):
                raise self.error("not a JSON object")
            yield obj


def _check_header(header: dict[str, Any], reader: _Reader) -> str:
    if header.get("format") != FORMAT:
        raise reader.error(f"not a Strongroom metadata export (no \"format\": \"{FORMAT}\" header)")
    version = header.get("format_version")
    if not isinstance(version, int) or version < 1:
        raise reader.error(f"format_version: {version!r} is not a version number")
    if version > FORMAT_VERSION:
        raise reader.error(f"written in format version {version} by a newer Strongroom; this one reads up to "
                           f"version {FORMAT_VERSION}: import it with a newer Strongroom")
    revision = header.get("schema_revision")
    head = migration.head()
    script = ScriptDirectory.from_config(migration.alembic_config())
    known = {rev.revision for rev in script.walk_revisions()}
    if revision not in known:
        raise reader.error(f"schema_revision: {revision!r} is newer than this Strongroom knows (its newest is "
                           f"{head}): import it with the Strongroom that wrote it, or a newer one")
    if not isinstance(header.get("tables"), dict):
        raise reader.error("tables: missing from the header")
    return str(revision)


def _check_columns(file_tables: Mapping[str, Any], by_name: Mapping[str, sa.Table], reader: _Reader) -> None:
    for name, columns in file_tables.items():
        table = by_name.get(name)
        if table is None:
            raise reader.error(f"table {name!r} is unknown to this Strongroom")
        if not isinstance(columns, list):
            raise reader.error(f"tables.{name}: not a list of column names")
        unknown = [c for c in columns if c not in table.columns]
        if unknown:
            raise reader.error(f"table {name} has no column {unknown[0]!r}")
        required = [c.name for c in table.columns if c.name not in columns and not c.nullable
                    and c.default is None and c.server_default is None and c is not _surrogate(table)]
        if required:
            raise reader.error(f"table {name}: column {required[0]!r} is missing and has no default")


def _surrogate(table: sa.Table) -> sa.Column[Any] | None:
    """The primary key when it is one database-assigned integer, else None."""
    pk = list(table.primary_key.columns)
    if len(pk) == 1 and pk[0].autoincrement in (True, "auto") and _python_type(pk[0]) is int:
        return pk[0]
    return None


def _merge_key(table: sa.Table) -> list[str] | None:
    """The columns that identify a row across two stores (None: every row is new)."""
    if _surrogate(table) is None:
        return [c.name for c in table.primary_key.columns]
    for constraint in table.constraints:
        if isinstance(constraint, sa.UniqueConstraint):
            return [c.name for c in constraint.columns]
    return None


def _check_mergeable(exported: list[sa.Table]) -> None:
    for table in exported:
        for fk in table.foreign_keys:
            if _surrogate(fk.column.table) is not None:  # type: ignore[arg-type]
                raise exceptions.InvalidInput(
                    reason=f"--merge cannot renumber {fk.column.table.name} rows that {table.name} refers to; "
                           f"import into an empty store or use --force")


def _counts(conn: sa.Connection, exported: list[sa.Table]) -> dict[str, int]:
    out = {}
    for table in exported:
        out[table.name] = int(conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one())
    return out


def _reset_sequences(conn: sa.Connection, exported: list[sa.Table]) -> None:
    """PostgreSQL: serial columns continue after the imported ids (MariaDB and sqlite do so by themselves)."""
    if conn.dialect.name != "postgresql":
        return
    for table in exported:
        column = _surrogate(table)
        if column is not None:
            conn.execute(sa.text(
                f"SELECT setval(pg_get_serial_sequence(:table, :column), "
                f"COALESCE((SELECT MAX({column.name}) FROM {table.name}), 0) + 1, false)"),
                {"table": table.name, "column": column.name})


class _Importer:
    def __init__(self, conn: sa.Connection, exported: list[sa.Table], file_tables: Mapping[str, list[str]],
                 mode: Mode, reader: _Reader) -> None:
        self.conn = conn
        self.by_name = {t.name: t for t in exported}
        self.file_tables = file_tables
        self.mode = mode
        self.reader = reader
        self.rows: dict[str, int] = {t.name: 0 for t in exported}
        self.skipped: dict[str, int] = {t.name: 0 for t in exported}
        self.received: dict[str, int] = {t.name: 0 for t in exported}
        self._pending: list[dict[str, Any]] = []
        self._pending_table: sa.Table | None = None
        self._existing: dict[str, set[tuple[Any, ...]]] = {}
        self._kept: dict[tuple[str, str], set[Any]] = {}  # (table, column) -> values of rows kept (merge)
        self._codecs = {t.name: {c.name: _codec(c) for c in t.columns} for t in exported}
        self._upgrades = {name: [fn for table, column, fn in ROW_UPGRADES
                                 if table == name and column not in columns] for name, columns in file_tables.items()}

    def add(self, record: dict[str, Any]) -> None:
        name = record.get("table")
        table = self.by_name.get(name) if isinstance(name, str) else None
        if table is None or name not in self.file_tables:
            raise self.reader.error(f"table {name!r} is not one of the file's tables")
        raw = record.get("row")
        if not isinstance(raw, dict):
            raise self.reader.error(f"{name}: \"row\" is not an object")
        if set(raw) != set(self.file_tables[table.name]):
            missing = sorted(set(self.file_tables[table.name]) - set(raw))
            extra = sorted(set(raw) - set(self.file_tables[table.name]))
            raise self.reader.error(f"{name}: row " + (f"lacks column {missing[0]!r}" if missing
                                                       else f"has unexpected column {extra[0]!r}"))
        row: dict[str, Any] = {}
        codecs = self._codecs[table.name]
        for key, value in raw.items():
            try:
                row[key] = _decode(value, codecs[key])
            except (TypeError, ValueError, KeyError, decimal.InvalidOperation, binascii.Error) as err:
                raise self.reader.error(f"{name}.{key}: {value!r} is not a valid {codecs[key]} ({err})") from None
        for upgrade in self._upgrades[table.name]:
            row = upgrade(row)
        self.received[table.name] += 1
        if self.mode is Mode.MERGE and self._keep_target(table, row):
            return
        if self._pending_table is not table:
            self.flush()
            self._pending_table = table
        self._pending.append(row)
        if len(self._pending) >= BATCH:
            self.flush()

    def _keep_target(self, table: sa.Table, row: dict[str, Any]) -> bool:
        """Merge: True when the row (or its parent) is already in the target; the row is then skipped."""
        skip = False
        for fk in table.foreign_keys:
            kept = self._kept.get((fk.column.table.name, fk.column.name))  # type: ignore[attr-defined]
            if kept and row.get(fk.parent.name) in kept:
                skip = True
        key = _merge_key(table)
        if not skip and key is not None:
            if table.name not in self._existing:
                cols = [table.c[k] for k in key]
                self._existing[table.name] = {tuple(r) for r in self.conn.execute(sa.select(*cols)).all()}
            skip = tuple(row[k] for k in key) in self._existing[table.name]
        if skip:
            self.skipped[table.name] += 1
            for column in self._referenced(table):
                self._kept.setdefault((table.name, column), set()).add(row.get(column))
            return True
        surrogate = _surrogate(table)
        if surrogate is not None:
            row.pop(surrogate.name, None)  # the target numbers it
        return False

    def _referenced(self, table: sa.Table) -> set[str]:
        names = set()
        for other in self.by_name.values():
            for fk in other.foreign_keys:
                if fk.column.table is table:
                    names.add(fk.column.name)
        return names

    def flush(self) -> None:
        table, rows = self._pending_table, self._pending
        if table is None or not rows:
            return
        try:
            self.conn.execute(table.insert(), rows)
        except sa.exc.IntegrityError as err:
            orig = getattr(err, "orig", None) or err
            first = str(orig).splitlines()[0] if str(orig) else ""
            raise exceptions.Conflict(reason=f"{self.reader.name}: rows of {table.name} up to line "
                                             f"{self.reader.lineno} cannot be inserted: {first}") from None
        self.rows[table.name] += len(rows)
        self._pending = []


def import_(db: Database, lines: Iterable[str], *, mode: Mode = Mode.EMPTY, name: str = "input") -> Summary:
    """Copy the rows of an export into ``db`` (see the module docstring for ``mode``)."""
    reader = _Reader(lines, name)
    records = iter(reader)
    header = next(records, None)
    if header is None:
        raise exceptions.InvalidInput(reason=f"{name}: the file is empty")
    revision = _check_header(header, reader)
    exported = tables()
    file_tables: dict[str, list[str]] = header["tables"]
    _check_columns(file_tables, {t.name: t for t in exported}, reader)
    if mode is Mode.MERGE:
        _check_mergeable(exported)
    with db.errors():
        db.sync()
        engine = db.engine.execution_options(**{drivers.WRITE_OPTION: True})
        with engine.connect() as conn, conn.begin():
            present = {k: v for k, v in _counts(conn, exported).items() if v}
            if present and mode is Mode.EMPTY:
                held = ", ".join(f"{k}: {v}" for k, v in present.items())
                raise exceptions.Conflict(
                    reason=f"{db.url_for_display} is not empty ({held}); import with --force to replace its "
                           f"rows or --merge to add the missing ones")
            if mode is Mode.FORCE:
                for table in reversed(exported):
                    conn.execute(table.delete())
            importer = _Importer(conn, exported, file_tables, mode, reader)
            end: dict[str, Any] | None = None
            for record in records:
                if end is not None:
                    raise reader.error("data after the closing \"end\" line")
                if "end" in record:
                    end = record["end"]
                    continue
                importer.add(record)
            importer.flush()
            if end is None:
                raise exceptions.InvalidInput(
                    reason=f"{name}: ends before its closing \"end\" line: the file is truncated; nothing was "
                           f"imported")
            expected = {k: v for k, v in end.items() if v} if isinstance(end, dict) else None
            got = {k: v for k, v in importer.received.items() if v}
            if expected != got:
                raise exceptions.InvalidInput(
                    reason=f"{name}: the closing line announces {expected} rows but the file holds {got}; "
                           f"nothing was imported")
            _reset_sequences(conn, exported)
    return Summary(revision=revision, rows=importer.rows, skipped=importer.skipped)
