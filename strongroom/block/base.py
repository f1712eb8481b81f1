"""The block backend interface (modelled on Flocker's IBlockDeviceAPI and cinderlib's Backend).

A backend owns volumes (fixed-size byte devices) and point-in-time snapshots of
them.  Protection reads a snapshot through a :class:`BlockReader` (allocated
extents first, so holes are never read), and restore writes a new volume
through a :class:`BlockWriter` (regions never written stay holes/zero).

Two contracts keep a crash from leaving anything that looks like good data or
costs space forever (``doc/plugin-authors-block.md``):

* **Staged volumes.**  ``create_volume(..., staged=True)`` makes a volume that
  only its writer sees: ``list_volumes``/``get_volume``/``destroy_volume``
  ignore it (so it is never offered as a protectable resource) until
  ``publish_volume`` makes it an ordinary volume in one atomic step, and
  ``discard_volume`` removes it.  A restore writes into one and publishes it
  only when every byte is written.
* **Overwrites.**  A restore into an existing volume opens it with
  ``open_volume_overwriter``: the backend refuses (``VolumeInUse``) a volume that
  is in use, and while the writer is open no other overwriter gets it.  The
  caller writes every byte (zeros too), so nothing of the old content survives.
* **Tagged snapshots.**  ``create_snapshot(volume_id, tags)`` keeps string
  ``tags`` with the snapshot and ``list_snapshots`` returns them, so whoever
  took a snapshot can find it again after a crash and delete it; and
  ``reclaim_leftovers`` removes what a call that died half way left behind.

Backends are constructed with the options of their section in the provider
file.  ``repr()``/``str()`` of a backend and everything ``stats()`` or
``describe()`` returns must never contain credentials.
"""

from __future__ import annotations

import abc
import contextlib
import dataclasses
import datetime as _dt
from collections.abc import Callable, Iterator, Mapping, Sequence
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
    #: Created with ``staged=True`` and not yet published: not listed, not protectable.
    staged: bool = False
    #: Where the storage placed it, in the terms ``create_volume(placement=...)`` takes (Cinder:
    #: ``volume_type``, ``availability_zone``); empty for a backend without such a notion.
    placement: Mapping[str, str] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class Snapshot:
    id: str
    volume_id: str
    size: int  # bytes, the volume's size when the snapshot was taken
    created_at: _dt.datetime | None = None
    #: What ``create_snapshot`` was given to keep with it (e.g. the checkpoint it serves).
    tags: Mapping[str, str] = dataclasses.field(default_factory=dict)


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


MAX_TAGS = 16
MAX_TAG_LENGTH = 255


def check_tags(tags: Mapping[str, str] | None) -> dict[str, str]:
    """``tags`` as a plain dict of short strings (at most :data:`MAX_TAGS`), or ``InvalidInput`` naming the key."""
    out = dict(tags or {})
    if len(out) > MAX_TAGS:
        raise exceptions.InvalidInput(reason=f"at most {MAX_TAGS} snapshot tags are allowed, not {len(out)}")
    for key, value in out.items():
        for what in (key, value):
            if not isinstance(what, str) or not what or len(what) > MAX_TAG_LENGTH:
                raise exceptions.InvalidInput(
                    reason=f"snapshot tag {key!r}: keys and values must be strings of 1 to "
                    f"{MAX_TAG_LENGTH} characters, not {what!r}")
    return out


def check_name(name: Any) -> None:
    """``InvalidInput`` unless ``name`` (given to ``create_volume``) is printable text: a volume's name is
    shown in listings and logs, so no newline, ESC, NUL or bidi override (:mod:`strongroom.validation`)."""
    found = validation.problem(name, validation.Rule.NAME)
    if found is not None:
        shown = repr(name) if isinstance(name, str) else type(name).__name__
        raise exceptions.InvalidInput(reason=f"volume name {shown} {found}")


