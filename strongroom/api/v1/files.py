"""``/v1/{project_id}/providers/{provider_id}/checkpoints/{checkpoint_id}/resources/{resource_key}/...``:
the files inside a checkpoint's volume, without restoring it (``doc/file-restore.md``).

``resource_key`` is ``OS::Cinder::Volume#<id>`` (``#`` sent as ``%23``), the bare volume id, or ``-`` for the
checkpoint's only volume.  ``path`` is an absolute path in the volume's filesystem; ``partition`` (a number
as the kernel gives it) picks one, else the whole volume without a table, else the largest readable one.
The protection service reads the bank (RPC); ``content`` and ``archive`` stream, asking it piece by piece.
Karbor has no such shapes: these are Strongroom's own paths, in the OpenAPI document.
"""

from __future__ import annotations

import base64
import io
import posixpath
import tarfile
import urllib.parse
from collections.abc import Iterator
from typing import Any

from strongroom import exceptions
from strongroom.api import common
from strongroom.api.common import ApiRequest, Download, Result
from strongroom.api.errors import BadRequest
from strongroom.api.v1.checkpoints import _get as get_checkpoint

#: Bytes asked of the protection service per call while streaming a file.
PIECE = 4 * 1024 * 1024
#: Longest path accepted (Linux's PATH_MAX).
MAX_PATH = 4096


def _resource(resource_key: str) -> str | None:
    return None if resource_key == "-" else resource_key


def _path(req: ApiRequest, name: str = "path", default: str | None = None) -> str:
    raw = req.params.get(name)
    if raw is None or raw == "":
        if default is not None:
            return default
        raise BadRequest(reason=f"{name}: an absolute path is required (e.g. {name}=/etc)")
    return _check_path(name, raw)


def _check_path(name: str, raw: str) -> str:
    if not raw.startswith("/") or "\0" in raw or len(raw) > MAX_PATH:
        raise BadRequest(reason=f"{name}: must be an absolute path of at most {MAX_PATH} characters without NUL")
    return raw


def _int(req: ApiRequest, name: str) -> int | None:
    raw = req.params.get(name)
    if raw is None or raw == "":
        return None
    try:
        value = int(raw)
    except ValueError:
        raise BadRequest(reason=f"{name}: {raw!r} is not an integer") from None
    if value < 0:
        raise BadRequest(reason=f"{name}: must not be negative, got {value}")
    return value


def _checkpoint(req: ApiRequest, provider_id: str, checkpoint_id: str) -> None:
    cp = get_checkpoint(req, provider_id, checkpoint_id)
    req.authorize("checkpoint:get", {"project_id": cp.project_id})


def volume(req: ApiRequest, provider_id: str, checkpoint_id: str, resource_key: str) -> Result:
    _checkpoint(req, provider_id, checkpoint_id)
    layout = req.protection.describe_volume(req.ctx, provider_id, checkpoint_id, _resource(resource_key))
    return 200, {"volume": layout}


def index(req: ApiRequest, provider_id: str, checkpoint_id: str, resource_key: str) -> Result:
    _checkpoint(req, provider_id, checkpoint_id)
    listing = req.protection.list_files(req.ctx, provider_id, checkpoint_id, _resource(resource_key),
                                        _path(req, default="/"), _int(req, "partition"))
    return 200, {"directory": listing}


def stat(req: ApiRequest, provider_id: str, checkpoint_id: str, resource_key: str) -> Result:
    _checkpoint(req, provider_id, checkpoint_id)
    found = req.protection.stat_file(req.ctx, provider_id, checkpoint_id, _resource(resource_key), _path(req),
                                     _int(req, "partition"))
    return 200, {"stat": found}


def _pieces(req: ApiRequest, provider_id: str, checkpoint_id: str, resource: str | None, path: str,
            partition: int | None, size: int, first: bytes) -> Iterator[bytes]:
    """``first``, then the rest of the file piece by piece."""
    yield first
    offset = len(first)
    while offset < size:
        answer = req.protection.read_file(req.ctx, provider_id, checkpoint_id, resource, path, partition,
                                          offset, PIECE)
        data = base64.b64decode(answer["data"])
        if not data:
            raise exceptions.DataIntegrityError(what=f"file {path}", reason=f"ends at {offset} of {size} bytes")
        offset += len(data)
        yield data


