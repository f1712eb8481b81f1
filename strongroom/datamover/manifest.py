"""Volume manifests: which chunk holds which byte range, and where the zero runs are.

A manifest lives in its own bank section::

    parts/00000000     zstd-compressed JSON lines, one entry per line:
    parts/00000001       [offset, length, "<digest>"]   data chunk
    ...                  [offset, length, null]          zero run (never stored, restored as a hole)
    manifest.json      the header, written LAST

Entries are in ascending offset order and tile ``[0, size)`` exactly; a part
holds at most ``entries_per_part`` of them, so neither writer nor reader ever
holds more than one part in memory.  The header records the format, the volume
size, chunk size, hash and compression, the number of parts with the sha256 of
each stored part, and totals.  Without ``manifest.json`` a manifest is
incomplete: restore and verify refuse it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Iterator
from typing import Any

import zstandard

from strongroom import exceptions
from strongroom.bank_plugins.bank import BankSection
from strongroom.bank_plugins.layout import MANIFEST_HEADER, MANIFEST_PARTS, BankLayout
from strongroom.datamover import hashing

FORMAT = "strongroom.volume-manifest"
VERSION = 1
HEADER_KEY = MANIFEST_HEADER
PARTS_PREFIX = MANIFEST_PARTS
DEFAULT_ENTRIES_PER_PART = 16384


class ManifestIncomplete(exceptions.DataIntegrityError):
    """Manifest {where} is incomplete or unreadable: {reason}"""


@dataclasses.dataclass(frozen=True)
class Entry:
    """``[offset, offset + length)`` holds chunk ``digest``, or zeros when ``digest`` is None."""

    offset: int
    length: int
    digest: str | None

    @property
    def end(self) -> int:
        return self.offset + self.length


@dataclasses.dataclass(frozen=True)
class ManifestInfo:
    """Where a manifest was written and what it holds."""

    section: str  # the bank prefix of the manifest
    parts: int
    entries: int
    bytes_written: int  # header + parts, as stored in the bank


@dataclasses.dataclass(frozen=True)
class ManifestHeader:
    """``manifest.json``: what a complete manifest holds.  Written last; its presence completes the manifest."""

    size: int
    chunk_size: int
    hash: str
    compression: str
    compression_level: int
    entries: int
    parts: int
    part_sha256: tuple[str, ...]
    totals: dict[str, Any] = dataclasses.field(default_factory=dict)

    def to_json(self) -> bytes:
        data = {"format": FORMAT, "version": VERSION, **dataclasses.asdict(self)}
        data["part_sha256"] = list(self.part_sha256)
        return json.dumps(data, sort_keys=True, indent=1).encode()

    @classmethod
    def from_json(cls, raw: bytes, where: str) -> ManifestHeader:
        """Parse and validate a stored header; ``ManifestIncomplete`` names what is wrong."""
        try:
            data = json.loads(raw)
        except ValueError as err:
            raise ManifestIncomplete(where=where, reason=f"{HEADER_KEY} is not JSON: {err}") from err
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise ManifestIncomplete(where=where, reason=f"{HEADER_KEY} is not a {FORMAT} header")
        if data.get("version") != VERSION:
            raise ManifestIncomplete(where=where, reason=f"unsupported manifest version {data.get('version')!r}")
        for field in ("size", "chunk_size", "entries", "parts"):
            value = data.get(field)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ManifestIncomplete(where=where, reason=f"header field {field!r} is not a natural number")
        digests = data.get("part_sha256")
        if not isinstance(digests, list) or len(digests) != data["parts"]:
            raise ManifestIncomplete(where=where, reason="header lists a wrong number of part checksums")
        hashing.base_of(str(data.get("hash")))
        totals = data.get("totals")
        return cls(size=data["size"], chunk_size=data["chunk_size"], hash=str(data["hash"]),
                   compression=str(data.get("compression", "none")),
                   compression_level=int(data.get("compression_level") or 0), entries=data["entries"],
                   parts=data["parts"], part_sha256=tuple(str(d) for d in digests),
                   totals=totals if isinstance(totals, dict) else {})


def part_key(index: int) -> str:
    return BankLayout.manifest_part_key(index)


class ManifestWriter:
    """Accumulates entries in order and writes parts as they fill, then the header.

    Zero runs that touch are merged into one entry.
    """

    def __init__(self, section: BankSection, *, size: int, chunk_size: int, hash_algo: str,
                 compression: str, compression_level: int,
                 entries_per_part: int = DEFAULT_ENTRIES_PER_PART) -> None:
        if entries_per_part < 1:
            raise exceptions.InvalidInput(reason="entries_per_part must be at least 1")
        self.section = section
        self.size = size
        self.chunk_size = chunk_size
        self.hash_algo = hash_algo
        self.compression = compression
        self.compression_level = compression_level
        self.entries_per_part = entries_per_part
        self._lines: list[str] = []
        self._pending_zero: tuple[int, int] | None = None
        self._end = 0
        self._part_digests: list[str] = []
        self._entries = 0
        self._bytes_written = 0
        self._compressor = zstandard.ZstdCompressor(level=3)

    def add_zero(self, offset: int, length: int) -> None:
        if length <= 0:
            return
        self._check_offset(offset, length)
        if self._pending_zero is not None:
            self._pending_zero = (self._pending_zero[0], self._pending_zero[1] + length)
        else:
            self._pending_zero = (offset, length)
        self._end = offset + length

    def add_data(self, offset: int, length: int, digest: str) -> None:
        self._check_offset(offset, length)
        self._flush_zero()
        self._append(json.dumps([offset, length, digest], separators=(",", ":")))
        self._end = offset + length

    def _check_offset(self, offset: int, length: int) -> None:
        if offset != self._end or length <= 0 or offset + length > self.size:
            raise exceptions.InvalidInput(
                reason=f"manifest entry [{offset}, {offset + length}) does not follow {self._end}"
            )

    def _flush_zero(self) -> None:
        if self._pending_zero is not None:
            offset, length = self._pending_zero
            self._pending_zero = None
            self._append(f"[{offset},{length},null]")

    def _append(self, line: str) -> None:
        self._lines.append(line)
        self._entries += 1
        if len(self._lines) >= self.entries_per_part:
            self._write_part()

    def _write_part(self) -> None:
        payload = self._compressor.compress(("\n".join(self._lines) + "\n").encode())
        self.section.put(part_key(len(self._part_digests)), payload, {"content-encoding": "zstd"})
        self._part_digests.append(hashlib.sha256(payload).hexdigest())
        self._bytes_written += len(payload)
        self._lines = []

    def commit(self, **totals: Any) -> ManifestInfo:
        """Write the remaining part, then ``manifest.json``.  The manifest is complete after this."""
        if self._end != self.size:
            raise exceptions.InvalidInput(
                reason=f"manifest covers [0, {self._end}) but the volume has {self.size} bytes"
            )
        self._flush_zero()
        if self._lines:
            self._write_part()
        header = ManifestHeader(
            size=self.size, chunk_size=self.chunk_size, hash=self.hash_algo, compression=self.compression,
            compression_level=self.compression_level, entries=self._entries, parts=len(self._part_digests),
            part_sha256=tuple(self._part_digests), totals=totals)
        raw = header.to_json()
        self.section.put(HEADER_KEY, raw, {"content-type": "application/json"})
        self._bytes_written += len(raw)
        return ManifestInfo(section=self.section.prefix, parts=len(self._part_digests),
                            entries=self._entries, bytes_written=self._bytes_written)


def read_manifest_header(manifest_section: BankSection) -> ManifestHeader:
    """The validated header.  Raises ``ManifestIncomplete`` if ``manifest.json`` is missing or malformed."""
    where = manifest_section.prefix
    try:
        raw = manifest_section.get(HEADER_KEY)
    except exceptions.BankObjectNotFound:
        raise ManifestIncomplete(where=where, reason=f"{HEADER_KEY} is missing (the backup never finished)"
                                 ) from None
    return ManifestHeader.from_json(raw, where)


def iter_entries(manifest_section: BankSection, header: ManifestHeader | None = None) -> Iterator[Entry]:
    """Every entry in offset order, one part in memory at a time, checked as it goes.

    Raises ``ManifestIncomplete`` for a missing, corrupt or inconsistent part.
    """
    if header is None:
        header = read_manifest_header(manifest_section)
    where = manifest_section.prefix
    size, chunk_size = header.size, header.chunk_size
    decompressor = zstandard.ZstdDecompressor()
    end = 0
    count = 0
    for index, expected in enumerate(header.part_sha256):
        key = part_key(index)
        try:
            payload = manifest_section.get(key)
        except exceptions.BankObjectNotFound:
            raise ManifestIncomplete(where=where, reason=f"part {key} is missing") from None
        if hashlib.sha256(payload).hexdigest() != expected:
            raise ManifestIncomplete(where=where, reason=f"part {key} does not match its checksum")
        for entry in _decode_part(decompressor, payload, where, key):
            problem = None
            if entry.offset != end or entry.length <= 0 or entry.end > size:
                problem = "is misplaced"
            elif entry.digest is not None and entry.length > chunk_size:
                problem = "is longer than the chunk size"
            if problem:
                raise ManifestIncomplete(where=where, reason=f"part {key}: entry at {entry.offset} {problem}")
            end = entry.end
            count += 1
            yield entry
    if end != size or count != header.entries:
        raise ManifestIncomplete(where=where, reason=f"entries cover [0, {end}) of {size} bytes")


def _decode_part(decompressor: zstandard.ZstdDecompressor, payload: bytes, where: str,
                 key: str) -> Iterator[Entry]:
    try:
        text = decompressor.decompress(payload).decode()
        rows = [json.loads(line) for line in text.splitlines() if line]
    except (zstandard.ZstdError, ValueError) as err:
        raise ManifestIncomplete(where=where, reason=f"part {key} is unreadable: {err}") from err
    for row in rows:
        if (not isinstance(row, list) or len(row) != 3 or not isinstance(row[0], int)
                or not isinstance(row[1], int) or not (row[2] is None or hashing.is_digest(row[2]))):
            raise ManifestIncomplete(where=where, reason=f"part {key} holds a malformed entry {row!r}")
        yield Entry(row[0], row[1], row[2])


def manifest_digests(manifest_section: BankSection, *, allow_incomplete: bool = False) -> Iterator[str]:
    """Every chunk digest a manifest references (a digest may repeat).

    With ``allow_incomplete`` (garbage collection of an unfinished backup), the
    parts present are read even without ``manifest.json``.
    """
    try:
        header = read_manifest_header(manifest_section)
    except ManifestIncomplete:
        if not allow_incomplete:
            raise
        decompressor = zstandard.ZstdDecompressor()
        for key in manifest_section.iter(PARTS_PREFIX):
            try:
                payload = manifest_section.get(key)
                entries = list(_decode_part(decompressor, payload, manifest_section.prefix, key))
            except (exceptions.BankObjectNotFound, ManifestIncomplete):
                continue
            for entry in entries:
                if entry.digest is not None:
                    yield entry.digest
        return
    for entry in iter_entries(manifest_section, header):
        if entry.digest is not None:
            yield entry.digest
