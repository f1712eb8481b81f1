"""``strongroom-local``: a castellan key manager over one file, the embedded default.

The file (``[key_manager] local_kek_file``, by default ``<state_dir>/key-encryption-keys.json``) is created
with mode 0600 and holds symmetric keys by id::

    {"version": 1, "keys": {"<uuid>": {"algorithm": "AES", "bit_length": 256, "key": "<base64>",
                                       "name": "...", "created": 1764748800}}}

Writes replace it atomically (a temporary file, ``fsync``, ``rename``, then the directory's ``fsync``),
under an ``flock`` so that two processes of one host sharing a state directory add keys without losing
each other's.  It holds key-encryption keys only: without it, no encrypted checkpoint of a bank whose
keys it wraps can be read, so it must be backed up apart from the bank (``doc/encryption.md``).

Only symmetric keys: ``create_key_pair`` and consumers are not supported (castellan's interface has them;
Strongroom uses neither).
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import os
import time
import uuid
from collections.abc import Iterator
from typing import Any

from castellan.common import exception as castellan_exception
from castellan.common.objects import symmetric_key
from castellan.key_manager import key_manager
from oslo_config import cfg

FILE_NAME = "key-encryption-keys.json"
VERSION = 1


def key_file(conf: cfg.ConfigOpts) -> str:
    """Where the local key manager of ``conf`` keeps its keys."""
    from strongroom.keys.kek import register_opts

    register_opts(conf)
    path = str(conf.key_manager.local_kek_file or "")
    return os.path.abspath(path or os.path.join(str(conf.state_dir), FILE_NAME))


class LocalKeyManager(key_manager.KeyManager):
    """castellan's ``KeyManager`` over a local file (``context`` is not used: the file's mode guards it)."""

    def __init__(self, configuration: cfg.ConfigOpts | None) -> None:
        conf = configuration or cfg.CONF
        self.path = key_file(conf)

    # -- the file --------------------------------------------------------------

    def _read(self) -> dict[str, Any]:
        try:
            with open(self.path, "rb") as f:
                value = json.load(f)
        except FileNotFoundError:
            return {}
        except ValueError as err:
            raise castellan_exception.KeyManagerError(reason=f"{self.path} is not valid JSON: {err}") from None
        keys = value.get("keys") if isinstance(value, dict) else None
        if not isinstance(keys, dict):
            raise castellan_exception.KeyManagerError(reason=f"{self.path} holds no 'keys' object")
        return keys

    @contextlib.contextmanager
    def _changing(self) -> Iterator[dict[str, Any]]:
        directory = os.path.dirname(self.path)
        os.makedirs(directory, mode=0o700, exist_ok=True)
        lock_fd = os.open(self.path + ".lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(lock_fd, fcntl.LOCK_EX)
            keys = self._read()
            yield keys
            tmp = f"{self.path}.tmp-{os.getpid()}"
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                os.fchmod(fd, 0o600)
                os.write(fd, json.dumps({"version": VERSION, "keys": keys}, indent=1, sort_keys=True).encode())
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, self.path)
            dir_fd = os.open(directory, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
        finally:
            os.close(lock_fd)

    # -- castellan's interface -----------------------------------------------------

    def create_key(self, context: Any, algorithm: str, length: int, expiration: str | None = None,
                   name: str | None = None) -> str:
        if length % 8 or not 128 <= length <= 512:
            raise castellan_exception.KeyManagerError(reason=f"cannot make a {length}-bit key")
        return self.store(context, symmetric_key.SymmetricKey(algorithm, length, os.urandom(length // 8), name=name))

    def create_key_pair(self, context: Any, algorithm: str, length: int, expiration: str | None = None,
                        name: str | None = None) -> tuple[str, str]:
        raise NotImplementedError("the strongroom-local key manager holds symmetric keys only")

    def store(self, context: Any, managed_object: Any, expiration: str | None = None) -> str:
        if not isinstance(managed_object, symmetric_key.SymmetricKey):
            raise castellan_exception.KeyManagerError(reason="the strongroom-local key manager holds symmetric "
                                                             "keys only")
        encoded = managed_object.get_encoded()
        if not encoded:
            raise castellan_exception.KeyManagerError(reason="a key without bytes cannot be stored")
        key_id = str(uuid.uuid4())
        with self._changing() as keys:
            keys[key_id] = {"algorithm": managed_object.algorithm, "bit_length": managed_object.bit_length,
                            "key": base64.b64encode(encoded).decode(), "name": managed_object.name,
                            "created": int(time.time())}
        return key_id

    def get(self, context: Any, managed_object_id: str, metadata_only: bool = False) -> Any:
        entry = self._read().get(managed_object_id)
        if not isinstance(entry, dict):
            raise castellan_exception.ManagedObjectNotFoundError(uuid=managed_object_id)
        try:
            raw = None if metadata_only else base64.b64decode(str(entry["key"]), validate=True)
            return symmetric_key.SymmetricKey(str(entry["algorithm"]), int(entry["bit_length"]), raw,
                                              name=entry.get("name"), created=entry.get("created"),
                                              id=managed_object_id)
        except (KeyError, ValueError, TypeError):
            raise castellan_exception.KeyManagerError(
                reason=f"key {managed_object_id} in {self.path} is malformed") from None

    def delete(self, context: Any, managed_object_id: str, force: bool = False) -> None:
        with self._changing() as keys:
            if keys.pop(managed_object_id, None) is None:
                raise castellan_exception.ManagedObjectNotFoundError(uuid=managed_object_id)

    def add_consumer(self, context: Any, managed_object_id: str, consumer_data: dict[str, str]) -> None:
        raise NotImplementedError("the strongroom-local key manager has no consumers")

    def remove_consumer(self, context: Any, managed_object_id: str, consumer_data: dict[str, str]) -> None:
        raise NotImplementedError("the strongroom-local key manager has no consumers")

    def list(self, context: Any, object_type: Any = None, metadata_only: bool = False) -> list[Any]:
        return [self.get(context, key_id, metadata_only) for key_id in sorted(self._read())]
