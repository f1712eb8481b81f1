"""Protects block-backend volumes: snapshot, chunk, dedup into the bank, restore sparse.

Per resource, under ``checkpoints/<cid>/resources/OS::Cinder::Volume#<id>/``:
``data/`` holds the data mover's manifest (header ``manifest.json`` written
last) and ``metadata.json`` the saved info (volume, sizes, chunk settings).
Chunks go to the project's chunk store and are shared by every checkpoint of
the project; after a delete, the runner's chunk sweep removes only the chunks no
other checkpoint references.

Nothing a killed run leaves can pass for good data or stay forever.  A protect's
snapshot is tagged with the checkpoint it serves, so garbage collection deletes
it once no live run works on that checkpoint (``strongroom.protection.snapshots``).
A restore writes into a staged volume, never listed (so never protectable), and
publishes it under its name only once every byte is written; on failure it
discards it, and so does crash recovery for a run that died (:meth:`abandon`, from
the restore record's resume state).  The new volume is placed (Cinder: volume type and
zone) as the restore parameters say, else as the original was (``placement`` in
``metadata.json``, where the backend can place a volume so), else by the backend's default.

Only when asked, with the per-resource parameter ``restore_target``, does a restore write
into an existing volume: the backend refuses one in use (``check_overwrite`` before the
run starts, ``open_volume_overwriter`` as it writes), and every byte is written, zeros
too.  A failed or interrupted overwrite says in its reason that the target was left
partially written.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from strongroom import datamover, exceptions, validation
from strongroom.bank_plugins import Bank, BankSection
from strongroom.bank_plugins.layout import MANIFEST_HEADER, RESOURCE_DATA, RESOURCE_METADATA, BankLayout
from strongroom.block import BlockBackend, Snapshot
from strongroom.block.base import check_placement
from strongroom.context import RequestContext
from strongroom.datamover import hashing
from strongroom.objects.records import Resource
from strongroom.protection import bases
from strongroom.protection.plugin import (
    Operation,
    OperationContext,
    OperationKind,
    PluginEnvironment,
    ProtectionPlugin,
)
from strongroom.protection.protectables import VOLUME_TYPE
from strongroom.protection.snapshots import CHECKPOINT_TAG, run_tags

LOG = logging.getLogger(__name__)

#: Restore parameters that say where a new volume goes (the backend's ``placement`` keys).
PLACEMENT_PARAMETERS = ("volume_type", "availability_zone")

MANIFEST_DIR = RESOURCE_DATA
METADATA = RESOURCE_METADATA

#: Chunk size and zstd level by default, from measurement (``doc/data-path.md``): a 4 KiB change dirties a
#: whole chunk, and 256 KiB chunks store half what 4 MiB ones do for scattered changes at the same full
#: protect and restore times on a filesystem bank; level 1 costs 30-45% less CPU than 3 for 5-15% more bytes.
DEFAULT_CHUNK_SIZE = 256 * 1024
DEFAULT_COMPRESSION_LEVEL = 1

#: Why a protect read the whole volume, beside the data mover's own reasons (``datamover.incremental``).
NO_PARENT = "no parent in this bank"
BASE_GONE = "base snapshot gone"
CANNOT_TELL = "backend cannot tell"
PERIODIC = "periodic full read"

#: Plan parameters (and provider-file defaults) of the volume plugin.
DEFAULTS: dict[str, Any] = {"retain_base_snapshot": True, "full_every": 0}
_SETTINGS_SCHEMA: dict[str, Any] = {
    "retain_base_snapshot": {"type": "boolean", "description": "Keep each protect's snapshot as the next "
                             "protect's base, so that it reads only what changed (default true)"},
    "full_every": {"type": "integer", "minimum": 0, "maximum": 10000, "description": "Read the whole volume "
                   "every Nth protect (0, the default: never; the base and changed-block tracking decide)"},
}


class VolumeProtectionPlugin(ProtectionPlugin):
    supported_resource_types = (VOLUME_TYPE,)
    config_schema = {
        "type": "object",
        "properties": {
            "block_backend": {"type": "string", "minLength": 1},
            "chunk_size": {"type": "integer", "minimum": 65536, "maximum": 67108864, "multipleOf": 4096},
            "hash": {"enum": ["sha256", "blake3"]},
            "compression": {"enum": ["zstd", "none"]},
            "compression_level": {"type": "integer", "minimum": 1, "maximum": 19},
            "workers": {"type": "integer", "minimum": 1, "maximum": 64},
            **_SETTINGS_SCHEMA,
        },
        "required": ["block_backend"],
        "additionalProperties": False,
    }
    options_schema = {
        "title": "Volume protection options",
        "type": "object",
        "properties": dict(_SETTINGS_SCHEMA),
        "additionalProperties": False,
    }
    restore_schema = {
        "title": "Volume restore parameters",
        "type": "object",
        "properties": {
            "restore_name": {**validation.string(validation.Rule.FILE_NAME),
                             "description": "Name of the new volume (default: <name>-restore-<checkpoint>)"},
            "restore_target": {**validation.string(validation.Rule.SEGMENT),
                               "description": "Id of an existing volume to overwrite instead of creating one "
                               "(per resource only); it must be available and at least as large"},
            "volume_type": {**validation.string(validation.Rule.NAME),
                            "description": "Volume type of the new volume (default: the original's)"},
            "availability_zone": {**validation.string(validation.Rule.NAME),
                                  "description": "Availability zone of the new volume (default: the original's)"},
            "paths": {"type": "array", "minItems": 1, "maxItems": 100, "uniqueItems": True,
                      "items": {"type": "string", "pattern": "^/[^\\x00]*$", "maxLength": 4096},
                      "description": "Restore these files and directories only: a new volume holding a tar "
                                     "stream of them (doc/file-restore.md)"},
            "partition": {"type": "integer", "minimum": 0,
                          "description": "With paths: the partition's number (default: the largest readable)"},
        },
        "additionalProperties": False,
    }
    saved_info_schema = {
        "title": "Saved volume information",
        "type": "object",
        "properties": {
            "volume_id": {"type": "string"}, "name": {"type": "string"}, "size": {"type": "integer"},
            "size_bytes": {"type": "integer", "description": "bytes of the snapshot read (the volume's size)"},
            "chunks": {"type": "integer"}, "new_chunks": {"type": "integer"},
            "bytes_stored": {"type": "integer"},
            "placement": {"type": "object", "additionalProperties": {"type": "string"}},
            "mode": {"enum": ["full", "incremental"]}, "bytes_read": {"type": "integer"},
            "reused_chunks": {"type": "integer"}, "full_reason": {"type": ["string", "null"]},
            "parent_checkpoint": {"type": ["string", "null"]}, "parent_snapshot": {"type": ["string", "null"]},
            "snapshot_id": {"type": ["string", "null"]}, "incrementals_since_full": {"type": "integer"},
        },
    }
    verify_schema = {
        "title": "Volume verify parameters",
        "type": "object",
        "properties": {
            "sample": {"type": "number", "exclusiveMinimum": 0, "maximum": 1,
                       "description": "Fraction of chunks to re-read (default: all)"},
            "source": {"type": "boolean",
                       "description": "Also re-read the checkpoint's retained source snapshot and compare every "
                       "slot with the manifest: an audit of changed-block tracking (only a volume's newest "
                       "checkpoint keeps its snapshot)"},
        },
        "additionalProperties": False,
    }

    def __init__(self, options: Mapping[str, Any], env: PluginEnvironment) -> None:
        super().__init__(options, env)
        self.chunk_size = int(self.options.get("chunk_size", DEFAULT_CHUNK_SIZE))
        self.hash_algo = str(self.options.get("hash", "sha256"))
        self.compression = str(self.options.get("compression", "zstd"))
        self.compression_level = int(self.options.get("compression_level", DEFAULT_COMPRESSION_LEVEL))
        self.workers = int(self.options.get("workers", 3))  # 3 on 2 cores: restore overlaps I/O and zstd

    def setting(self, parameters: Mapping[str, Any], name: str) -> Any:
        """A plan parameter, else this plugin's provider-file option, else :data:`DEFAULTS`."""
        if name in parameters:
            return parameters[name]
        return self.options.get(name, DEFAULTS[name])

    @property
    def backend(self) -> BlockBackend:
        return self.env.block_backends(str(self.options["block_backend"]))

    def backend_for(self, project_id: str | None, auth_token: str | None = None) -> BlockBackend:
        """The backend as the run's project sees it (a Cinder project's own volumes), acting with the user's
        token where the run's context carries one and the backend acts as users (``act_as_user``)."""
        return self.backend.for_project(project_id, auth_token)

    def chunk_store(self, bank: Bank, project_id: str, header: datamover.ManifestHeader | None = None
                    ) -> datamover.ChunkStore:
        """The project's chunks: named as this plugin names new ones (keyed ids in an encrypted bank), or,
        given a manifest's ``header``, as that manifest names them (its hash, with the key it names)."""
        key: bytes | None = None
        if header is None:
            name = self.hash_algo
            if bank.encrypt:
                current, key = bank.id_key(project_id)
                name = hashing.keyed_name(self.hash_algo, current)
        else:
            name = header.hash
            named = hashing.key_id_of(name)
            if named is not None:
                _, key = bank.id_key(project_id, named)
        return datamover.ChunkStore(bank.section(BankLayout.chunks_prefix(project_id)),
                                    hash_algo=name, compression=self.compression,
                                    compression_level=self.compression_level, hash_key=key)

    def file_tree(self, section: BankSection, project_id: str, partition: Any) -> Any:
        """The filesystem of the volume a resource section holds (:mod:`strongroom.files.tree`)."""
        from strongroom.datamover.reader import BlockReader
        from strongroom.files.tree import open_tree

        manifest = section.section(MANIFEST_DIR, read_only=True)
        header = datamover.read_manifest_header(manifest)
        reader = BlockReader(manifest, self.chunk_store(section.bank, project_id, header), header=header)
        return open_tree(reader, int(partition) if partition is not None else None)

    def get_operation(self, kind: OperationKind, resource: Resource) -> Operation:
        ops: dict[OperationKind, type[_VolumeOperation]] = {
            OperationKind.PROTECT: ProtectOperation,
            OperationKind.RESTORE: RestoreOperation,
            OperationKind.VERIFY: VerifyOperation,
            OperationKind.DELETE: DeleteOperation,
        }
        return ops[kind](self)

    def estimate_size(self, context: RequestContext, resource: Resource) -> int:
        return self.backend_for(context.project_id, context.auth_token).get_volume(resource.id).size

    def saved_size(self, section: BankSection) -> int:
        try:
            return datamover.read_manifest_header(section.section(MANIFEST_DIR)).size
        except exceptions.StrongroomError:
            return 0

    def check_restore(self, context: RequestContext, resource: Resource, section: BankSection,
                      parameters: Mapping[str, Any], per_resource: bool) -> None:
        """A placement the backend cannot honour; a ``restore_target`` that is not one existing volume of the
        project, large enough and not in use (rolling the original itself back is allowed)."""
        backend = self.backend_for(context.project_id, context.auth_token)
        target = parameters.get("restore_target")
        if parameters.get("paths"):
            if target is not None:
                raise exceptions.InvalidInput(reason="paths: a file-level restore makes a new volume; it takes no "
                                                     "restore_target")
            tree = self.file_tree(section, context.project_id or "", parameters.get("partition"))
            for path in parameters["paths"]:
                tree.stat(str(path))  # NotFound naming it, before the run starts
        elif "partition" in parameters:
            raise exceptions.InvalidInput(reason="partition: only with paths")
        if target is None:
            check_placement(backend, {k: parameters[k] for k in PLACEMENT_PARAMETERS if k in parameters})
            return
        if not per_resource:
            raise exceptions.InvalidInput(reason="restore_target: names one volume, so it is given per resource "
                                          f"({resource.type}#<id>), not for every {resource.type}")
        for key in ("restore_name", *PLACEMENT_PARAMETERS):
            if key in parameters:
                raise exceptions.InvalidInput(
                    reason=f"{key}: not used with restore_target (volume {target} keeps its name and placement)")
        needed = self.saved_size(section)
        try:
            volume = backend.check_overwrite(str(target))
        except exceptions.VolumeNotFound:
            raise exceptions.InvalidInput(
                reason=f"restore_target: volume {target} does not exist in the {backend.kind} backend") from None
        except exceptions.VolumeInUse as err:
            raise exceptions.Conflict(reason=f"restore_target: {err}") from err
        if volume.size < needed:
            raise exceptions.InvalidInput(
                reason=f"restore_target: volume {target} holds {volume.size} bytes, fewer than the {needed} of "
                f"the checkpoint's volume {resource.name or resource.id}")

    def abandon(self, kind: OperationKind, resume_state: Mapping[str, Any]) -> str | None:
        """A dead restore's staged volume is discarded; an existing target it wrote into is named as left
        partially written; a dead protect's snapshot is garbage collection's."""
        if kind is OperationKind.RESTORE and resume_state.get("target"):
            return partially_written(str(resume_state["target"]))
        staged = resume_state.get("volume_id")
        if kind is not OperationKind.RESTORE or not staged:
            return None
        self.backend.discard_volume(str(staged))
        name = resume_state.get("name") or staged
        return f"the partly restored volume {name} was never published and has been removed"


