"""Backup, restore and verify of one block device against a chunk store.

The device is cut into fixed ``chunk_size`` slots aligned on multiples of
``chunk_size``.  A slot with no allocated byte is a zero run and is never read;
a slot is read only where it is allocated (the rest is zeros), and a slot whose
bytes are all zero is a zero run too.  Every other slot is one chunk: hashed,
stored if the store lacks it (zstd-compressed), and listed in the manifest.
Given a parent checkpoint and the extents changed since (an incremental), only
changed slots are read and the others keep the parent's entries
(:mod:`strongroom.datamover.plan`, :mod:`strongroom.datamover.incremental`).

Work runs on a bounded thread pool (reading, hashing, compressing and bank I/O
all release the GIL).  At most ``2 * workers + 2`` slots are in flight, and a
slot holds its data only while a worker processes it (finished slots keep just
their digest), so memory is bounded by about ``2 * workers`` chunks (raw and
compressed copy per worker) whatever the volume size.
"""

from __future__ import annotations

import collections
import concurrent.futures as cf
import contextlib
import dataclasses
import random
import threading
from collections.abc import Callable, Iterator

from strongroom import context as sr_context
from strongroom import exceptions
from strongroom.bank_plugins.bank import BankSection
from strongroom.block.base import BlockReader, BlockWriter
from strongroom.datamover import allocator, compression, incremental, plan, slots
from strongroom.datamover import manifest as _manifest
from strongroom.datamover.chunkstore import ChunkStore
from strongroom.datamover.manifest import ManifestInfo
from strongroom.datamover.slots import max_in_flight

DEFAULT_CHUNK_SIZE = 4 * 1024 * 1024
MIN_CHUNK_SIZE = 4096
MAX_CHUNK_SIZE = compression.MAX_CHUNK_BYTES

Progress = Callable[[int], None]
#: Backup tells the reader which slots it will read this far ahead (``BlockReader.prefetch``), looking at
#: most this many segments ahead (a long run of an incremental's reused slots is not held in memory).
PREFETCH_AHEAD = 8 * 1024 * 1024
PREFETCH_SEGMENTS = 1024


@dataclasses.dataclass(frozen=True)
class BackupResult:
    size: int  # volume size in bytes
    bytes_read: int  # bytes read from the device (allocated parts of data slots)
    bytes_stored: int  # bytes written to the bank for new chunks (compressed)
    chunks: int  # data chunks the manifest references
    new_chunks: int  # chunks this backup stored (the rest were already in the store)
    zero_bytes: int  # bytes recorded as zero runs (holes and all-zero slots)
    manifest: ManifestInfo
    mode: str = "full"  # "incremental": built on a parent, only changed slots read
    reused_chunks: int = 0  # slots that kept the parent's chunk without being read
    #: Why a backup given a parent read everything (``strongroom.datamover.incremental``'s reasons).
    full_reason: str | None = None


@dataclasses.dataclass(frozen=True)
class RestoreResult:
    size: int
    bytes_written: int
    chunks: int


@dataclasses.dataclass(frozen=True)
class VerifyResult:
    chunks_checked: int
    bytes_checked: int
    errors: list[str]


# -- backup -----------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class _SlotDone:
    digest: str | None  # None: the slot is all zeros
    bytes_read: int
    stored: int  # bytes written to the bank, 0 if the chunk was already there
    new: bool


def _backup_slot(reader: BlockReader, store: ChunkStore, slot: plan.Slot, zeros: slots.Zeros,
                 stop: threading.Event) -> _SlotDone:
    if stop.is_set():
        raise _Stopped()
    data, nread = slots.read_slot(reader, slot)
    if zeros.equal(data):
        return _SlotDone(None, nread, 0, False)
    digest = store.hash(data)
    if store.has(digest):
        return _SlotDone(digest, nread, 0, False)
    return _SlotDone(digest, nread, store.put(digest, data), True)


def _prefetching(reader: BlockReader, segments: Iterator[plan.Segment]) -> Iterator[plan.Segment]:
    """``segments`` in order, each data slot's ranges handed to ``reader.prefetch`` about
    :data:`PREFETCH_AHEAD` bytes of slots before it is yielded: the reads of the slots the workers are about
    to take are under way while they hash and compress (an incremental of a filesystem image on XFS, its
    snapshot out of the page cache: 1.00 s instead of 1.27 s for 162 MB read; doc/data-path.md)."""
    ahead = PREFETCH_AHEAD
    queued: collections.deque[plan.Segment] = collections.deque()
    queued_bytes = 0
    for segment in segments:
        queued.append(segment)
        if segment.slot is not None:
            for start, end in segment.slot.ranges:
                reader.prefetch(start, end - start)
            queued_bytes += segment.slot.length
        while queued_bytes > ahead or len(queued) > PREFETCH_SEGMENTS:
            first = queued.popleft()
            if first.slot is not None:
                queued_bytes -= first.slot.length
            yield first
    yield from queued


