"""The block backend interface (modelled on Flocker's IBlockDeviceAPI and cinderlib's Backend).

A backend owns volumes (fixed-size byte devices) and point-in-time snapshots of
them.  Protection reads a snapshot through a :class:`BlockReader` (allocated
extents first, so holes are never read), and restore writes a new volume
through a :class:`BlockWriter` (regions never written stay holes/zero).

Backends are constructed with the options of their section in the provider
file.  ``repr()``/``str()`` of a backend and everything ``stats()`` or
``describe()`` returns must never contain credentials.
"""

from __future__ import annotations

import abc
import contextlib
import dataclasses
import datetime as _dt
from collections.abc import Iterator, Mapping
from typing import Any, ClassVar

import jsonschema

from strongroom import exceptions, validation


@dataclasses.dataclass(frozen=True)
class Volume:
    id: str
    name: str
    size: int  # bytes
    created_at: _dt.datetime | None = None
    extra: Mapping[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class Snapshot:
    id: str
    volume_id: str
    size: int  # bytes, the volume's size when the snapshot was taken
    created_at: _dt.datetime | None = None


@dataclasses.dataclass(frozen=True, order=True)
class Extent:
    """A byte range ``[offset, offset + length)``."""

    offset: int
    length: int

    @property
    def end(self) -> int:
        return self.offset + self.length


@dataclasses.dataclass(frozen=True)
class PoolStats:
    name: str
    total_capacity: int  # bytes
    free_capacity: int  # bytes
    allocated_capacity: int  # bytes used by volumes and snapshots


@dataclasses.dataclass(frozen=True)
class BackendStats:
    backend: str
    pools: tuple[PoolStats, ...]


# -- the checks every backend makes the same way (create_volume's size, BlockWriter.write's range) ----------


def check_size(size: Any) -> int:
    """``size`` as a positive int, or ``InvalidInput``."""
    if isinstance(size, bool) or not isinstance(size, int) or size <= 0:
        raise exceptions.InvalidInput(reason=f"volume size must be a positive number of bytes, not {size!r}")
    return size


def check_name(name: Any) -> None:
    """``InvalidInput`` unless ``name`` (given to ``create_volume``) is printable text: a volume's name is
    shown in listings and logs, so no newline, ESC, NUL or bidi override (:mod:`strongroom.validation`)."""
    found = validation.problem(name, validation.Rule.NAME)
    if found is not None:
        shown = repr(name) if isinstance(name, str) else type(name).__name__
        raise exceptions.InvalidInput(reason=f"volume name {shown} {found}")


def check_range(size: int, offset: int, length: int, what: str) -> None:
    """``InvalidInput`` unless ``[offset, offset + length)`` lies within ``[0, size)``."""
    if offset < 0 or length < 0:
        raise exceptions.InvalidInput(
            reason=f"{what}: offset {offset} and length {length} must not be negative"
        )
    if offset + length > size:
        raise exceptions.InvalidInput(
            reason=f"{what}: writing {length} bytes at offset {offset} goes past the end ({size} bytes)"
        )


class BlockReader(abc.ABC):
    """An open, read-only view of a volume or snapshot."""

    size: int

    def __enter__(self) -> BlockReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @abc.abstractmethod
    def allocated_extents(self) -> Iterator[Extent]:
        """Ascending, non-overlapping ranges that may hold data.

        Everything outside them reads as zeros.  A backend that cannot tell
        returns one extent covering the whole device.
        """

    @abc.abstractmethod
    def read(self, offset: int, length: int) -> bytes:
        """Exactly ``length`` bytes (short only at the end of the device)."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release the underlying handle.  Idempotent."""


class BlockWriter(abc.ABC):
    """An open, writable view of a volume."""

    size: int

    def __enter__(self) -> BlockWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @abc.abstractmethod
    def write(self, offset: int, data: bytes) -> None:
        """Write ``data`` at ``offset``.  Raises ``InvalidInput`` past the end."""

    @abc.abstractmethod
    def flush(self) -> None:
        """Make every write durable."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Flush and release the handle.  Idempotent."""


class BlockBackend(abc.ABC):
    """Volumes and snapshots on one storage system."""

    #: JSON schema of the options this backend reads from its provider section.
    options_schema: ClassVar[dict[str, Any]] = {"type": "object", "properties": {}}
    #: Options whose values are secrets; never shown anywhere.
    secret_options: ClassVar[frozenset[str]] = frozenset({"password", "secret_key", "token"})

    def __init__(self, options: Mapping[str, Any] | None = None) -> None:
        """Keep ``options`` after checking them against :attr:`options_schema` (``ConfigError`` names the key)."""
        self.options: Mapping[str, Any] = dict(options or {})
        try:
            jsonschema.validate(dict(self.options), self.options_schema)
        except jsonschema.ValidationError as err:
            where = "/".join(str(p) for p in err.absolute_path) or "options"
            raise exceptions.ConfigError(
                reason=f"{type(self).__name__}: {where}: {err.message}") from err

    def __repr__(self) -> str:
        shown = {k: ("***" if k in self.secret_options else v) for k, v in self.options.items()}
        return f"{type(self).__name__}({shown})"

    # -- volumes -----------------------------------------------------------

    @abc.abstractmethod
    def create_volume(self, size: int, name: str | None = None) -> Volume:
        """Create an empty (all-zero) volume of ``size`` bytes.

        ``name`` may become the id (loopback).  Raises ``VolumeExists`` if a volume
        with that name/id exists and ``InvalidInput`` for an unusable name, at least for every name
        :func:`check_name` refuses (control or bidi characters).
        """

    @abc.abstractmethod
    def list_volumes(self) -> list[Volume]:
        """Every volume, sorted by id."""

    @abc.abstractmethod
    def get_volume(self, volume_id: str) -> Volume:
        """Raises ``VolumeNotFound``."""

    @abc.abstractmethod
    def destroy_volume(self, volume_id: str) -> None:
        """Remove the volume.  Raises ``VolumeNotFound`` if it does not exist."""

    # -- snapshots ---------------------------------------------------------

    @abc.abstractmethod
    def create_snapshot(self, volume_id: str) -> Snapshot:
        """A point-in-time copy; later writes to the volume do not change it."""

    @abc.abstractmethod
    def list_snapshots(self, volume_id: str | None = None) -> list[Snapshot]:
        """Snapshots (of one volume, or all), sorted by id."""

    @abc.abstractmethod
    def delete_snapshot(self, snapshot_id: str) -> None:
        """Idempotent: deleting a missing snapshot is not an error."""

    # -- data --------------------------------------------------------------

    @abc.abstractmethod
    def open_snapshot(self, snapshot_id: str) -> BlockReader:
        """Raises ``SnapshotNotFound``."""

    @abc.abstractmethod
    def open_volume_reader(self, volume_id: str) -> BlockReader:
        """Raises ``VolumeNotFound``."""

    @abc.abstractmethod
    def open_volume_writer(self, volume_id: str) -> BlockWriter:
        """Raises ``VolumeNotFound``."""

    @contextlib.contextmanager
    def reading_snapshot(self, snapshot_id: str) -> Iterator[BlockReader]:
        reader = self.open_snapshot(snapshot_id)
        try:
            yield reader
        finally:
            reader.close()

    @contextlib.contextmanager
    def writing_volume(self, volume_id: str) -> Iterator[BlockWriter]:
        writer = self.open_volume_writer(volume_id)
        try:
            yield writer
        finally:
            writer.close()

    # -- capacity ----------------------------------------------------------

    @abc.abstractmethod
    def stats(self) -> BackendStats:
        """Capacity per pool.  Never includes credentials."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections.  Idempotent."""
