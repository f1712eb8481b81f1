"""A read-only FUSE file system of volumes: the tree ``strongroom mount`` shows (pyfuse3, trio).

The tree is given whole when mounting: nested dicts whose leaves are :class:`Volume` objects (anything with a
``size`` in bytes and ``read(offset, length) -> bytes``).  Each volume is a regular file of its size, mode 0444;
every directory is mode 0555.  Reads go through a :class:`Readahead` per volume, which fetches aligned blocks
(by default 4 MiB, the data path's default chunk size: a block is one chunk of the checkpoint) and keeps the
last few, so the kernel's 128 KiB requests cost one fetch per chunk instead of one per request; a sequential
read has the next blocks fetched in the background meanwhile.  The volumes' reads run in worker threads (they
block on the network), several at a time.

Nothing can be written: the file system is mounted ``ro`` (the kernel answers EROFS to a write open, a
``mkdir``, a ``touch``) and ``open`` refuses any access mode but read with EROFS as well.

:func:`serve` mounts, runs until SIGINT or SIGTERM (or an external ``umount``), then unmounts.  pyfuse3 is
imported when mounting, never at import time: the rest of the CLI works without it.
"""

from __future__ import annotations

import collections
import contextlib
import errno
import os
import signal
import stat
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, Union

#: Block a :class:`Readahead` fetches: the data path's default chunk size.
DEFAULT_READAHEAD = 4 * 1024 * 1024
#: Blocks a :class:`Readahead` keeps (per volume).
DEFAULT_BLOCKS = 6
#: Blocks fetched ahead of a sequential read (per volume).
DEFAULT_PREFETCH = 2
#: Reads of volumes running at once (worker threads).
DEFAULT_WORKERS = 8


class Volume(Protocol):
    """What the file system reads: a volume's size and any byte range of it (short only at the end)."""

    @property
    def size(self) -> int: ...

    def read(self, offset: int, length: int) -> bytes: ...


Tree = Mapping[str, Union["Tree", Volume]]