class _VolumeOperation(Operation):
    def __init__(self, plugin: VolumeProtectionPlugin) -> None:
        self.plugin = plugin



def _refuse_empty(volume_id: str, size: int) -> None:
    """An empty volume (a zero-length image file) fails its protect: no backend creates a volume of 0 bytes,
    so its checkpoint could never be restored."""
    if size == 0:
        raise exceptions.InvalidInput(
            reason=f"volume {volume_id} is empty (0 bytes): there is nothing to protect, and no volume of 0 bytes "
                   "could be created to restore it")


class ProtectOperation(_VolumeOperation):
    """Snapshot, then a full or incremental backup (``strongroom.protection.bases``: the last checkpoint's
    retained snapshot is the base, the backend says what changed since); the snapshot is kept as the next
    base unless the plan turns retention off."""

    def on_prepare_begin(self, ctx: OperationContext) -> None:
        backend = self.plugin.backend_for(ctx.project_id, ctx.context.auth_token)
        volume = backend.get_volume(ctx.resource.id)  # VolumeNotFound names it
        _refuse_empty(volume.id, volume.size)

    def on_main(self, ctx: OperationContext) -> None:
        plugin = self.plugin
        backend = plugin.backend_for(ctx.project_id, ctx.context.auth_token)
        volume = backend.get_volume(ctx.resource.id)
        store = plugin.chunk_store(ctx.bank, ctx.project_id)
        stale = ctx.resume_state.get("snapshot_id")
        if stale:  # an interrupted earlier attempt (its worker died) left its snapshot behind
            backend.delete_snapshot(str(stale))
        provider = plugin.env.provider_id
        retain = bool(plugin.setting(ctx.parameters, "retain_base_snapshot"))
        base = bases.find_base(backend, provider, volume.id, bases.bank_status(ctx.bank, ctx.project_id),
                               exclude=ctx.checkpoint_id)
        tags = bases.base_tags(provider, ctx.checkpoint_id) if retain else run_tags(provider, ctx.checkpoint_id)
        snapshot = backend.create_snapshot(volume.id, tags)
        ctx.save_resume_state({"snapshot_id": snapshot.id})
        keep = False
        try:
            _refuse_empty(volume.id, snapshot.size)  # emptied since the prepare step
            parent, reason, since_full = self._parent(ctx, backend, base, snapshot)
            with backend.reading_snapshot(snapshot.id) as reader:
                result = datamover.backup(reader, store, ctx.section.section(MANIFEST_DIR),
                                          chunk_size=plugin.chunk_size, workers=plugin.workers,
                                          progress=ctx.progress, should_stop=ctx.should_stop, parent=parent,
                                          transferred=ctx.transferred)
            keep = retain
        finally:
            if not keep:
                backend.delete_snapshot(snapshot.id)
            ctx.save_resume_state({})
        incremental = result.mode == "incremental"
        info = {
            "mode": result.mode, "size_bytes": snapshot.size, "bytes_read": result.bytes_read,
            "bytes_stored": result.bytes_stored,
            "new_chunks": result.new_chunks, "reused_chunks": result.reused_chunks,
            "full_reason": None if incremental else (result.full_reason or reason),
            "parent_checkpoint": base.checkpoint_id if incremental and base else None,
        }
        ctx.section.put_json(METADATA, {
            "volume_id": volume.id, "name": volume.name, "size": volume.size,
            "chunks": result.chunks, "new_chunks": result.new_chunks, "bytes_stored": result.bytes_stored,
            "chunk_size": plugin.chunk_size, "hash": store.hash_algo, "compression": plugin.compression,
            "placement": dict(volume.placement),
            **info,
            "parent_snapshot": base.snapshot.id if incremental and base else None,
            "snapshot_id": snapshot.id if keep else None,
            "incrementals_since_full": since_full + 1 if incremental else 0,
        })
        ctx.result.update(info)

    def _parent(self, ctx: OperationContext, backend: BlockBackend, base: bases.Base | None,
                snapshot: Snapshot) -> tuple[datamover.Parent | None, str | None, int]:
        """What the backup builds on, or None and why it reads everything; the parent's count of
        incrementals since its last full read."""
        if base is None:
            return None, NO_PARENT, 0
        segment = ctx.bank.resource_segment(base.checkpoint_id, ctx.resource.key)
        section = ctx.bank.section(BankLayout.resource_prefix(base.checkpoint_id, segment), read_only=True)
        try:
            saved = section.get_json(METADATA)
        except exceptions.BankError:
            saved = {}
        since_full = saved.get("incrementals_since_full") if isinstance(saved, dict) else None
        since_full = since_full if isinstance(since_full, int) and since_full >= 0 else 0
        full_every = int(self.plugin.setting(ctx.parameters, "full_every"))
        if full_every and since_full + 1 >= full_every:
            return None, f"{PERIODIC} (full_every {full_every})", since_full
        if snapshot.size != base.snapshot.size:
            return None, f"{datamover.incremental.RESIZED}: {base.snapshot.size} to {snapshot.size} bytes", since_full
        try:
            found = backend.changed_extents(snapshot.id, base.snapshot.id)
            changed = list(found) if found is not None else None
        except exceptions.SnapshotNotFound as err:
            return None, f"{BASE_GONE}: {err}", since_full
        if changed is None:
            return None, f"{CANNOT_TELL} ({backend.kind})", since_full
        name = f"checkpoint {base.checkpoint_id}"
        return datamover.Parent(section.section(MANIFEST_DIR), changed, name=name), None, since_full

    def on_published(self, ctx: OperationContext) -> None:
        """Release the volume's older retained snapshots: this checkpoint's is the base now."""
        try:
            saved = ctx.section.get_json(METADATA)
        except exceptions.BankObjectNotFound:
            return
        own_id = saved.get("snapshot_id") if isinstance(saved, dict) else None
        if not own_id:
            return
        backend = self.plugin.backend_for(ctx.project_id, ctx.context.auth_token)
        own = next((s for s in backend.list_snapshots(str(saved.get("volume_id"))) if s.id == own_id), None)
        if own is not None:
            bases.release_older(backend, self.plugin.env.provider_id, own, bases.bank_status(ctx.bank))