def check_placement(backend: BlockBackend, placement: Mapping[str, Any] | None) -> dict[str, str]:
    """``placement`` as a dict of the backend's :attr:`~BlockBackend.placement_keys` (strings), or
    ``InvalidInput`` naming the first key the backend has no notion of."""
    out = dict(placement or {})
    for key, value in sorted(out.items()):
        if key not in backend.placement_keys:
            known = ", ".join(sorted(backend.placement_keys)) or "none"
            raise exceptions.InvalidInput(
                reason=f"{key}: the {backend.kind} block backend cannot place a volume by {key} "
                f"(it knows: {known})")
        if not isinstance(value, str) or not value:
            raise exceptions.InvalidInput(reason=f"{key} must be a non-empty string")
    return out


def check_new_size(volume: Volume, size: Any) -> int:
    """``size`` for :meth:`BlockBackend.extend_volume` of ``volume``: a positive int not below its size."""
    size = check_size(size)
    if size < volume.size:
        raise exceptions.InvalidInput(
            reason=f"volume {volume.id} holds {volume.size} bytes: it can grow, not shrink to {size}")
    return size


def merge_extents(extents: Iterator[Extent] | list[Extent], size: int, align: int = 1) -> Iterator[Extent]:
    """``extents`` (in any order, overlapping or not) widened to multiples of ``align``, clipped to
    ``[0, size)``, sorted and merged: the form :meth:`BlockBackend.changed_extents` returns."""
    spans = sorted((e.offset - e.offset % align, -(-e.end // align) * align) for e in extents if e.length > 0)
    start = end = -1
    for lo, hi in spans:
        lo, hi = max(lo, 0), min(hi, size)
        if lo >= hi:
            continue
        if start < 0:
            start, end = lo, hi
        elif lo <= end:
            end = max(end, hi)
        else:
            yield Extent(start, end - start)
            start, end = lo, hi
    if start >= 0:
        yield Extent(start, end - start)


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

    def prefetch(self, offset: int, length: int) -> None:  # noqa: B027 - optional hook
        """A hint that ``[offset, offset + length)`` will be read soon (the data mover gives it a few MiB
        ahead of its reads).  It must not block for the data nor fail; the default does nothing."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release the underlying handle.  Idempotent."""


class BlockWriter(abc.ABC):
    """An open, writable view of a volume."""

    size: int

    def __enter__(self) -> BlockWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    #: True if :meth:`write`, :meth:`write_pieces` and :meth:`write_zeros` may be called from several threads
    #: at once, on ranges that do not overlap.  The data mover serialises its calls to a writer that says False.
    parallel_writes: bool = False

    @abc.abstractmethod
    def write(self, offset: int, data: bytes) -> None:
        """Write ``data`` at ``offset``.  Raises ``InvalidInput`` past the end."""

    def write_pieces(self, offset: int, pieces: Sequence[bytes | memoryview]) -> None:
        """Write ``pieces`` one after the other from ``offset``, as one write of their concatenation (the data
        mover gathers neighbouring chunks this way).  This default joins them; a backend that can write them
        as they are (``pwritev``) overrides it.  Raises ``InvalidInput`` past the end."""
        data = pieces[0] if len(pieces) == 1 else b"".join(pieces)
        self.write(offset, data if isinstance(data, bytes) else bytes(data))

    @abc.abstractmethod
    def flush(self) -> None:
        """Make every write durable."""

    def write_zeros(self, offset: int, length: int) -> None:
        """Make ``[offset, offset + length)`` read as zeros, whatever it held (an overwrite's zero ranges).
        A backend that can deallocate the range (rbd's ``write_zeroes``) overrides this default, which
        writes zero bytes a few MiB at a time.  Raises ``InvalidInput`` past the end."""
        check_range(self.size, offset, length, "writing zeros")
        zeros = bytes(min(length, ZERO_STEP))
        end = offset + length
        while offset < end:
            step = min(ZERO_STEP, end - offset)
            self.write(offset, zeros if step == len(zeros) else zeros[:step])
            offset += step

    def close(self) -> None:  # noqa: B027 - optional hook
        """Flush and release the handle.  Idempotent."""


#: Bytes :meth:`BlockWriter.write_zeros` writes at a time by default.
ZERO_STEP = 4 << 20


class HoldingWriter(BlockWriter):
    """``inner`` that calls ``release`` once it is closed: an overwriter whose backend holds the volume
    (a lock, a mark) for as long as the writer is open."""

    def __init__(self, inner: BlockWriter, release: Callable[[], None]) -> None:
        self._inner = inner
        self._release: Callable[[], None] | None = release
        self.size = inner.size
        self.parallel_writes = inner.parallel_writes

    def write(self, offset: int, data: bytes) -> None:
        self._inner.write(offset, data)

    def write_pieces(self, offset: int, pieces: Sequence[bytes | memoryview]) -> None:
        self._inner.write_pieces(offset, pieces)

    def flush(self) -> None:
        self._inner.flush()

    def write_zeros(self, offset: int, length: int) -> None:
        self._inner.write_zeros(offset, length)

    def close(self) -> None:
        release, self._release = self._release, None
        if release is None:
            return
        try:
            self._inner.close()
        finally:
            release()


class BlockBackend(abc.ABC):
    """Volumes and snapshots on one storage system."""

    #: JSON schema of the options this backend reads from its provider section.
    options_schema: ClassVar[dict[str, Any]] = {"type": "object", "properties": {}}
    #: Options whose values are secrets; never shown anywhere.
    secret_options: ClassVar[frozenset[str]] = frozenset({"password", "secret_key", "token"})
    #: The ``placement`` keys :meth:`create_volume` honours and :attr:`Volume.placement` reports.
    placement_keys: ClassVar[frozenset[str]] = frozenset()
    #: The backend's name in messages (``loopback``, ``cinder``...).
    kind: ClassVar[str] = "block"

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

    def for_project(self, project_id: str | None, auth_token: str | None = None) -> BlockBackend:
        """This backend as the project ``project_id`` sees it: a backend whose storage has projects (Cinder)
        lists only that project's volumes.  Backends without projects (loopback, rbd) keep this default.

        ``auth_token`` is the request's Keystone token when its context carries one; a backend may act with
        it as that user (Cinder's ``act_as_user``).  It is a credential: never logged, kept or shown."""
        return self

    # -- volumes -----------------------------------------------------------

    @abc.abstractmethod
    def create_volume(self, size: int, name: str | None = None, *, staged: bool = False,
                      placement: Mapping[str, str] | None = None) -> Volume:
        """Create an empty (all-zero) volume of ``size`` bytes.

        ``placement`` (checked by :func:`check_placement`: ``InvalidInput`` naming a key outside
        :attr:`placement_keys`) says where to make it; keys it leaves out take the backend's default.

        ``name`` may become the id (loopback).  Raises ``VolumeExists`` if a volume
        with that name/id exists (staged or not) and ``InvalidInput`` for an unusable name, at least for every name
        :func:`check_name` refuses (control or bidi characters).

        With ``staged=True`` the volume is made for its writer alone: its writer and
        reader open by its id, but ``list_volumes``, ``get_volume`` and
        ``destroy_volume`` do not see it, and its name stays reserved, until
        :meth:`publish_volume` or :meth:`discard_volume`.  It is returned with ``staged=True``.
        """

    @abc.abstractmethod
    def publish_volume(self, volume_id: str) -> Volume:
        """Make a staged volume an ordinary one, atomically: it is listed whole or not at all.

        Returns the published volume; its id may differ from the staged one's (loopback renames a hidden
        file).  Every write made through a closed writer is durable before it is listed.  Raises
        ``VolumeNotFound`` if ``volume_id`` is no staged volume, ``VolumeExists`` if its name was
        taken meanwhile (the staged volume is then left for :meth:`discard_volume`).
        """

    @abc.abstractmethod
    def discard_volume(self, volume_id: str) -> None:
        """Remove a staged volume.  Idempotent: a missing one is not an error.  Never removes a published
        volume (``volume_id`` naming one is ignored)."""

    @abc.abstractmethod
    def list_staged_volumes(self) -> list[Volume]:
        """Every staged volume (created with ``staged=True``, neither published nor discarded), sorted by id."""

    @abc.abstractmethod
    def list_volumes(self) -> list[Volume]:
        """Every published volume, sorted by id."""

    @abc.abstractmethod
    def get_volume(self, volume_id: str) -> Volume:
        """Raises ``VolumeNotFound`` (also for a staged volume)."""

    @abc.abstractmethod
    def destroy_volume(self, volume_id: str) -> None:
        """Remove the volume.  Raises ``VolumeNotFound`` if it does not exist (or is staged)."""

    # -- snapshots ---------------------------------------------------------

    @abc.abstractmethod
    def create_snapshot(self, volume_id: str, tags: Mapping[str, str] | None = None) -> Snapshot:
        """A point-in-time copy; later writes to the volume do not change it.

        ``tags`` (checked by :func:`check_tags`) are kept with the snapshot and returned by
        :meth:`list_snapshots`, surviving a restart of the process as the snapshot does.  A snapshot is
        listed only once whole: a call that dies half way leaves at most what :meth:`reclaim_leftovers`
        removes.
        """

    @abc.abstractmethod
    def list_snapshots(self, volume_id: str | None = None) -> list[Snapshot]:
        """Snapshots (of one volume, or all), sorted by id, with their tags."""

    @abc.abstractmethod
    def delete_snapshot(self, snapshot_id: str) -> None:
        """Idempotent: deleting a missing snapshot is not an error."""

    def changed_extents(self, snapshot_id: str, base_snapshot_id: str) -> Iterator[Extent] | None:
        """Where snapshot ``snapshot_id`` may differ from the earlier snapshot ``base_snapshot_id`` of the same
        volume (changed-block tracking), or None when the backend cannot tell.

        The answer is decided when the call returns; the extents may then come lazily.  They are ascending,
        non-overlapping and within ``[0, size)`` of ``snapshot_id``; every byte whose content differs from
        the base's (bytes written, discarded, or beyond the base's end after :meth:`extend_volume`) lies in
        one.  A superset is allowed (a backend may report whole blocks, or a write of the same bytes), a
        missed change never is: a protect reads only these ranges and takes the rest from the base's
        checkpoint.  Raises ``SnapshotNotFound`` naming a snapshot that does not exist; returns None when
        the two are of different volumes, or when the backend keeps no record linking them.  The default
        (a backend without tracking) is None, once both snapshots are found.  ``doc/plugin-authors-block.md``
        says what each backend does.
        """
        known = {s.id for s in self.list_snapshots()}
        for wanted in (snapshot_id, base_snapshot_id):
            if wanted not in known:
                raise exceptions.SnapshotNotFound(snapshot_id=wanted)
        return None

    def extend_volume(self, volume_id: str, size: int) -> Volume:
        """Grow the published volume ``volume_id`` to ``size`` bytes (the new bytes read as zeros) and return
        it.  ``InvalidInput`` for a size smaller than the volume's; ``VolumeNotFound``; ``VolumeInUse`` if it
        is being overwritten.  Snapshots keep their size.  A backend that cannot grow a volume keeps this
        default, which refuses with ``BlockError``."""
        raise exceptions.BlockError(reason=f"the {self.kind} block backend cannot extend volume {volume_id}")

    def reclaim_leftovers(self) -> list[str]:
        """Remove what calls that died half way left (a half-copied snapshot image, a staged volume whose
        process is gone), never anything a live call of any process is making.  Returns what was removed,
        for the log.  Idempotent; a backend that leaves nothing behind keeps this default."""
        return []

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

    @abc.abstractmethod
    def check_overwrite(self, volume_id: str) -> Volume:
        """The published volume ``volume_id`` if a restore may overwrite it now.

        Raises ``VolumeNotFound`` (also for a staged volume) and ``VolumeInUse`` naming it when it is in
        use: another overwriter has it open, and whatever else the storage can tell (Cinder: its status is
        not ``available`` or it is attached; rbd: a client watches the image).  Holds nothing: it lets a
        request be refused before it starts; :meth:`open_volume_overwriter` checks again."""

    @abc.abstractmethod
    def open_volume_overwriter(self, volume_id: str) -> BlockWriter:
        """A writer over the whole published volume ``volume_id``, for a restore that overwrites it.

        Makes :meth:`check_overwrite`'s checks, without a window between check and open: while the writer
        is open (until ``close``), another ``open_volume_overwriter`` of the volume, in this process or
        another, raises ``VolumeInUse``.  Nothing is published or renamed: the volume keeps its id and
        name.  Its old content stays wherever the caller does not write: the caller writes every byte."""

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
