"""Copy of an available checkpoint into a second provider's bank, under the same checkpoint id.

The source bank is only read; every object of the copy is written through the target's bank facade, so
it is sealed with the target's keys (``doc/copy.md``).  For each data section (a volume manifest) of the
source: the chunks the target lacks, sent as stored (the facade unseals the source's payload, still
compressed, and the target's seals it again), then one barrier, then a manifest with the same entries
whose header names the target's chunk-id key.  Other resource objects (``metadata.json``...) are copied
as they are.  The target's catalogue writes the index, marker and row (begin, publish, fail).

Chunk ids stay equal in both banks when the target adopts the source's chunk-id key for the project
(``Keyring.adopt_id_key``): a later copy then sends only new chunks, without reading the others.  If the
target already has another id key for the project (or the source is clear and the target encrypts), every
chunk is read, checked and named again with the target's key (``rehashed`` in the copy's report).

The copy is verified on the target (every chunk of every manifest re-read there) before it is published;
a failed verify ends it ``error`` naming what failed.  It writes under its own lease in the target
(the run's fence); garbage collection of the target reclaims a copy whose writer died, as any zombie.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import uuid
from collections.abc import Callable, Collection, Iterator
from concurrent import futures
from typing import Any

from strongroom import datamover, exceptions
from strongroom.bank_plugins import Bank, BankSection
from strongroom.bank_plugins.layout import RESUME_STATE, BankLayout
from strongroom.clock import Clock
from strongroom.datamover import hashing
from strongroom.datamover.manifest import ManifestWriter, iter_entries
from strongroom.db.api import Database
from strongroom.objects import locks
from strongroom.objects.kinds import LoggedOperation
from strongroom.objects.records import CheckpointRecord, OperationLog
from strongroom.objects.status import CheckpointStatus
from strongroom.protection import gc
from strongroom.protection import graph as graph_mod
from strongroom.protection.catalogue import COPIED_FROM, LOCK_ERROR, CheckpointCatalogue
from strongroom.protection.checkpoint import CheckpointStore
from strongroom.protection.leases import Fence
from strongroom.protection.progress import Progress
from strongroom.protection.providers import Provider

LOG = logging.getLogger(__name__)

#: Status of a copy's operation log while it runs, and when it ends.
RUNNING = CheckpointStatus.COPYING
SUCCESS = "success"
FAILURE = CheckpointStatus.ERROR
#: Chunks asked about (``ChunkStore.missing``) and sent per batch, and the threads that send them.
BATCH = 256
WORKERS = 4
#: The ``extra_info`` key of the copy's operation log (and of the copy) with what the copy did.
REPORT = "copy"


@dataclasses.dataclass
class CopyReport:
    """What one copy did.  ``bytes_written``: payload bytes sent to the target (chunks as stored, manifests,
    resource objects; before the target's seal adds its nonce and tag)."""

    source_provider_id: str
    target_provider_id: str
    bytes_written: int = 0
    objects_written: int = 0
    chunks_sent: int = 0
    chunks_present: int = 0
    rehashed: bool = False
    verified_chunks: int = 0

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def check_copyable(source: Provider, target: Provider, record: CheckpointRecord) -> None:
    """``InvalidInput`` naming the field if ``record`` (source's view) cannot be copied to ``target``."""
    if target.id == source.id:
        raise exceptions.InvalidInput(reason=f"copy.parameters.target_provider_id: {target.id} is the checkpoint's "
                                             f"own provider; a copy goes to another provider's bank")
    if record.encryption and not target.bank.encrypt:
        raise exceptions.InvalidInput(
            reason=f"copy.parameters.target_provider_id: checkpoint {record.id} is encrypted and the bank of "
                   f"provider {target.id} ({target.bank_description}) does not encrypt: it would be copied clear")
    for node in graph_mod.iter_nodes(graph_mod.deserialize(record.resource_graph)):
        if node.resource.type not in target.plugin_for_type:
            raise exceptions.InvalidInput(
                reason=f"copy.parameters.target_provider_id: provider {target.id} has no plugin for "
                       f"{node.resource.type}, so it could not restore the copy")


def adopt_chunk_ids(source: Provider, target: Provider, checkpoint_id: str, project_id: str) -> None:
    """Before the target makes a keyset of its own for the project (its first encrypted write does), it takes
    the source's chunk-id key, so that chunk ids are the same in both banks.  Nothing if the target does not
    encrypt, the source's manifests are not keyed, or the target has a keyset already (then: rehash)."""
    if not target.bank.encrypt or target.bank.keyring is None:
        return
    store = CheckpointStore(source.bank)
    for section in store.data_sections(checkpoint_id):
        key_id = hashing.key_id_of(datamover.read_manifest_header(section).hash)
        if key_id is not None:
            _, id_key = source.bank.id_key(project_id, key_id)
            target.bank.keyring.adopt_id_key(project_id, id_key)
            return


def target_record(source: CheckpointRecord, source_provider: Provider, owner_id: str,
                  lock_days: int | None = None) -> CheckpointRecord:
    """The record a copy starts with in the target: the source's, copying, owned by ``owner_id``.

    What the source's bank said of its own lock (its date, or why it could not lock) is not the copy's: the
    copy's publish locks it in the target for the longer of the source's ``retention_lock_days`` and
    ``lock_days`` (both from the checkpoint's creation), if either is set."""
    copied = dataclasses.replace(source)
    copied.status = CheckpointStatus.COPYING
    copied.status_reason = None
    copied.owner_id = owner_id
    copied.bytes_done = 0
    dropped = ("last_verification", REPORT, locks.LOCKED_UNTIL, LOCK_ERROR)
    extra = {k: v for k, v in (source.extra_info or {}).items() if k not in dropped}
    days = max((d for d in (locks.lock_days(source.extra_info), lock_days) if d is not None), default=None)
    if days is not None:
        extra[locks.LOCK_DAYS] = days
    copied.extra_info = {**extra, COPIED_FROM: {"provider_id": source_provider.id,
                                                "bank": source_provider.bank_description}}
    return copied


class _Chunks:
    """How one manifest's chunks are named in the target: the same ids, or ids made again (``rehash``)."""

    def __init__(self, source: Bank, target: Bank, project: str, header: datamover.ManifestHeader) -> None:
        base = hashing.base_of(header.hash)
        source_key_id = hashing.key_id_of(header.hash)
        source_key: bytes | None = None
        if source_key_id is not None:
            _, source_key = source.id_key(project, source_key_id)
        self.source = datamover.ChunkStore(source.section(BankLayout.chunks_prefix(project)),
                                           hash_algo=header.hash, hash_key=source_key)
        target_key: bytes | None = None
        if target.encrypt:
            assert target.keyring is not None
            if source_key is not None:
                keyset = target.keyring.adopt_id_key(project, source_key)
            else:
                keyset = target.keyring.current(project)
            name = hashing.keyed_name(base, keyset.key_id)
            target_key = keyset.id_key
            self.rehash = source_key is None or keyset.id_key != source_key
        else:
            if source_key_id is not None:
                raise exceptions.InvalidInput(reason=f"{target.name} does not encrypt: it cannot hold keyed "
                                                     f"chunk ids ({header.hash})")
            name, self.rehash = header.hash, False
        self.target = datamover.ChunkStore(target.section(BankLayout.chunks_prefix(project)), hash_algo=name,
                                           compression=header.compression or "zstd",
                                           compression_level=header.compression_level or 1, hash_key=target_key)


class CopyRun:
    """One copy of ``record`` (the target's view, ``copying``) from ``source`` to ``target``."""

    def __init__(self, db: Database, *, source: Provider, target: Provider, source_catalogue: CheckpointCatalogue,
                 target_catalogue: CheckpointCatalogue, record: CheckpointRecord, log: OperationLog, fence: Fence,
                 clock: Clock, owner_id: str, sweeping: gc.Sweeping,
                 running: Callable[[], Collection[str]] = frozenset) -> None:
        self.db = db
        self.source = source
        self.target = target
        self.source_catalogue = source_catalogue
        self.target_catalogue = target_catalogue
        self.record = record
        self.log = log
        self.fence = fence
        self.clock = clock
        self.owner_id = owner_id
        self.sweeping = sweeping
        self.running = running
        self.report = CopyReport(source.id, target.id)
        self._lock = threading.Lock()

    @property
    def checkpoint_id(self) -> str:
        return self.record.id

    @staticmethod
    def start_log(db: Database, clock: Clock, host: str, request_id: str | None, source: Provider,
                  target: Provider, record: CheckpointRecord,
                  scheduled_operation_id: str | None = None) -> OperationLog:
        """The copy's operation log (in the target provider: the copy is the target's checkpoint)."""
        return db.create_operation_log(OperationLog(
            id=str(uuid.uuid4()), project_id=record.project_id, operation_type=LoggedOperation.COPY,
            status=RUNNING, provider_id=target.id, checkpoint_id=record.id, plan_id=record.plan_id,
            scheduled_operation_id=scheduled_operation_id, host=host, started_at=clock.now(),
            extra_info={"request_id": request_id, "source_provider_id": source.id,
                        "target_provider_id": target.id}))

    def may_write(self) -> bool:
        return self.fence.valid()

    # -- the run -------------------------------------------------------------------

    def run(self) -> str | None:
        """Copy, verify, publish; on any failure the copy ends ``error``.  Returns the error, if any."""
        progress = Progress(self.record.bytes_total,
                            lambda done: self.target_catalogue.record_progress(self.checkpoint_id, done), self.clock)
        error: str | None = None
        try:
            gc.wait_for_sweeps(self.target.bank, self.fence.keeper.lease, self.record.project_id, self.sweeping,
                               clock=self.clock, should_stop=lambda: not self.may_write())
            sections = self._copy(progress)
            self.fence.check("verify the copy of checkpoint " + self.checkpoint_id)
            self._verify(sections)
            self.fence.check("publish the copy of checkpoint " + self.checkpoint_id)
            error = self.target_catalogue.publish_copy(self.checkpoint_id, owner_id=self.owner_id,
                                                       bytes_done=self.record.bytes_total,
                                                       copied=self.report.to_dict())
        except Exception as err:  # noqa: BLE001 - every failure ends the copy with a reason, never stuck
            error = str(err) if isinstance(err, exceptions.StrongroomError) else f"{type(err).__name__}: {err}"
            if not self.fence.valid():
                error = f"{self.fence.lost('go on')} (stopped: {error})"
        if error is not None:
            LOG.warning("copy of checkpoint %s to provider %s failed: %s", self.checkpoint_id, self.target.id, error)
            try:
                self.target_catalogue.fail_copy(self.checkpoint_id, error, self.owner_id, progress.done,
                                                release=self._sweep)
            except Exception as err:  # noqa: BLE001 - the bank may be gone: garbage collection reclaims it
                error = f"{error}; then could not record the failure in the bank: {err}"
                self.target_catalogue.fail_unrecorded(self.checkpoint_id, CheckpointStatus.ERROR, error)
        self.db.update_operation_log(self.log.id, {
            "status": SUCCESS if error is None else FAILURE, "ended_at": self.clock.now(), "error_info": error,
            "extra_info": {**self.log.extra_info, REPORT: self.report.to_dict()}})
        return error

    def _sweep(self) -> None:
        """The chunks a failed copy alone wrote go at once (the sweep protocol of ``gc``)."""
        collector = gc.GarbageCollector(self.target_catalogue, self.fence.keeper.lease, running=self.running,
                                        sweeping=self.sweeping, name=self.target.bank_description)
        try:
            collector.sweep_project(self.record.project_id, grace=0, finished=self.checkpoint_id)
        except exceptions.StrongroomError as err:
            LOG.warning("chunks of the failed copy of %s are left to garbage collection: %s", self.checkpoint_id, err)

    def _stop_unless_allowed(self) -> None:
        if not self.may_write():
            raise self.fence.lost("go on copying checkpoint " + self.checkpoint_id)

    def _count(self, nbytes: int, chunks_sent: int = 0, present: int = 0, objects: int = 0) -> None:
        with self._lock:
            self.report.bytes_written += nbytes
            self.report.chunks_sent += chunks_sent
            self.report.chunks_present += present
            self.report.objects_written += objects

    def _copy(self, progress: Progress) -> list[tuple[BankSection, _Chunks]]:
        """Every object of the checkpoint into the target; returns each manifest's section there and its chunks."""
        cid, project = self.checkpoint_id, self.record.project_id
        source_bank, target_bank = self.source.bank, self.target.bank
        source_store = self.source_catalogue.store
        resources = BankLayout.resources_prefix(cid) + "/"
        segments = self._segments()

        def in_target(key: str) -> str:
            """A resource object's key in the target: its resource's section named as the target names it."""
            segment, _, rest = key[len(resources):].partition("/")
            return f"{resources}{segments.get(segment, segment)}/{rest}"

        for key in list(source_bank.iter(resources)):
            relative = key[len(resources):]
            if BankLayout.data_section_of(relative) is not None or relative.endswith("/" + RESUME_STATE):
                continue
            self._stop_unless_allowed()
            data = source_bank.get(key)
            target_bank.put(in_target(key), data, source_bank.head(key).metadata)
            self._count(len(data), objects=1)
        out: list[tuple[BankSection, _Chunks]] = []
        with futures.ThreadPoolExecutor(WORKERS, thread_name_prefix="sr-copy") as pool:
            for section in source_store.data_sections(cid):
                header = datamover.read_manifest_header(section)
                chunks = _Chunks(source_bank, target_bank, project, header)
                self.report.rehashed = self.report.rehashed or chunks.rehash
                target_section = target_bank.section(in_target(section.prefix).rstrip("/"))
                renamed = self._send_chunks(pool, section, header, chunks, progress)
                chunks.target.barrier()  # every chunk durable before the manifest that names them
                self._stop_unless_allowed()
                self._write_manifest(section, target_section, header, chunks.target.hash_algo, renamed)
                out.append((target_section, chunks))
        return out

    def _segments(self) -> dict[str, str]:
        """Each resource's section name in the source -> in the target.  An encrypted bank names a section by
        an HMAC of the resource's key with the project's chunk-id key (``Bank.resource_segment``): the same
        in both banks when the target adopted the source's key, another when it has its own or only one of
        the two encrypts."""
        cid = self.checkpoint_id
        out = {}
        for node in graph_mod.iter_nodes(graph_mod.deserialize(self.record.resource_graph)):
            key = node.resource.key
            out[self.source.bank.resource_segment(cid, key)] = self.target.bank.resource_segment(cid, key)
        return out

    def _batches(self, section: BankSection, header: datamover.ManifestHeader) -> Iterator[list[tuple[str, int]]]:
        batch: list[tuple[str, int]] = []
        for entry in iter_entries(section, header):
            if entry.digest is None:
                continue
            batch.append((entry.digest, entry.length))
            if len(batch) >= BATCH:
                yield batch
                batch = []
        if batch:
            yield batch

    def _send_chunks(self, pool: futures.Executor, section: BankSection, header: datamover.ManifestHeader,
                     chunks: _Chunks, progress: Progress) -> dict[str, str]:
        """Chunks the target lacks, sent; returns source digest -> target digest where they differ."""
        renamed: dict[str, str] = {}
        seen: set[str] = set()
        for batch in self._batches(section, header):
            self._stop_unless_allowed()
            fresh = {d: n for d, n in batch if d not in seen}
            seen.update(fresh)
            if chunks.rehash:
                results = pool.map(lambda item: self._rehash_one(chunks, *item), fresh.items())
                renamed.update(dict(results))
            else:
                missing = chunks.target.missing(fresh)
                self._count(0, present=len(fresh) - len(missing))
                list(pool.map(lambda digest: self._send_one(chunks, digest), sorted(missing)))
            progress.add(sum(n for _, n in batch))
        return renamed

    def _send_one(self, chunks: _Chunks, digest: str) -> None:
        """One chunk as stored: its payload (unsealed by the source's facade, still compressed), same metadata
        but the hash name, put deferred in the target (sealed there)."""
        if not self.may_write():
            return
        key = chunks.source.key(digest)
        payload = chunks.source.section.get(key)
        metadata = dict(chunks.source.section.head(key).metadata)
        metadata["hash"] = chunks.target.hash_algo
        chunks.target.section.put_deferred(key, payload, metadata)
        self._count(len(payload), chunks_sent=1)

    def _rehash_one(self, chunks: _Chunks, digest: str, size: int) -> tuple[str, str]:
        """One chunk read and checked, named with the target's key, stored there if it lacks it."""
        data = chunks.source.get(digest, size=size)
        new = chunks.target.hash(data)
        if self.may_write() and not chunks.target.has(new):
            self._count(chunks.target.put(new, data), chunks_sent=1)
        else:
            self._count(0, present=1)
        return digest, new

    def _write_manifest(self, source: BankSection, target: BankSection, header: datamover.ManifestHeader,
                        hash_name: str, renamed: dict[str, str]) -> None:
        writer = ManifestWriter(target, size=header.size, chunk_size=header.chunk_size, hash_algo=hash_name,
                                compression=header.compression, compression_level=header.compression_level)
        for entry in iter_entries(source, header):
            if entry.digest is None:
                writer.add_zero(entry.offset, entry.length)
            else:
                writer.add_data(entry.offset, entry.length, renamed.get(entry.digest, entry.digest))
        info = writer.commit(**header.totals)
        self._count(info.bytes_written, objects=info.parts + 1)

    def _verify(self, sections: list[tuple[BankSection, _Chunks]]) -> None:
        """Every chunk of every manifest re-read in the target; ``DataIntegrityError`` naming the first ones."""
        for section, chunks in sections:
            result = datamover.verify(section, chunks.target, workers=WORKERS)
            self.report.verified_chunks += result.chunks_checked
            if result.errors:
                more = f" (and {len(result.errors) - 3} more)" if len(result.errors) > 3 else ""
                raise exceptions.DataIntegrityError(
                    what=f"the copy in {self.target.bank_description}",
                    reason=f"verify of {section.prefix} failed: {'; '.join(result.errors[:3])}{more}")