class Readahead:
    """Reads of a volume in aligned blocks of ``block`` bytes, the last ``blocks`` of them kept (thread-safe).

    A block wanted by several threads at once is fetched by the first of them only.  When reads go forward
    block after block, the ``prefetch`` blocks after the one read are fetched in the background meanwhile (the
    fetches of a sequential read overlap instead of waiting on each other)."""

    def __init__(self, volume: Volume, block: int = DEFAULT_READAHEAD, blocks: int = DEFAULT_BLOCKS,
                 prefetch: int = DEFAULT_PREFETCH) -> None:
        if block <= 0 or blocks <= 0 or prefetch < 0 or prefetch >= blocks:
            raise ValueError("readahead: block and block count must be positive, prefetch below the count")
        self.volume = volume
        self.block = block
        self.blocks = blocks
        self.prefetch = prefetch
        self._last = -2  # the block the previous read ended in
        self._cache: collections.OrderedDict[int, bytes] = collections.OrderedDict()
        self._locks: dict[int, threading.Lock] = {}
        self._lock = threading.Lock()
        self._size: int | None = None

    @property
    def size(self) -> int:
        if self._size is None:
            self._size = int(self.volume.size)
        return self._size

    def read(self, offset: int, length: int) -> bytes:
        end = min(offset + length, self.size)
        if offset >= end:
            return b""
        first, last = offset // self.block, (end - 1) // self.block
        sequential = first in (self._last, self._last + 1)
        self._last = last
        parts = []
        pos = offset
        while pos < end:
            index = pos // self.block
            data = self._block(index)
            start = pos - index * self.block
            piece = data[start:start + (end - pos)]
            if not piece:  # the volume answered short: nothing more to give
                break
            parts.append(piece)
            pos += len(piece)
        if sequential and self.prefetch:  # after the blocks read: the prefetched ones never evict them first
            self._start_prefetch(last + 1, min(last + self.prefetch, (self.size - 1) // self.block))
        return b"".join(parts)

    def _start_prefetch(self, first: int, last: int) -> None:
        with self._lock:
            wanted = [i for i in range(first, last + 1) if i not in self._cache and i not in self._locks]
        for index in wanted:
            threading.Thread(target=self._prefetch, args=(index,), daemon=True,
                             name=f"readahead-{index}").start()

    def _prefetch(self, index: int) -> None:
        # A failure is dropped: a read of that block fetches it again and reports it.
        with contextlib.suppress(Exception):
            self._block(index)

    def _block(self, index: int) -> bytes:
        with self._lock:
            data = self._cache.get(index)
            if data is not None:
                self._cache.move_to_end(index)
                return data
            lock = self._locks.setdefault(index, threading.Lock())
        with lock:
            with self._lock:
                data = self._cache.get(index)
            if data is None:
                start = index * self.block
                data = self.volume.read(start, min(self.block, self.size - start))
                with self._lock:
                    self._cache[index] = data
                    while len(self._cache) > self.blocks:
                        self._cache.popitem(last=False)
            with self._lock:
                self._locks.pop(index, None)
            return data


@dataclass
class _Node:
    inode: int
    name: str
    parent: int
    children: dict[str, int] = field(default_factory=dict)
    volume: Readahead | None = None


def build_nodes(tree: Tree, *, block: int = DEFAULT_READAHEAD, blocks: int = DEFAULT_BLOCKS) -> dict[int, _Node]:
    """The inode table of ``tree``: root is inode 1, then each entry in the tree's order (names sorted)."""
    root = _Node(inode=1, name="", parent=1)
    nodes = {1: root}

    def add(parent: _Node, sub: Tree) -> None:
        for name in sorted(sub):
            if not name or name in (".", "..") or "/" in name or "\0" in name:
                raise ValueError(f"not a file name: {name!r}")
            entry = sub[name]
            node = _Node(inode=len(nodes) + 1, name=name, parent=parent.inode)
            nodes[node.inode] = node
            parent.children[name] = node.inode
            if isinstance(entry, Mapping):
                add(node, entry)
            else:
                node.volume = Readahead(entry, block, blocks)

    add(root, tree)
    return nodes


def _operations(nodes: dict[int, _Node], uid: int, gid: int, now_ns: int, workers: int) -> Any:
    """A pyfuse3.Operations serving ``nodes`` read-only."""
    import pyfuse3
    import trio

    limiter = trio.CapacityLimiter(workers)

    class ReadOnlyOperations(pyfuse3.Operations):  # type: ignore[misc]
        async def _attr(self, node: _Node) -> Any:
            attr = pyfuse3.EntryAttributes()
            attr.st_ino = node.inode
            if node.volume is None:
                attr.st_mode = stat.S_IFDIR | 0o555
                attr.st_nlink = 2 + sum(1 for i in node.children.values() if nodes[i].volume is None)
                attr.st_size = 0
            else:
                attr.st_mode = stat.S_IFREG | 0o444
                attr.st_nlink = 1
                volume = node.volume
                attr.st_size = await trio.to_thread.run_sync(lambda: volume.size, limiter=limiter)
            attr.st_uid, attr.st_gid = uid, gid
            attr.st_blksize = 128 * 1024
            attr.st_blocks = (attr.st_size + 511) // 512
            attr.st_atime_ns = attr.st_mtime_ns = attr.st_ctime_ns = now_ns
            attr.entry_timeout = attr.attr_timeout = 300
            return attr

        def _node(self, inode: int) -> _Node:
            node = nodes.get(inode)
            if node is None:
                raise pyfuse3.FUSEError(errno.ENOENT)
            return node

        async def getattr(self, inode: int, ctx: Any = None) -> Any:
            return await self._attr(self._node(inode))

        async def lookup(self, parent_inode: int, name: bytes, ctx: Any = None) -> Any:
            parent = self._node(parent_inode)
            text = os.fsdecode(name)
            if text == ".":
                return await self._attr(parent)
            if text == "..":
                return await self._attr(nodes[parent.parent])
            inode = parent.children.get(text)
            if inode is None:
                raise pyfuse3.FUSEError(errno.ENOENT)
            return await self._attr(nodes[inode])

        async def opendir(self, inode: int, ctx: Any) -> int:
            if self._node(inode).volume is not None:
                raise pyfuse3.FUSEError(errno.ENOTDIR)
            return inode

        async def readdir(self, fh: int, start_id: int, token: Any) -> None:
            entries = list(self._node(fh).children.items())
            for position in range(start_id, len(entries)):
                name, inode = entries[position]
                if not pyfuse3.readdir_reply(token, os.fsencode(name), await self._attr(nodes[inode]),
                                             position + 1):
                    return

        async def releasedir(self, fh: int) -> None:
            return None

        async def open(self, inode: int, flags: int, ctx: Any) -> Any:
            node = self._node(inode)
            if node.volume is None:
                raise pyfuse3.FUSEError(errno.EISDIR)
            if flags & os.O_ACCMODE != os.O_RDONLY or flags & (os.O_TRUNC | os.O_APPEND):
                raise pyfuse3.FUSEError(errno.EROFS)
            info = pyfuse3.FileInfo(fh=inode)
            info.keep_cache = True  # a checkpoint never changes: the kernel may keep what it read
            return info

        async def read(self, fh: int, off: int, size: int) -> bytes:
            volume = self._node(fh).volume
            if volume is None:
                raise pyfuse3.FUSEError(errno.EISDIR)
            try:
                return await trio.to_thread.run_sync(volume.read, off, size, limiter=limiter)
            except pyfuse3.FUSEError:
                raise
            except Exception as exc:  # noqa: BLE001 - the reader's failure is the kernel's EIO
                _report(exc)
                raise pyfuse3.FUSEError(errno.EIO) from None

        async def release(self, fh: int) -> None:
            return None

        async def statfs(self, ctx: Any) -> Any:
            st = pyfuse3.StatvfsData()
            st.f_bsize = st.f_frsize = 4096
            total = 0
            for node in nodes.values():
                if node.volume is not None and node.volume._size is not None:
                    total += node.volume._size
            st.f_blocks = (total + 4095) // 4096
            st.f_bfree = st.f_bavail = 0
            st.f_files = len(nodes)
            st.f_ffree = st.f_favail = 0
            st.f_namemax = 255
            return st

    return ReadOnlyOperations()


_report_errors: Callable[[BaseException], None] | None = None


def _report(exc: BaseException) -> None:
    if _report_errors is not None:
        _report_errors(exc)


def serve(tree: Tree, mountpoint: str, *, fsname: str = "strongroom", block: int = DEFAULT_READAHEAD,
          blocks: int = DEFAULT_BLOCKS, workers: int = DEFAULT_WORKERS, allow_other: bool = False,
          on_mounted: Callable[[], None] | None = None,
          on_error: Callable[[BaseException], None] | None = None) -> int:
    """Mount ``tree`` read-only at ``mountpoint`` and serve it until a signal or an external unmount.

    Returns the signal that ended it (``signal.SIGINT``/``SIGTERM``) or 0 when it was unmounted from outside.
    Always unmounts before returning.  ``on_error`` hears each failed volume read (answered EIO)."""
    import pyfuse3
    import trio

    global _report_errors
    _report_errors = on_error
    nodes = build_nodes(tree, block=block, blocks=blocks)
    ops = _operations(nodes, os.getuid(), os.getgid(), time.time_ns(), workers)
    options = set(pyfuse3.default_options) | {f"fsname={fsname}", "subtype=strongroom", "ro"}
    if allow_other:
        options.add("allow_other")
    received = 0

    async def run() -> None:
        nonlocal received
        async with trio.open_nursery() as nursery:
            async def watch_signals() -> None:
                nonlocal received
                with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                    async for signum in signals:
                        received = int(signum)
                        nursery.cancel_scope.cancel()
                        return

            async def fuse_loop() -> None:
                await pyfuse3.main(min_tasks=2, max_tasks=max(2, workers))
                nursery.cancel_scope.cancel()  # unmounted from outside

            nursery.start_soon(watch_signals)
            nursery.start_soon(fuse_loop)
            if on_mounted is not None:
                on_mounted()

    pyfuse3.init(ops, mountpoint, options)
    try:
        trio.run(run)
    finally:
        pyfuse3.close(unmount=True)
        _report_errors = None
    return received
