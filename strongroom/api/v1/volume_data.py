"""``GET /v1/{project_id}/providers/{provider_id}/checkpoints/{checkpoint_id}/resources/{resource_key}/data``.

The bytes of a protected volume as an available checkpoint holds them, read through the protection service
straight from the bank (manifest and chunks: nothing is restored).  ``resource_key`` is the resource's
``type#id`` with the ``#`` percent-encoded (``OS::Cinder::Volume%23<volume id>``).

With ``Range: bytes=START-END`` (or ``bytes=START-``, ``bytes=-SUFFIX``) the answer is ``206 Partial Content``
with ``Content-Range: bytes START-LAST/SIZE``; a range may be answered short (at most 8 MiB a request: ask again
from where it stopped).  A range starting at or past the end answers ``416`` with ``Content-Range: bytes
*/SIZE``.  Without ``Range`` the answer is the whole volume (``200``, streamed).  One range a request: several
are a 400.  ``strongroom mount`` reads volumes this way (doc/file-restore.md, "Mount").
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterator

import webob

from strongroom import exceptions
from strongroom.api.common import ApiRequest
from strongroom.api.errors import BadRequest

_RANGE = re.compile(r"bytes=([0-9]{0,19})-([0-9]{0,19})")
#: Bytes asked of the protection service per call when streaming a whole volume.
STREAM_STEP = 4 * 1024 * 1024


def _read(req: ApiRequest, provider_id: str, checkpoint_id: str, resource_key: str, offset: int,
          length: int) -> tuple[bytes, int]:
    answer = req.protection.read_resource_data(req.ctx, provider_id, checkpoint_id, resource_key, offset, length)
    return base64.b64decode(answer["data"]), int(answer["size"])


def show(req: ApiRequest, provider_id: str, checkpoint_id: str, resource_key: str) -> webob.Response:
    req.authorize("checkpoint:get")
    header = req.http.headers.get("Range")
    resp = webob.Response(content_type="application/octet-stream", charset=None)
    resp.headers["Accept-Ranges"] = "bytes"
    if header is None:
        first, size = _read(req, provider_id, checkpoint_id, resource_key, 0, STREAM_STEP)
        resp.status = 200
        resp.content_length = size
        resp.app_iter = _stream(req, provider_id, checkpoint_id, resource_key, first, size)
        return resp
    match = _RANGE.fullmatch(header.strip())
    if match is None or match.group(1) == match.group(2) == "":
        raise BadRequest(reason=f"Range: {header!r} is not one byte range (bytes=START-END, bytes=START- "
                                "or bytes=-SUFFIX)")
    first_text, last_text = match.groups()
    if first_text and last_text and int(last_text) < int(first_text):
        raise BadRequest(reason=f"Range: {header!r} ends before it starts")
    if first_text and last_text:
        start, end = int(first_text), int(last_text) + 1
    else:
        _, size = _read(req, provider_id, checkpoint_id, resource_key, 0, 0)
        start, end = (int(first_text), size) if first_text else (max(size - int(last_text), 0), size)
    data, size = _read(req, provider_id, checkpoint_id, resource_key, start, max(end - start, 0))
    if start >= size or not data:
        resp.status = 416
        resp.headers["Content-Range"] = f"bytes */{size}"
        resp.body = b""
        return resp
    resp.status = 206
    resp.headers["Content-Range"] = f"bytes {start}-{start + len(data) - 1}/{size}"
    resp.body = data
    return resp


def _stream(req: ApiRequest, provider_id: str, checkpoint_id: str, resource_key: str, first: bytes,
            size: int) -> Iterator[bytes]:
    """The whole volume, ``first`` then the following ranges (a failure midway ends the answer short)."""
    yield first
    offset = len(first)
    while offset < size:
        data, _ = _read(req, provider_id, checkpoint_id, resource_key, offset, STREAM_STEP)
        if not data:
            raise exceptions.DataIntegrityError(what=f"{resource_key} of checkpoint {checkpoint_id}",
                                                reason=f"no bytes at offset {offset} of {size}")
        yield data
        offset += len(data)