class _Stopped(Exception):
    """Internal: a worker noticed the backup is being abandoned."""


def backup(reader: BlockReader, store: ChunkStore, manifest_section: BankSection, *,
           chunk_size: int = DEFAULT_CHUNK_SIZE, workers: int = 2,
           progress: Progress | None = None,
           should_stop: Callable[[], bool] | None = None,
           entries_per_part: int = _manifest.DEFAULT_ENTRIES_PER_PART,
           parent: incremental.Parent | None = None,
           transferred: Callable[[int, int], None] | None = None) -> BackupResult:
    """Back ``reader`` up into ``store`` and write its manifest in ``manifest_section``.

    With ``parent`` (``strongroom.datamover.incremental``) only the slots its changed extents touch are read;
    the others keep the parent's entries.  If the parent cannot be built on, everything is read and
    ``full_reason`` says why.  ``progress(n)`` is called with bytes newly processed (zero runs and reused slots
    included; the calls add up to the volume size).  ``should_stop()`` is polled before each slot; when it
    returns True the backup stops promptly, writes no header and raises ``ProtectionError``.  Bank errors
    propagate unchanged.  ``transferred(read, stored)`` is called as each data slot is done with the bytes it
    read from the device and wrote to the bank (0 when the store had its chunk).
    """
    slots.check_workers(workers)
    allocator.tune()
    if not isinstance(chunk_size, int) or not MIN_CHUNK_SIZE <= chunk_size <= MAX_CHUNK_SIZE:
        raise exceptions.InvalidInput(
            reason=f"chunk_size must be in [{MIN_CHUNK_SIZE}, {MAX_CHUNK_SIZE}] bytes, not {chunk_size!r}"
        )
    size = reader.size
    view, full_reason = None, None
    if parent is not None:
        try:
            view = incremental.load_parent(parent, store, size, chunk_size)
        except incremental.CannotUseParent as err:
            full_reason = str(err)
    segments = _prefetching(reader, plan.full_plan(reader, size, chunk_size) if view is None
                            else plan.incremental_plan(reader, view, size, chunk_size))
    # A header left by an earlier attempt would describe other data: the
    # manifest is incomplete until this backup writes its own.
    manifest_section.delete(_manifest.HEADER_KEY)
    writer = _manifest.ManifestWriter(
        manifest_section, size=size, chunk_size=chunk_size, hash_algo=store.hash_algo,
        compression=store.compression, compression_level=store.compression_level,
        entries_per_part=entries_per_part,
    )
    report = progress or (lambda n: None)
    stopped = should_stop or (lambda: False)
    zeros = slots.Zeros(chunk_size)
    stop = threading.Event()
    totals = collections.Counter[str]()
    # In offset order: data slots being processed (a future), reused chunks and zero runs.
    pending: collections.deque[tuple[plan.Segment, cf.Future[_SlotDone] | None]] = collections.deque()
    in_flight = 0
    limit = max_in_flight(workers)

    def drain_one() -> None:
        nonlocal in_flight
        segment, future = pending.popleft()
        offset, length = segment.offset, segment.length
        digest = segment.digest
        if future is not None:
            in_flight -= 1
            done = future.result()
            totals["bytes_read"] += done.bytes_read
            if transferred is not None:
                transferred(done.bytes_read, done.stored)
            digest = done.digest
            if digest is not None:
                totals["new_chunks"] += int(done.new)
                totals["bytes_stored"] += done.stored
        elif digest is not None:
            totals["reused_chunks"] += 1
        if digest is None:
            writer.add_zero(offset, length)
            totals["zero_bytes"] += length
        else:
            writer.add_data(offset, length, digest)
            totals["chunks"] += 1
        report(length)

    def check_stop() -> None:
        if stopped():
            raise exceptions.ProtectionError(
                reason=f"backup into {manifest_section.prefix} was stopped at the caller's request"
            )

    executor = cf.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="datamover-backup")
    try:
        for segment in segments:
            if segment.slot is None:
                pending.append((segment, None))
                while len(pending) > 4 * limit:
                    drain_one()  # a long run of reused slots: keep the queue short
                continue
            check_stop()
            while in_flight >= limit:
                drain_one()
            pending.append((segment, executor.submit(sr_context.carrying(_backup_slot),  # under the run's request
                                                     reader, store, segment.slot, zeros, stop)))
            in_flight += 1
        while pending:
            check_stop()
            drain_one()
        mode = "full" if view is None else "incremental"
        store.barrier()  # every chunk durable before the header that references them
        info = writer.commit(mode=mode, bytes_read=totals["bytes_read"], bytes_stored=totals["bytes_stored"],
                             chunks=totals["chunks"], new_chunks=totals["new_chunks"],
                             reused_chunks=totals["reused_chunks"], zero_bytes=totals["zero_bytes"])
    except BaseException:
        stop.set()
        for _, queued in pending:
            if queued is not None:
                queued.cancel()
        raise
    finally:
        executor.shutdown(wait=True, cancel_futures=True)
        allocator.release()
    return BackupResult(size=size, bytes_read=totals["bytes_read"], bytes_stored=totals["bytes_stored"],
                        chunks=totals["chunks"], new_chunks=totals["new_chunks"],
                        zero_bytes=totals["zero_bytes"], manifest=info, mode=mode,
                        reused_chunks=totals["reused_chunks"], full_reason=full_reason)


