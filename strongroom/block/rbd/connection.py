"""One librados connection to one pool, opened on first use, and the translation of Ceph's errors.

librados and librbd come from Debian (``python3-rados``, ``python3-rbd``; no PyPI package has them) and are
imported only when a connection is first needed, so that nothing else in Strongroom needs Ceph installed.

Every request carries librados' own timeouts (``client_mount_timeout`` for connecting,
``rados_mon_op_timeout`` and ``rados_osd_op_timeout`` for each request afterwards), so a dead monitor or
OSD turns into :class:`~strongroom.exceptions.BlockUnavailable` within the configured time instead of a
hang; that error and every other one name the backend and the pool, never a credential.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import threading
import types
from collections.abc import Callable, Iterator
from typing import Any

from strongroom import exceptions, redaction
from strongroom.block.rbd.options import ClusterConfig

LOG = logging.getLogger("strongroom.block.rbd")

#: The Debian package that provides each Python module.
PACKAGES = {"rados": "python3-rados", "rbd": "python3-rbd"}


def import_module(name: str) -> types.ModuleType:
    """``rados`` or ``rbd``, or ``ConfigError`` naming the Debian package that provides it."""
    try:
        return __import__(name)
    except ImportError as err:
        raise exceptions.ConfigError(
            reason=f"rbd block backend: the Python module {name!r} is missing: install the Debian package "
            f"{PACKAGES[name]} (and run `make install`, which links it into the virtualenv)") from err


def librados() -> Any:
    return import_module("rados")


def librbd() -> Any:
    return import_module("rbd")


class RbdConnection:
    """A ``rados.Rados`` and an I/O context on the configured pool (and namespace), opened lazily, once.

    Thread-safe: librados handles are shared by every thread, as librados intends.
    """

    def __init__(self, config: ClusterConfig, backend: str = "rbd") -> None:
        self.config = config
        self.backend = backend
        self._lock = threading.Lock()
        self._cluster: Any = None
        self._ioctx: Any = None

    def __repr__(self) -> str:
        return f"RbdConnection(pool={self.config.where!r}, connected={self._ioctx is not None})"

    @property
    def what(self) -> str:
        """How messages name this backend and pool."""
        return f"{self.backend} (pool {self.config.where})"

    def ioctx(self) -> Any:
        """The pool's I/O context, connecting first if need be."""
        with self._lock:
            if self._ioctx is None:
                self._connect()
            return self._ioctx

    def cluster(self) -> Any:
        self.ioctx()
        return self._cluster

    def _connect(self) -> None:
        rados = librados()
        config = self.config
        try:  # conffile None: no ceph.conf is read at all, not even /etc/ceph's
            cluster = rados.Rados(rados_id=config.client_name, conffile=config.conf_file, conf=config.rados_conf())
        except rados.Error as err:
            raise exceptions.ConfigError(reason=f"{self.what}: unusable cluster settings: {self.cause(err)}") \
                from None
        try:
            cluster.connect(timeout=max(1, int(config.connect_timeout)))
        except rados.Error as err:
            cluster.shutdown()
            raise self.unavailable(err, f"cannot connect to the cluster within {config.connect_timeout:g} s") \
                from None
        try:
            ioctx = cluster.open_ioctx(config.pool)
            if config.namespace:
                rbd = librbd()
                if not rbd.RBD().namespace_exists(ioctx, config.namespace):
                    with contextlib.suppress(rbd.ImageExists):
                        rbd.RBD().namespace_create(ioctx, config.namespace)
                ioctx.set_namespace(config.namespace)
        except (rados.Error, librbd().Error) as err:
            cluster.shutdown()
            if isinstance(err, rados.ObjectNotFound):
                raise exceptions.ConfigError(reason=f"{self.what}: the pool does not exist") from None
            raise self.translate(err, "opening the pool") from None
        self._cluster, self._ioctx = cluster, ioctx
        LOG.debug("connected to %s as client.%s", self.what, config.client_name)

    def cause(self, err: BaseException) -> str:
        """librados' own words for an error: they name images and objects, not credentials, and the key
        is masked all the same should a library ever echo it."""
        return redaction.scrub(f"{type(err).__name__}: {err}", [self.config.key or ""])

    def unavailable(self, err: BaseException, doing: str) -> exceptions.BlockUnavailable:
        return exceptions.BlockUnavailable(backend=self.what, reason=f"{doing} ({self.cause(err)})")

    def translate(self, err: BaseException, doing: str) -> exceptions.BlockError:
        """The Strongroom error for a librados/librbd error met while ``doing`` something."""
        code = getattr(err, "errno", None)
        if code in (errno.ETIMEDOUT, errno.ESHUTDOWN, errno.ENOTCONN, errno.ECONNREFUSED):
            seconds = self.config.op_timeout
            return self.unavailable(err, f"{doing} got no answer within {seconds:g} s")
        if code in (errno.EACCES, errno.EPERM):
            return exceptions.BlockError(
                reason=f"{self.what}: {doing} was refused: the Ceph user lacks the caps (see doc/block-rbd.md)")
        return exceptions.BlockError(reason=f"{self.what}: {doing} failed ({self.cause(err)})")

    @contextlib.contextmanager
    def errors(self, doing: str, not_found: Callable[[], exceptions.StrongroomError] | None = None,
               ) -> Iterator[None]:
        """Turn Ceph's errors raised inside the block into Strongroom's: ``not_found()`` for a missing
        image or snapshot (if given), :meth:`translate` for the rest."""
        rados, rbd = librados(), librbd()
        try:
            yield
        except (rados.Error, rbd.Error) as err:
            if not_found is not None and isinstance(err, (rbd.ImageNotFound, rados.ObjectNotFound)):
                raise not_found() from None
            raise self.translate(err, doing) from None

    def close(self) -> None:
        """Close the pool and the connection.  Idempotent; the next use connects again."""
        with self._lock:
            ioctx, cluster, self._ioctx, self._cluster = self._ioctx, self._cluster, None, None
        if ioctx is not None:
            with contextlib.suppress(Exception):
                ioctx.close()
        if cluster is not None:
            with contextlib.suppress(Exception):
                cluster.shutdown()