def content(req: ApiRequest, provider_id: str, checkpoint_id: str, resource_key: str) -> Download:
    _checkpoint(req, provider_id, checkpoint_id)
    resource, path, partition = _resource(resource_key), _path(req), _int(req, "partition")
    # The first piece is read before answering: a missing file or a directory is a 4xx, not a broken stream.
    answer = req.protection.read_file(req.ctx, provider_id, checkpoint_id, resource, path, partition, 0, PIECE)
    size = int(answer["file"]["size"])
    first = base64.b64decode(answer["data"])
    name = posixpath.basename(answer["file"]["path"]) or "file"
    return Download("application/octet-stream", _pieces(req, provider_id, checkpoint_id, resource, path,
                                                          partition, size, first),
                    length=size, filename=name)


class _Sink(io.RawIOBase):
    """What ``tarfile`` writes, kept until the generator hands it on."""

    def __init__(self) -> None:
        super().__init__()
        self.pending: list[bytes] = []

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        self.pending.append(bytes(data))
        return len(data)

    def take(self) -> bytes:
        out, self.pending = b"".join(self.pending), []
        return out


_TAR_TYPES = {"file": tarfile.REGTYPE, "directory": tarfile.DIRTYPE, "symlink": tarfile.SYMTYPE,
              "fifo": tarfile.FIFOTYPE}


def archive(req: ApiRequest, provider_id: str, checkpoint_id: str, resource_key: str) -> Download:
    """A tar stream of every ``path`` given (each with everything under it): a file-level restore."""
    _checkpoint(req, provider_id, checkpoint_id)
    paths = [_check_path("path", p) for p in req.http.GET.getall("path")]
    if not paths:
        raise BadRequest(reason="path: name at least one absolute path (path=/etc, repeatable)")
    resource, partition = _resource(resource_key), _int(req, "partition")
    walks = [req.protection.walk_files(req.ctx, provider_id, checkpoint_id, resource, p, partition)["files"]
             for p in paths]  # every path resolved before answering: a missing one is a 404

    def stream() -> Iterator[bytes]:
        sink = _Sink()
        tar = tarfile.open(fileobj=sink, mode="w|", format=tarfile.PAX_FORMAT)  # type: ignore[call-overload]
        seen: set[str] = set()
        for entries in walks:
            for entry in entries:
                if entry["path"] in seen or entry["type"] not in _TAR_TYPES:
                    continue
                seen.add(entry["path"])
                info = tarfile.TarInfo(entry["path"].lstrip("/") or ".")
                info.type = _TAR_TYPES[entry["type"]]
                info.mode = int(entry["mode"], 8)
                info.uid, info.gid = int(entry["uid"]), int(entry["gid"])
                info.mtime = _timestamp(entry["mtime"])
                if entry["type"] == "symlink":
                    info.linkname = entry.get("target", "")
                if entry["type"] == "file":
                    info.size = int(entry["size"])
                    tar.addfile(info, _Reader(_pieces(req, provider_id, checkpoint_id, resource, entry["path"],
                                                      partition, info.size, b"")))
                else:
                    tar.addfile(info)
                data = sink.take()
                if data:
                    yield data
        tar.close()
        yield sink.take()

    name = "-".join(posixpath.basename(p.rstrip("/")) or "root" for p in paths)[:100]
    return Download("application/x-tar", stream(), filename=f"{name}.tar")


def _timestamp(text: str) -> float:
    import datetime as _dt

    return _dt.datetime.fromisoformat(text).timestamp()


class _Reader(io.RawIOBase):
    """A file object over an iterator of byte pieces (what ``tarfile.addfile`` copies from)."""

    def __init__(self, pieces: Iterator[bytes]) -> None:
        super().__init__()
        self._pieces = pieces
        self._buffer = b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while not self._buffer:
            try:
                self._buffer = next(self._pieces)
            except StopIteration:
                return 0
        n = min(len(buffer), len(self._buffer))
        buffer[:n] = self._buffer[:n]
        self._buffer = self._buffer[n:]
        return n


def diff(req: ApiRequest, provider_id: str, checkpoint_id: str, resource_key: str) -> Result:
    """What changed from this checkpoint to ``to`` (another checkpoint of the same volume)."""
    _checkpoint(req, provider_id, checkpoint_id)
    other = common.query_param(req, "to")
    if not other:
        raise BadRequest(reason="to: the id of the checkpoint to compare with is required")
    _checkpoint(req, provider_id, other)
    raw_path = req.params.get("path")
    path = _check_path("path", raw_path) if raw_path else None
    found = req.protection.diff_checkpoints(req.ctx, provider_id, checkpoint_id, other, _resource(resource_key),
                                            path, _int(req, "partition"))
    return 200, {"diff": found}


def quote(resource_key: str) -> str:
    """``resource_key`` as a path segment."""
    return urllib.parse.quote(resource_key, safe=":")
