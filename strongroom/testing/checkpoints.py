"""A disk image backed up as one volume of a checkpoint, for the tests and benchmarks of what reads
checkpoints (the BlockReader, the file trees): the loopback backend's snapshot of it, its chunks in a memory
bank, and a reader over the result."""

from __future__ import annotations

from pathlib import Path

from strongroom.bank_plugins.bank import Bank
from strongroom.bank_plugins.layout import RESOURCE_DATA, BankLayout
from strongroom.bank_plugins.memory import MemoryBank
from strongroom.block.loopback import LoopbackBackend
from strongroom.datamover import ChunkStore, backup
from strongroom.datamover.reader import BlockReader, open_reader


def resource_key(name: str) -> str:
    return f"OS::Cinder::Volume#{name}"


def backed_up(image: Path, volumes: Path, *, chunk_size: int, cache_bytes: int, name: str = "disk",
              link: bool = False) -> BlockReader:
    """``image`` moved (``link``: hard-linked, the image kept) into ``volumes`` as volume ``name``, backed up
    as checkpoint ``c1`` of project ``p1`` in chunks of ``chunk_size``; a reader over it with ``cache_bytes``
    of chunk cache."""
    volumes.mkdir(parents=True, exist_ok=True)
    if link:
        (volumes / name).hardlink_to(image)
    else:
        image.rename(volumes / name)
    backend = LoopbackBackend({"path": str(volumes)})
    bank = Bank(MemoryBank(), name="mem")
    bank.put_json(BankLayout.index_key("c1"), {"id": "c1", "project_id": "p1", "status": "available"})
    store = ChunkStore(bank.section(BankLayout.chunks_prefix("p1")))
    section = bank.section(BankLayout.resource_prefix("c1", resource_key(name))).section(RESOURCE_DATA)
    snap = backend.create_snapshot(name)
    try:
        with backend.reading_snapshot(snap.id) as reading:
            backup(reading, store, section, chunk_size=chunk_size)
    finally:
        backend.delete_snapshot(snap.id)
    return open_reader(bank, "c1", resource_key(name), cache_bytes=cache_bytes)
