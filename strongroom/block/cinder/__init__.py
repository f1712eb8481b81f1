"""The cinder block backend: OpenStack Cinder volumes of one project, data read and written with librbd.

The package: ``options`` (schema, the checked configuration, the rbd options of the data path), ``api``
(Cinder's v3 REST API over a keystoneauth session: identity, microversion, errors naming Cinder),
``connection`` (a volume's connection information: where its RBD image is), ``records`` (Cinder's
records of volumes and our snapshots as one project reads them, the ``strongroom.*`` metadata marks, the
wait for a status), ``data`` (the data path: readers, writers, overwriters and changed extents through
librbd), ``growth`` (``extend_volume``) and ``backend`` (the :class:`CinderBackend` plugin, built on those
three).  The data path reuses :mod:`strongroom.block.rbd`'s connection, reader, writer and diff.
``doc/block-cinder.md`` says how to point it at a cloud and which role and caps it needs.
"""

from strongroom.block.cinder.backend import CinderBackend
from strongroom.block.cinder.options import OPTIONS_SCHEMA, CinderConfig

__all__ = ["OPTIONS_SCHEMA", "CinderBackend", "CinderConfig"]