class RestoreOperation(_VolumeOperation):
    def on_main(self, ctx: OperationContext) -> None:
        plugin = self.plugin
        backend = plugin.backend_for(ctx.project_id, ctx.context.auth_token)
        manifest = ctx.section.section(MANIFEST_DIR, read_only=True)
        header = datamover.read_manifest_header(manifest)
        stale = ctx.resume_state.get("volume_id")
        if stale:  # an interrupted earlier attempt staged it: start over
            backend.discard_volume(str(stale))
        target = ctx.parameters.get("restore_target")
        if target is not None:
            self._overwrite(ctx, backend, manifest, str(target))
            return
        if ctx.parameters.get("paths"):
            self._restore_files(ctx, backend)
            return
        name = str(ctx.parameters.get("restore_name") or validation.file_name(
            f"{ctx.resource.name or ctx.resource.id}-restore-{ctx.checkpoint_id[:8]}"))
        volume = backend.create_volume(header.size, name=name, staged=True, placement=_placement(ctx, backend))
        ctx.save_resume_state({"volume_id": volume.id, "name": volume.name})
        try:
            with backend.writing_volume(volume.id) as writer:
                datamover.restore(manifest, plugin.chunk_store(ctx.bank, ctx.project_id, header), writer,
                                  workers=plugin.workers, progress=ctx.progress, transferred=ctx.transferred)
            published = backend.publish_volume(volume.id)
        except BaseException:
            _discard(backend, volume.id)
            ctx.save_resume_state({})
            raise
        ctx.save_resume_state({})
        ctx.result.update(id=published.id, name=published.name, type=VOLUME_TYPE)

    def _restore_files(self, ctx: OperationContext, backend: BlockBackend) -> None:
        """A file-level restore: a new volume holding a tar stream of the paths asked (nothing else restored)."""
        from strongroom.files import archive

        tree = self.plugin.file_tree(ctx.section, ctx.project_id, ctx.parameters.get("partition"))
        entries = archive.collect(tree, [str(p) for p in ctx.parameters["paths"]])
        size = archive.bound(entries)
        name = str(ctx.parameters.get("restore_name") or validation.file_name(
            f"{ctx.resource.name or ctx.resource.id}-files-{ctx.checkpoint_id[:8]}.tar"))
        volume = backend.create_volume(size, name=name, staged=True, placement=_placement(ctx, backend))
        ctx.save_resume_state({"volume_id": volume.id, "name": volume.name})
        try:
            with backend.writing_volume(volume.id) as writer:
                written = archive.write_tar(tree, entries, writer, size)
                writer.flush()
            published = backend.publish_volume(volume.id)
        except BaseException:
            _discard(backend, volume.id)
            ctx.save_resume_state({})
            raise
        ctx.save_resume_state({})
        ctx.result.update(id=published.id, name=published.name, type=VOLUME_TYPE, format="tar",
                          files=len(entries), tar_bytes=written)

    def _overwrite(self, ctx: OperationContext, backend: BlockBackend, manifest: BankSection, target: str) -> None:
        """Write the whole of ``target``: the backup's bytes, its zero ranges as zeros, then zeros to the end
        of a larger target (``write_zeros``: deallocated where the backend can)."""
        plugin = self.plugin
        store = plugin.chunk_store(ctx.bank, ctx.project_id, datamover.read_manifest_header(manifest))
        writer = backend.open_volume_overwriter(target)  # VolumeInUse: nothing written yet
        ctx.save_resume_state({"target": target})
        try:
            with writer:
                result = datamover.restore(manifest, store, writer, workers=plugin.workers,
                                           progress=ctx.progress, transferred=ctx.transferred, zero_fill=True)
                writer.write_zeros(result.size, writer.size - result.size)
                writer.flush()
            volume = backend.get_volume(target)
        except exceptions.StrongroomError as err:  # keeps its class: a bank's failure stays one
            ctx.save_resume_state({})
            raise type(err)(f"{err}; {partially_written(target)}", **err.kwargs) from err
        except Exception as err:
            ctx.save_resume_state({})
            raise exceptions.BlockError(reason=f"{type(err).__name__}: {err}; {partially_written(target)}") from err
        # Anything else (the worker being stopped) leaves the resume state: recovery's abandon names the target.
        ctx.save_resume_state({})
        ctx.result.update(id=volume.id, name=volume.name, type=VOLUME_TYPE, overwritten=True)