# -- restore and verify -----------------------------------------------------


#: Restore hands its workers the chunks of one aligned window of the volume at a time (at least one chunk):
#: a worker fetches, decompresses and verifies them and writes each run of neighbouring non-zero bytes in one
#: call, so a worker holds one window's data and a 4 MiB RBD object is one write.
RESTORE_WINDOW = 4 << 20
#: Restore threads per worker: a thread spends much of a window waiting for the bank (a chunk file not in
#: the page cache, a request), so twice as many threads as ``workers`` keep the CPU busy meanwhile.  A
#: 2.2 GB filesystem image from a filesystem bank not in the page cache (3 workers, 2 cores): 7.3 s with 3
#: threads, 5.9 s with 6 (4.6 and 4.4 s from the page cache); doc/data-path.md.
RESTORE_THREADS_PER_WORKER = 2


def restore(manifest_section: BankSection, store: ChunkStore, writer: BlockWriter, *, workers: int = 2,
            progress: Progress | None = None, transferred: Callable[[int, int], None] | None = None,
            zero_fill: bool = False) -> RestoreResult:
    """Write the backed-up volume into ``writer``, verifying every chunk, then flush (on
    ``RESTORE_THREADS_PER_WORKER * workers`` threads).

    Zero runs, and all-zero 4 KiB blocks inside chunks, are not written
    (holes stay holes on a sparse target) unless ``zero_fill`` is set, for a
    target that may hold old data.  ``transferred(read, written)`` is called
    as each piece of work is done with the chunk bytes it read from the bank
    (uncompressed) and the bytes it wrote to ``writer``.  Raises
    ``ManifestIncomplete`` for an incomplete manifest, ``InvalidInput`` if the
    target is smaller than the volume, ``DataIntegrityError`` (naming chunk and
    offset) for a corrupt chunk and ``BankObjectNotFound`` for a missing one.
    """
    slots.check_workers(workers)
    allocator.tune()
    header = _manifest.read_manifest_header(manifest_section)
    size = header.size
    if writer.size < size:
        raise exceptions.InvalidInput(
            reason=f"the restore target holds {writer.size} bytes but the backup needs {size}"
        )
    report = progress or (lambda n: None)
    write_lock = threading.Lock() if not writer.parallel_writes else contextlib.nullcontext()
    totals = collections.Counter[str]()
    window = max(RESTORE_WINDOW, header.chunk_size)

    def write(offset: int, pieces: list[bytes | memoryview]) -> None:
        with write_lock:
            writer.write_pieces(offset, pieces)

    def restore_window(entries: list[_manifest.Entry]) -> tuple[int, int, int]:
        pieces: list[bytes | memoryview] = []
        run_start = run_end = written = 0
        for entry in entries:
            data = _fetch(store, entry)
            for start, end in [(0, len(data))] if zero_fill else _nonzero_runs(data):
                at = entry.offset + start
                if pieces and at != run_end:
                    write(run_start, pieces)
                    pieces = []
                if not pieces:
                    run_start = at
                pieces.append(data if end - start == len(data) else memoryview(data)[start:end])
                run_end = entry.offset + end
                written += end - start
        if pieces:
            write(run_start, pieces)
        length = sum(entry.length for entry in entries)
        return length, length, written

    def write_zeros(entry: _manifest.Entry) -> tuple[int, int, int]:
        with write_lock:
            writer.write_zeros(entry.offset, entry.length)  # the backend may deallocate the range
        return entry.length, 0, entry.length

    def done(result: tuple[int, int, int]) -> None:
        length, read, written = result
        totals["bytes_written"] += written
        if transferred is not None:
            transferred(read, written)
        report(length)

    pool = slots.Bounded(RESTORE_THREADS_PER_WORKER * workers, "datamover-restore")
    batch: list[_manifest.Entry] = []
    try:
        for entry in _manifest.iter_entries(manifest_section, header):
            if batch and (entry.digest is None or entry.offset // window != batch[0].offset // window):
                pool.submit(restore_window, batch, on_done=done)
                batch = []
            if entry.digest is not None:
                totals["chunks"] += 1
                batch.append(entry)
            elif zero_fill:
                pool.submit(write_zeros, entry, on_done=done)
            else:
                report(entry.length)
        if batch:
            pool.submit(restore_window, batch, on_done=done)
        pool.finish(done)
    finally:
        pool.close()
        allocator.release()
    writer.flush()
    return RestoreResult(size=size, bytes_written=totals["bytes_written"], chunks=totals["chunks"])


#: Restore skips all-zero blocks of this size inside chunks, so the target stays sparse.
ZERO_BLOCK = 4096
_ZERO_BLOCK_BYTES = bytes(ZERO_BLOCK)


def _nonzero_runs(data: bytes, block: int = ZERO_BLOCK) -> list[tuple[int, int]]:
    """``[start, end)`` ranges of ``data`` that are not made of whole all-zero blocks (blocks aligned on
    ``block`` from the start of ``data``; a short last block counts if all zero).

    Each block is compared through a memoryview (a ``memcmp``, no copy): on the chunks of a real filesystem
    image that is 5 times faster than ``bytes.find`` of a zero block, which crawls through data holding
    many zero bytes, and 1.5 times faster than comparing copied slices.
    """
    view = memoryview(data)
    zero = memoryview(_ZERO_BLOCK_BYTES if block == ZERO_BLOCK else bytes(block))
    size = len(data)
    runs: list[tuple[int, int]] = []
    start: int | None = None
    for pos in range(0, size, block):
        piece = view[pos:pos + block]
        if piece == (zero if len(piece) == block else zero[:len(piece)]):
            if start is not None:
                runs.append((start, pos))
                start = None
        elif start is None:
            start = pos
    if start is not None:
        runs.append((start, size))
    return runs


def _fetch(store: ChunkStore, entry: _manifest.Entry) -> bytes:
    assert entry.digest is not None
    try:
        return store.get(entry.digest, size=entry.length)
    except exceptions.DataIntegrityError as err:
        raise exceptions.DataIntegrityError(
            what=f"chunk {entry.digest} at offset {entry.offset}", reason=err.kwargs.get("reason", str(err))
        ) from err


def verify(manifest_section: BankSection, store: ChunkStore, *, sample: float | None = None,
           workers: int = 2, progress: Progress | None = None, seed: int | None = None,
           transferred: Callable[[int, int], None] | None = None) -> VerifyResult:
    """Re-read and check every chunk (or a random ``sample`` fraction of them): its object's metadata
    and its bytes (:meth:`ChunkStore.check`), all a restore relies on.

    Bad or missing chunks are reported in ``errors``, not raised; an unreadable
    or incomplete manifest raises ``ManifestIncomplete``.  ``progress`` gets the
    bytes of each checked chunk, ``transferred(read, 0)`` the bytes read of each
    (uncompressed; none for a missing one).
    """
    slots.check_workers(workers)
    if sample is not None and not 0.0 < sample <= 1.0:
        raise exceptions.InvalidInput(reason=f"sample must be in (0, 1], not {sample!r}")
    allocator.tune()
    header = _manifest.read_manifest_header(manifest_section)
    rng = random.Random(seed)
    report = progress or (lambda n: None)
    totals = collections.Counter[str]()
    errors: list[str] = []

    def check(entry: _manifest.Entry) -> tuple[int, int, str | None]:
        assert entry.digest is not None
        try:
            store.check(entry.digest, entry.length)
        except exceptions.DataIntegrityError as err:
            return (entry.length, entry.length,
                    f"chunk {entry.digest} at offset {entry.offset}: {err.kwargs.get('reason', err)}")
        except exceptions.BankObjectNotFound:
            return entry.length, 0, f"chunk {entry.digest} at offset {entry.offset} is missing from the bank"
        return entry.length, entry.length, None

    def done(result: tuple[int, int, str | None]) -> None:
        length, read, error = result
        totals["chunks"] += 1
        totals["bytes"] += length
        if error is not None:
            errors.append(error)
        if transferred is not None and read:
            transferred(read, 0)
        report(length)

    pool = slots.Bounded(workers, "datamover-verify")
    try:
        for entry in _manifest.iter_entries(manifest_section, header):
            if entry.digest is None or (sample is not None and rng.random() >= sample):
                continue
            pool.submit(check, entry, on_done=done)
        pool.finish(done)
    finally:
        pool.close()
        allocator.release()
    errors.sort()
    return VerifyResult(chunks_checked=totals["chunks"], bytes_checked=totals["bytes"], errors=errors)
