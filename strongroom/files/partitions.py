"""Partition tables (GPT and MBR) and filesystem signatures of a raw volume.

A small reader of the two tables' on-disk formats (UEFI 2.10 section 5 for
GPT, the classic 512-byte MBR with its four primary entries and the chain of
extended boot records): a few dozen lines, no dependency.  ``probe`` names the
filesystem or container at an offset from its superblock magic, readable here
or not, so that an unreadable one is refused with what was found.
"""

from __future__ import annotations

import dataclasses
import struct
import uuid
import zlib
from typing import BinaryIO

SECTOR = 512

#: GPT partition type GUIDs worth a name (the rest are shown as their GUID).
GPT_TYPES = {
    "0fc63daf-8483-4772-8e79-3d69d8477de4": "linux",
    "c12a7328-f81f-11d2-ba4b-00a0c93ec93b": "efi-system",
    "21686148-6449-6e6f-744e-656564454649": "bios-boot",
    "0657fd6d-a4ab-43c4-84e5-0933c84b4f4f": "linux-swap",
    "e6d6d379-f507-44c2-a23c-238f2a3df928": "linux-lvm",
    "a19d880f-05fc-4d3b-a006-743f0f84911e": "linux-raid",
    "4f68bce3-e8cd-4db1-96e7-fbcaf984b709": "linux-root-x86-64",
    "933ac7e1-2eb4-4f13-b844-0e14e2aef915": "linux-home",
    "ebd0a0a2-b9e5-4433-87c0-68b6b72699c7": "microsoft-basic-data",
    "e3c9e316-0b5c-4db8-817d-f92df00215ae": "microsoft-reserved",
}
#: MBR partition type bytes worth a name.
MBR_TYPES = {0x83: "linux", 0x82: "linux-swap", 0x8E: "linux-lvm", 0xFD: "linux-raid", 0x07: "ntfs-exfat",
             0x0B: "fat32", 0x0C: "fat32-lba", 0x0E: "fat16-lba", 0x06: "fat16", 0xEF: "efi-system",
             0xEE: "gpt-protective", 0x05: "extended", 0x0F: "extended-lba", 0x85: "linux-extended"}
_EXTENDED = {0x05, 0x0F, 0x85}


@dataclasses.dataclass(frozen=True)
class Partition:
    """One partition: ``number`` as the kernel numbers it (``sda<number>``), byte ``offset`` and ``size``."""

    number: int
    offset: int
    size: int
    type: str
    name: str = ""

    def to_dict(self) -> dict[str, object]:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class Table:
    """A volume's partition table: ``gpt``, ``mbr`` or ``none`` (a filesystem on the whole volume)."""

    kind: str
    partitions: tuple[Partition, ...]


def _read(f: BinaryIO, offset: int, length: int) -> bytes:
    f.seek(offset)
    data = f.read(length)
    return data if len(data) == length else data + bytes(length - len(data))


def read_table(f: BinaryIO, size: int) -> Table:
    """The partition table of the volume ``f`` (``size`` bytes); ``none`` without a valid one."""
    mbr = _read(f, 0, SECTOR)
    if size >= 2 * SECTOR and mbr[510:512] == b"\x55\xaa":
        gpt = _gpt(f, size)
        if gpt is not None:
            return gpt
        entries = [struct.unpack_from("<B3xB3xII", mbr, 446 + 16 * i) for i in range(4)]
        # A boot sector of a filesystem also ends in 55 AA: a table has only sane entries and some entry.
        sane = all(status in (0, 0x80) for status, *_ in entries)
        if sane and any(kind and count for _, kind, _, count in entries) and probe(f, 0) is None:
            return Table("mbr", tuple(_mbr(f, size, entries)))
    return Table("none", ())