def partially_written(volume_id: str) -> str:
    """What a failed or interrupted overwrite of an existing volume says of it."""
    return (f"the target volume {volume_id} was left partially written and must not be used until a restore "
            "into it succeeds")


def _placement(ctx: OperationContext, backend: BlockBackend) -> dict[str, str]:
    """The new volume's placement: each key from the restore parameters, else the original's (as recorded at
    protect, and only the keys this backend takes), else none (the backend's default)."""
    try:
        saved = ctx.section.get_json(METADATA)
    except exceptions.BankObjectNotFound:
        saved = {}
    recorded = saved.get("placement") if isinstance(saved, dict) else None
    placement = {k: str(v) for k, v in (recorded or {}).items()
                 if k in backend.placement_keys and isinstance(v, str) and v} if isinstance(recorded, dict) else {}
    placement.update({k: str(ctx.parameters[k]) for k in PLACEMENT_PARAMETERS if ctx.parameters.get(k)})
    return placement


def _discard(backend: BlockBackend, volume_id: str) -> None:
    """Discard a staged volume without hiding the error that made the restore give it up."""
    try:
        backend.discard_volume(volume_id)
    except Exception as err:  # noqa: BLE001 - the restore's own error is the one to report
        LOG.warning("staged volume %s is left for recovery: %s", volume_id, err)


