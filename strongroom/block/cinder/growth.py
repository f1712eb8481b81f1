"""Growing a Cinder volume to an exact size in bytes, in whole GiB for Cinder and in bytes for us."""

from __future__ import annotations

import contextlib
import functools
import logging

from strongroom import exceptions
from strongroom.block.base import Volume, check_new_size, check_size
from strongroom.block.cinder.data import CinderDataPath
from strongroom.block.cinder.records import SIZE_KEY, GiB

LOG = logging.getLogger("strongroom.block.cinder")


class CinderGrowth(CinderDataPath):
    """``extend_volume``: Cinder's ``os-extend`` where whole GiB are wanted, the image held as an overwriter
    holds it meanwhile."""

    def extend_volume(self, volume_id: str, size: int) -> Volume:
        """Grow the volume to exactly ``size`` bytes.  Cinder counts in whole GiB, so a size that is not
        one is kept as a volume of the next whole GiB that reads and writes as ``size`` bytes (the
        ``strongroom.size`` metadata, as :meth:`create_volume` makes one): Cinder is asked to extend
        (``os-extend``, then the volume is waited for until ``available`` again, within ``status_timeout``)
        only when the size needs more GiB than the volume has, and the bytes between the old size and the
        new one that the image already held are zeroed first.

        The volume must be ``available`` and attached nowhere (else ``VolumeInUse``, as Cinder refuses an
        offline extend of anything else); its RBD image is held open as an overwriter holds it, so it is
        ``VolumeInUse`` while an overwriter has it, and no overwriter opens it meanwhile."""
        from strongroom.block.rbd.handles import open_overwriter

        check_size(size)
        raw = self._overwritable(volume_id)
        volume = self._volume(raw)
        size = check_new_size(volume, size)
        if size == volume.size:
            return volume
        connection, image = self._rbd_image(raw)
        holder = open_overwriter(connection, image, f"volume {volume_id}",
                                 exceptions.VolumeNotFound(volume_id=volume_id),
                                 exceptions.VolumeInUse(volume_id=volume_id, reason="another client has its RBD "
                                                        "image open"))
        try:
            if volume.size < holder.size:  # bytes past the volume's end that its image holds: zeros first
                holder.write_zeros(volume.size, min(size, holder.size) - volume.size)
                holder.flush()
            gib = -(-size // GiB)
            if gib > int(raw["size"]):
                self.api.request("POST", f"/volumes/{volume_id}/action", f"extending volume {volume_id} to "
                                 f"{gib} GiB", json={"os-extend": {"new_size": gib}},
                                 not_found=lambda: exceptions.VolumeNotFound(volume_id=volume_id))
                self._wait(f"/volumes/{volume_id}", "volume", f"extending volume {volume_id}", "available",
                           volume_id)
            if size % GiB:
                self.api.request("POST", f"/volumes/{volume_id}/metadata", f"recording the size of volume "
                                 f"{volume_id}", json={"metadata": {SIZE_KEY: str(size)}})
            elif SIZE_KEY in (raw.get("metadata") or {}):
                with contextlib.suppress(exceptions.NotFound):
                    self.api.request("DELETE", f"/volumes/{volume_id}/metadata/{SIZE_KEY}",
                                     f"recording the size of volume {volume_id}",
                                     not_found=functools.partial(exceptions.NotFound, kind="metadata", id=SIZE_KEY))
        finally:
            holder.close()
        LOG.debug("extended volume %s to %d bytes in %s", volume_id, size, self.api.what)
        return self.get_volume(volume_id)

