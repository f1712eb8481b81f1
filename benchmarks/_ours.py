"""One measured Strongroom run, executed as a subprocess by ``bench_volume.py``.

    _ours.py protect ROOT VOLUME CHECKPOINT [--workers N] [--level L] [--hash H] [--backend B --bank DIR]
    _ours.py restore ROOT CHECKPOINT TARGET [--workers N] [--backend B --bank DIR]

By default ROOT holds ``volumes/`` (a LoopbackBackend) and ``bank/`` (a FilesystemBank).  With
``--backend rbd`` or ``--backend qcow2`` the block backend is that one, built from the JSON options in
``ROOT/<backend>.json`` (a Ceph pool, a qcow2 directory), and the bank is ``--bank``.
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
from strongroom.datamover import ChunkStore, backup, read_manifest_header, restore  # noqa: E402

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


def _open(root: str, args: argparse.Namespace) -> tuple[BlockBackend, Bank, ChunkStore]:
    backend = _backend(root, args.backend)
    bank = Bank(FilesystemBank({"path": args.bank or os.path.join(root, "bank")}), name="bench")
    store = ChunkStore(bank.section(f"projects/{PROJECT}/chunks"), hash_algo=args.hash,
                       compression_level=args.level)
    return backend, bank, store


def _manifest(bank: Bank, checkpoint: str, volume: str = "vol1"):  # type: ignore[no-untyped-def]
    return bank.section(f"checkpoints/{checkpoint}/resources/volume#{volume}/data")


def protect(args: argparse.Namespace) -> dict[str, object]:
    backend, bank, store = _open(args.root, args)
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
    backend, bank, store = _open(args.root, args)
    section = _manifest(bank, args.checkpoint)
    header = read_manifest_header(section)
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
    args = parser.parse_args()
    out = protect(args) if args.command == "protect" else do_restore(args)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
