"""How the rbd backend names what it keeps in a pool, and tells its own from the user's.

::

    <name>                                   a volume: an RBD image (every image of the pool whose name is
                                             a usable volume name and not staged)
    .strongroom-staged-<name>                a staged volume (being restored), renamed to <name> on publish
    <image>@strongroom-<uuid>                one of our snapshots: an RBD snapshot of <image>; its id is
                                             the image and snapshot name joined by '@', as ``rbd`` spells it
    image metadata strongroom.snap.<uuid>    that snapshot's record: {"tags", "created_at", "maker"}

Snapshots with any other name (the user's, OpenStack's) are never listed, read, deleted nor reclaimed.
The record is written before the snapshot is taken and removed after it is deleted, so a snapshot of ours
is listed only when its record is there; a record without its snapshot is what a call that died half way
left, and ``maker`` (the librados instance id of the client that wrote it) tells whether that call is
still alive: its client watches the image until the snapshot is taken.
"""

from __future__ import annotations

import dataclasses
import json
import uuid
from typing import Any

from strongroom import exceptions, validation
from strongroom.block.names import StagedNames

STAGED_PREFIX = ".strongroom-staged-"
SNAPSHOT_PREFIX = "strongroom-"
RECORD_PREFIX = "strongroom.snap."
#: RBD's own limit on image names (RBD_MAX_IMAGE_NAME_SIZE) less the staged prefix.
MAX_NAME_BYTES = 200


def validate_name(name: Any) -> str:
    """``name`` if it can name an image (and its staged twin), else ``InvalidInput`` naming the rule."""
    problem = validation.problem(name, validation.Rule.SEGMENT)
    if problem is not None:
        shown = repr(name) if isinstance(name, str) else type(name).__name__
        raise exceptions.InvalidInput(reason=f"volume name {shown} {problem}")
    if "@" in name or name.startswith("."):
        raise exceptions.InvalidInput(reason=f"volume name {name!r} must not contain '@' nor start with '.'")
    if len(name.encode("utf-8")) > MAX_NAME_BYTES:
        raise exceptions.InvalidInput(reason=f"volume name {name!r} is longer than {MAX_NAME_BYTES} bytes")
    return str(name)


NAMES = StagedNames(STAGED_PREFIX, validate_name)
is_volume_name = NAMES.is_valid
staged_id = NAMES.staged_id
name_of_staged = NAMES.name_of_staged


@dataclasses.dataclass(frozen=True)
class SnapshotName:
    """One of our snapshots: which image, and the uuid in its name."""

    image: str
    token: str

    @classmethod
    def new(cls, image: str) -> SnapshotName:
        return cls(image, str(uuid.uuid4()))

    @classmethod
    def parse(cls, snapshot_id: Any) -> SnapshotName | None:
        """The snapshot an id names, or None if it is none of ours (a user's snapshot, garbage)."""
        if not isinstance(snapshot_id, str) or snapshot_id.count("@") != 1:
            return None
        image, snap = snapshot_id.split("@")
        return cls.of(image, snap)

    @classmethod
    def of(cls, image: str, snap: str) -> SnapshotName | None:
        """Ours if ``snap`` (a snapshot of ``image``) is named as we name them."""
        if not snap.startswith(SNAPSHOT_PREFIX) or not is_volume_name(image):
            return None
        token = snap[len(SNAPSHOT_PREFIX):]
        try:
            if str(uuid.UUID(token)) != token:
                return None
        except ValueError:
            return None
        return cls(image, token)

    @property
    def snap(self) -> str:
        """The RBD snapshot's name."""
        return SNAPSHOT_PREFIX + self.token

    @property
    def id(self) -> str:
        return f"{self.image}@{self.snap}"

    @property
    def record_key(self) -> str:
        """The image metadata key of its record."""
        return RECORD_PREFIX + self.token


def token_of_record(key: str) -> str | None:
    """The snapshot token a metadata key is the record of, or None."""
    if not key.startswith(RECORD_PREFIX):
        return None
    token = key[len(RECORD_PREFIX):]
    try:
        return token if str(uuid.UUID(token)) == token else None
    except ValueError:
        return None


def encode_record(tags: dict[str, str], created_at: str, maker: int) -> str:
    return json.dumps({"tags": tags, "created_at": created_at, "maker": maker}, sort_keys=True)


def decode_record(text: str) -> dict[str, Any]:
    """A record's fields; an unreadable one reads as no tags (the snapshot is still ours, by name)."""
    try:
        value = json.loads(text)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}