class VerifyOperation(_VolumeOperation):
    """Checks all a restore of the volume reads: its saved information, the manifest (header and every
    part) and each chunk (object metadata and bytes)."""

    def on_main(self, ctx: OperationContext) -> None:
        plugin = self.plugin
        sample = ctx.parameters.get("sample")
        manifest = ctx.section.section(MANIFEST_DIR, read_only=True)
        header = datamover.read_manifest_header(manifest)
        self._check_saved_info(ctx.section, header, ctx.resource.key)
        result = datamover.verify(manifest, plugin.chunk_store(ctx.bank, ctx.project_id, header),
                                  sample=float(sample) if sample is not None else None,
                                  workers=plugin.workers, progress=ctx.progress, transferred=ctx.transferred)
        ctx.result.update(chunks_checked=result.chunks_checked, bytes_checked=result.bytes_checked)
        errors = list(result.errors)
        if ctx.parameters.get("source"):
            errors += self._audit_source(ctx, manifest)
        if errors:
            shown = "; ".join(errors[:3])
            more = f" (and {len(errors) - 3} more)" if len(errors) > 3 else ""
            raise exceptions.DataIntegrityError(what=ctx.resource.key, reason=shown + more)

    def _audit_source(self, ctx: OperationContext, manifest: BankSection) -> list[str]:
        """Re-read the retained snapshot the checkpoint was made from and compare it with the manifest."""
        saved = ctx.section.get_json(METADATA)
        snapshot_id = saved.get("snapshot_id") if isinstance(saved, dict) else None
        backend = self.plugin.backend_for(ctx.project_id, ctx.context.auth_token)
        kept = snapshot_id and any(s.id == snapshot_id and s.tags.get(CHECKPOINT_TAG) == ctx.checkpoint_id
                                   for s in backend.list_snapshots(str(saved.get("volume_id"))))
        if not kept:
            raise exceptions.ProtectionError(
                reason=f"source: checkpoint {ctx.checkpoint_id} keeps no snapshot of {ctx.resource.key} to compare "
                "with (only a volume's newest checkpoint does, while base snapshots are retained)")
        key_id = hashing.key_id_of(datamover.read_manifest_header(manifest).hash)
        key = ctx.bank.id_key(ctx.project_id, key_id)[1] if key_id else None
        with backend.reading_snapshot(str(snapshot_id)) as reader:
            audited = datamover.audit(reader, manifest, workers=self.plugin.workers, hash_key=key)
        ctx.result.update(source_slots_checked=audited.slots_checked, source_bytes_read=audited.bytes_read,
                          source_mismatches=audited.mismatches)
        return [f"source snapshot {snapshot_id}: {e}" for e in audited.errors]


    @staticmethod
    def _check_saved_info(section: BankSection, header: datamover.ManifestHeader, what: str) -> None:
        """``metadata.json`` is there, an object, and describes the volume the manifest holds."""
        try:
            saved = section.get_json(METADATA)
        except exceptions.BankObjectNotFound:
            raise exceptions.DataIntegrityError(what=what, reason=f"{METADATA} is missing") from None
        except exceptions.BankObjectCorrupt as err:
            raise exceptions.DataIntegrityError(what=what, reason=f"{METADATA} is corrupt: {err}") from err
        if not isinstance(saved, dict):
            raise exceptions.DataIntegrityError(what=what, reason=f"{METADATA} is not a JSON object")
        if saved.get("size") != header.size:
            raise exceptions.DataIntegrityError(
                what=what, reason=f"{METADATA} says size {saved.get('size')!r}, the manifest {header.size}")


