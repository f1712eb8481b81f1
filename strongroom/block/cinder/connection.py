"""Where a Cinder volume's data is: its connection information, as a hypervisor would be given it.

``os-initialize_connection`` answers ``{"driver_volume_type": "rbd", "data": {"name": "pool/volume-<id>",
...}}`` for a volume of the RBD driver; that image (and its RBD snapshot ``snapshot-<id>`` for a Cinder
snapshot) is what librbd reads and writes.  The RBD driver keeps no state for a connection, so nothing is
to be undone afterwards.  Any other ``driver_volume_type`` (iscsi, nfs, ...) is refused by name: reading
those needs os-brick, a later path.
"""

from __future__ import annotations

import socket

from strongroom import exceptions
from strongroom.block.cinder.api import CinderApi


def connector() -> dict[str, object]:
    """What this host tells Cinder about itself (the fields os-brick sends; the RBD driver reads none)."""
    return {"host": socket.gethostname(), "ip": "127.0.0.1", "initiator": "strongroom", "multipath": False,
            "platform": "x86_64", "os_type": "linux", "do_local_attach": False}


def rbd_location(api: CinderApi, volume_id: str) -> tuple[str, str]:
    """The pool and image of ``volume_id``; ``BlockError`` naming the driver type if it is not ``rbd``."""
    answer = api.request("POST", f"/volumes/{volume_id}/action", f"asking where volume {volume_id} is",
                         json={"os-initialize_connection": {"connector": connector()}},
                         not_found=lambda: exceptions.VolumeNotFound(volume_id=volume_id))
    info = (answer or {}).get("connection_info") or {}
    kind = info.get("driver_volume_type")
    if kind != "rbd":
        raise exceptions.BlockError(
            reason=f"{api.what}: volume {volume_id} is attached with driver_volume_type {kind!r}: the cinder "
            "backend reads only 'rbd' volumes (Cinder's RBD driver)")
    name = str((info.get("data") or {}).get("name") or "")
    pool, _, image = name.partition("/")
    if not pool or not image:
        raise exceptions.BlockError(reason=f"{api.what}: volume {volume_id}: unusable rbd name {name!r}")
    return pool, image
