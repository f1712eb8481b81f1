"""One measured Strongroom run, executed as a subprocess by ``bench_volume.py``.

    _ours.py protect ROOT VOLUME CHECKPOINT [--workers N] [--level L] [--hash H] [--backend B --bank DIR] [--encrypt]
    _ours.py restore ROOT CHECKPOINT TARGET [--workers N] [--backend B --bank DIR] [--encrypt]

By default ROOT holds ``volumes/`` (a LoopbackBackend) and ``bank/`` (a FilesystemBank).  With
``--backend rbd`` or ``--backend qcow2`` the block backend is that one, built from the JSON options in
``ROOT/<backend>.json`` (a Ceph pool, a qcow2 directory), and the bank is ``--bank``.
With ``--encrypt`` the bank seals what it stores as the service's does (AES-256-GCM, keyed chunk ids), its
key-encryption key in ``ROOT/key-encryption-keys.json`` (the strongroom-local key manager).
Prints one JSON line with the result.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from strongroom.bank_plugins.bank import Bank  # noqa: E402
from strongroom.bank_plugins.fs import FilesystemBank  # noqa: E402
from strongroom.block import BlockBackend  # noqa: E402
from strongroom.block.loopback import LoopbackBackend  # noqa: E402
from strongroom.datamover import ChunkStore, backup, hashing, read_manifest_header, restore  # noqa: E402

PROJECT = "bench"


def _backend(root: str, name: str) -> BlockBackend:
    if name == "loopback":
        return LoopbackBackend({"path": os.path.join(root, "volumes")})
    with open(os.path.join(root, f"{name}.json")) as f:
        options = json.load(f)
    if name == "rbd":
        from strongroom.block.rbd import RbdBackend

        return RbdBackend(options)
    from strongroom.block.qcow2 import Qcow2Backend

    return Qcow2Backend(options)


def _open(root: str, args: argparse.Namespace, hash_name: str | None = None) -> tuple[BlockBackend, Bank, ChunkStore]:
    """Backend, bank and chunk store; ``hash_name``: a manifest's (restore), else new chunks' (protect)."""
    backend = _backend(root, args.backend)
    bank = Bank(FilesystemBank({"path": args.bank or os.path.join(root, "bank")}), name="bench")
    name, key = hash_name or args.hash, None
    if args.encrypt:
        from strongroom import config, keys
        from strongroom.bank_plugins.keyring import Keyring

        conf = config.new_conf(overrides={"DEFAULT": {"state_dir": root}})
        bank.keyring = Keyring(bank, keys.kek_source(conf))
        bank.encrypt = True
        key_id = hashing.key_id_of(name) if hash_name else None
        key_id, key = bank.id_key(PROJECT, key_id)
        name = name if hash_name else hashing.keyed_name(args.hash, key_id)
    store = ChunkStore(bank.section(f"projects/{PROJECT}/chunks"), hash_algo=name, compression_level=args.level,
                       hash_key=key)
    return backend, bank, store


def _manifest(bank: Bank, checkpoint: str, volume: str = "vol1"):  # type: ignore[no-untyped-def]
    return bank.section(f"checkpoints/{checkpoint}/resources/volume#{volume}/data")


def protect(args: argparse.Namespace) -> dict[str, object]:
    backend, bank, store = _open(args.root, args)
    if bank.encrypt:  # what the service's index says first: this checkpoint's objects are sealed
        bank.put_json(f"checkpoints/{args.checkpoint}/index.json", {
            "id": args.checkpoint, "project_id": PROJECT, "status": "protecting",
            "encryption": bank.encryption_of(PROJECT)})
    started = time.monotonic()
    snapshot = backend.create_snapshot(args.volume)
    snapped = time.monotonic()
    method = backend.snapshot_method(snapshot.id) if isinstance(backend, LoopbackBackend) else args.backend
    try:
        with backend.reading_snapshot(snapshot.id) as reader:
            result = backup(reader, store, _manifest(bank, args.checkpoint, args.volume),
                            workers=args.workers, chunk_size=args.chunk_size)
    finally:
        backend.delete_snapshot(snapshot.id)
        backend.close()
    return {"snapshot_seconds": snapped - started, "snapshot_method": method, "size": result.size,
            "bytes_read": result.bytes_read,
            "bytes_stored": result.bytes_stored + result.manifest.bytes_written, "chunks": result.chunks,
            "new_chunks": result.new_chunks, "zero_bytes": result.zero_bytes}


def do_restore(args: argparse.Namespace) -> dict[str, object]:
    _, plain, _ = _open(args.root, args)
    header = read_manifest_header(_manifest(plain, args.checkpoint))
    backend, bank, store = _open(args.root, args, header.hash)
    section = _manifest(bank, args.checkpoint)
    backend.create_volume(header.size, name=args.target)
    try:
        with backend.writing_volume(args.target) as writer:
            result = restore(section, store, writer, workers=args.workers)
    finally:
        backend.close()
    return {"size": result.size, "bytes_written": result.bytes_written, "chunks": result.chunks}


def main() -> None:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("protect")
    p.add_argument("root")
    p.add_argument("volume")
    p.add_argument("checkpoint")
    r = sub.add_parser("restore")
    r.add_argument("root")
    r.add_argument("checkpoint")
    r.add_argument("target")
    for each in (p, r):
        each.add_argument("--workers", type=int, default=2)
        each.add_argument("--level", type=int, default=3)
        each.add_argument("--hash", default="sha256")
        each.add_argument("--chunk-size", type=int, default=4 * 1024 * 1024)
        each.add_argument("--backend", choices=["loopback", "rbd", "qcow2"], default="loopback")
        each.add_argument("--bank", default="")
        each.add_argument("--encrypt", action="store_true")
    args = parser.parse_args()
    out = protect(args) if args.command == "protect" else do_restore(args)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