class DeleteOperation(_VolumeOperation):
    """Removes the manifest and saved info; chunks are shared, so the runner's chunk sweep removes
    those no other checkpoint references (see ``strongroom.protection.gc``)."""

    def on_main(self, ctx: OperationContext) -> None:
        manifest = ctx.section.section(MANIFEST_DIR)
        # Reverse of the write order: the header first (the manifest is then incomplete), then its parts.
        keys = manifest.list()
        for key in sorted(keys, key=lambda k: k != MANIFEST_HEADER):
            manifest.delete(key)
        self._release_snapshot(ctx)
        ctx.section.delete(METADATA)

    def _release_snapshot(self, ctx: OperationContext) -> None:
        """The checkpoint's retained snapshot goes with it (a leaked one is garbage collection's)."""
        try:
            saved = ctx.section.get_json(METADATA)
        except (exceptions.BankObjectNotFound, exceptions.BankObjectCorrupt):
            return
        if isinstance(saved, dict) and saved.get("snapshot_id"):
            backend = self.plugin.backend_for(ctx.project_id, ctx.context.auth_token)
            for snapshot in backend.list_snapshots(str(saved.get("volume_id"))):
                if snapshot.id == saved["snapshot_id"] and snapshot.tags.get(CHECKPOINT_TAG) == ctx.checkpoint_id:
                    backend.delete_snapshot(snapshot.id)