def _gpt(f: BinaryIO, size: int) -> Table | None:
    header = _read(f, SECTOR, 92)
    if header[:8] != b"EFI PART":
        return None
    header_size, crc = struct.unpack_from("<II", header, 12)
    if header_size < 92 or zlib.crc32(header[:16] + b"\0\0\0\0" + header[20:92]) != crc:
        return None
    entries_lba, count, entry_size = struct.unpack_from("<QII", header, 72)
    if entry_size < 128 or count > 1024:
        return None
    raw = _read(f, entries_lba * SECTOR, count * entry_size)
    parts = []
    for i in range(count):
        entry = raw[i * entry_size:(i + 1) * entry_size]
        type_guid = str(uuid.UUID(bytes_le=entry[:16]))
        if type_guid == "00000000-0000-0000-0000-000000000000":
            continue
        first, last = struct.unpack_from("<QQ", entry, 32)
        name = entry[56:128].decode("utf-16-le", "replace").split("\0", 1)[0]
        offset, length = first * SECTOR, (last - first + 1) * SECTOR
        if last < first or offset + length > size:
            continue
        parts.append(Partition(i + 1, offset, length, GPT_TYPES.get(type_guid, type_guid), name))
    return Table("gpt", tuple(parts))


def _mbr(f: BinaryIO, size: int, entries: list[tuple[int, int, int, int]]) -> list[Partition]:
    parts = []
    for i, (_, kind, first, count) in enumerate(entries):
        if not kind or not count:
            continue
        if kind in _EXTENDED:
            parts.extend(_logical(f, size, first))
        elif (first + count) * SECTOR <= size:
            parts.append(Partition(i + 1, first * SECTOR, count * SECTOR, MBR_TYPES.get(kind, f"0x{kind:02x}")))
    return sorted(parts, key=lambda p: p.number)


def _logical(f: BinaryIO, size: int, extended: int) -> list[Partition]:
    parts: list[Partition] = []
    ebr = extended
    seen: set[int] = set()
    while ebr not in seen and len(parts) < 128 and (ebr + 1) * SECTOR <= size:
        seen.add(ebr)
        sector = _read(f, ebr * SECTOR, SECTOR)
        if sector[510:512] != b"\x55\xaa":
            break
        _, kind, first, count = struct.unpack_from("<B3xB3xII", sector, 446)
        if kind and count and (ebr + first + count) * SECTOR <= size:
            parts.append(Partition(5 + len(parts), (ebr + first) * SECTOR, count * SECTOR,
                                   MBR_TYPES.get(kind, f"0x{kind:02x}")))
        _, next_kind, next_first, _ = struct.unpack_from("<B3xB3xII", sector, 462)
        if not next_kind or not next_first:
            break
        ebr = extended + next_first
    return parts


#: (name, offset, magic): what ``probe`` recognises.
SIGNATURES: tuple[tuple[str, int, bytes], ...] = (
    ("ext", 1024 + 56, b"\x53\xef"),
    ("xfs", 0, b"XFSB"),
    ("btrfs", 0x10040, b"_BHRfS_M"),
    ("ntfs", 3, b"NTFS    "),
    ("exfat", 3, b"EXFAT   "),
    ("fat32", 82, b"FAT32   "),
    ("fat", 54, b"FAT1"),
    ("luks", 0, b"LUKS\xba\xbe"),
    ("lvm2", 536, b"LVM2 001"),
    ("linux-swap", 4086, b"SWAPSPACE2"),
    ("iso9660", 32769, b"CD001"),
)


def probe(f: BinaryIO, offset: int) -> str | None:
    """The filesystem or container whose signature starts at ``offset``: ``ext2``, ``ext3``, ``ext4``,
    ``xfs``, ``btrfs``, ``ntfs``, ``exfat``, ``fat``, ``luks``, ``lvm2``, ``linux-swap``, ``iso9660``; None."""
    for name, at, magic in SIGNATURES:
        if _read(f, offset + at, len(magic)) == magic:
            if name == "ext":
                return _ext_generation(_read(f, offset + 1024, 1024))
            return "fat" if name == "fat32" else name
    return None


def _ext_generation(superblock: bytes) -> str:
    compat, incompat = struct.unpack_from("<II", superblock, 0x5C)
    if incompat & ~0x0006:  # anything past FILETYPE and RECOVER: extents, 64bit, flex_bg...
        return "ext4"
    return "ext3" if compat & 0x0004 else "ext2"  # HAS_JOURNAL
