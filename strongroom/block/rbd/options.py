"""The rbd backend's options: their schema, the secret among them, and the librados settings they become.

Kept apart from the backend so that another backend reaching RBD images (a Cinder volume whose connection
information says ``rbd``) builds the same :class:`ClusterConfig` from what it was given.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
from collections.abc import Mapping
from typing import Any

from strongroom import exceptions
from strongroom.plugin_options import SECRET_INVALID, describe_schema_error, first_schema_error

#: librbd's feature bits by the names ``rbd create --image-feature`` takes (values from librbd.h).
FEATURES = {
    "layering": 1,
    "striping": 2,
    "exclusive-lock": 4,
    "object-map": 8,
    "fast-diff": 16,
    "deep-flatten": 32,
}
#: What a new image gets: fast-diff (with the object map and the exclusive lock it needs) makes the
#: allocated-extents diff exact and cheap; Ceph's own default besides.
DEFAULT_FEATURES = "layering,exclusive-lock,object-map,fast-diff,deep-flatten"
DEFAULT_CONNECT_TIMEOUT = 10.0
DEFAULT_OP_TIMEOUT = 30.0
DEFAULT_READ_WORKERS = 4

SECRET_OPTIONS = frozenset({"key"})

OPTIONS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "conf_file": {"type": "string", "minLength": 1,
                      "description": "Path of a ceph.conf naming the monitors (mon_host overrides it)."},
        "mon_host": {"type": "string", "minLength": 1,
                     "description": "Monitor addresses, as ceph.conf's 'mon host' (e.g. 10.0.0.1,10.0.0.2)."},
        "pool": {"type": "string", "minLength": 1, "maxLength": 255, "description": "The pool of the images."},
        "namespace": {"type": "string", "minLength": 1, "maxLength": 255,
                      "description": "An RBD namespace within the pool (created if missing)."},
        "client_name": {"type": "string", "minLength": 1, "maxLength": 255,
                        "description": "The Ceph user without 'client.' (librados' rados_id); default admin."},
        "keyring": {"type": "string", "minLength": 1, "description": "Path of the user's keyring file."},
        "key": {"type": "string", "minLength": 1, "writeOnly": True,
                "description": "The user's cephx key itself (secret); instead of keyring."},
        "image_features": {"type": "string", "pattern": "^[a-z-]+(,[a-z-]+)*$",
                           "description": f"Features of new images, comma-separated (default {DEFAULT_FEATURES})."},
        "connect_timeout": {"type": "number", "exclusiveMinimum": 0, "maximum": 3600,
                            "description": "Seconds to reach the monitors and authenticate."},
        "op_timeout": {"type": "number", "exclusiveMinimum": 0, "maximum": 3600,
                       "description": "Seconds any one monitor or OSD request may take before it fails."},
        "read_workers": {"type": "integer", "minimum": 1, "maximum": 64,
                         "description": "Reads of one snapshot in flight at once."},
    },
    "required": ["pool"],
    "anyOf": [{"required": ["conf_file"]}, {"required": ["mon_host"]}],
    "additionalProperties": False,
}


@dataclasses.dataclass(frozen=True)
class ClusterConfig:
    """How to reach one pool of one cluster.  ``repr()`` never shows the key."""

    pool: str
    conf_file: str | None = None
    mon_host: str | None = None
    namespace: str | None = None
    client_name: str = "admin"
    keyring: str | None = None
    key: str | None = dataclasses.field(default=None, repr=False)
    features: int = 0
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT
    op_timeout: float = DEFAULT_OP_TIMEOUT
    read_workers: int = DEFAULT_READ_WORKERS

    @property
    def where(self) -> str:
        """The pool (and namespace) as messages name it."""
        return f"{self.pool}/{self.namespace}" if self.namespace else self.pool

    def rados_conf(self) -> dict[str, str]:
        """Settings for ``rados.Rados(conf=...)``: the timeouts that bound every call, and the credentials."""
        conf = {
            "client_mount_timeout": _seconds(self.connect_timeout),
            "rados_mon_op_timeout": _seconds(self.op_timeout),
            "rados_osd_op_timeout": _seconds(self.op_timeout),
            # A client never writes Ceph's logs or admin sockets where an operator does not expect them.
            "log_to_stderr": "false",
            "err_to_stderr": "false",
        }
        if self.mon_host:
            conf["mon_host"] = self.mon_host
        if self.keyring:
            conf["keyring"] = self.keyring
        if self.key:
            conf["key"] = self.key
        return conf


def _seconds(value: float) -> str:
    return str(max(1, int(-(-value // 1))))  # librados takes whole seconds; never 0 (which means "forever")


def parse_features(text: str) -> int:
    """The feature bits of a comma-separated list of names; ``ConfigError`` names an unknown one."""
    bits = 0
    for name in text.split(","):
        if name not in FEATURES:
            raise exceptions.ConfigError(
                reason=f"rbd block backend: image_features: unknown feature {name!r} "
                f"(known: {', '.join(FEATURES)})")
        bits |= FEATURES[name]
    if bits & FEATURES["object-map"] and not bits & FEATURES["exclusive-lock"]:
        raise exceptions.ConfigError(reason="rbd block backend: image_features: object-map needs exclusive-lock")
    if bits & FEATURES["fast-diff"] and not bits & FEATURES["object-map"]:
        raise exceptions.ConfigError(reason="rbd block backend: image_features: fast-diff needs object-map")
    return bits


def check_options(options: Mapping[str, Any]) -> None:
    """``ConfigError`` naming the first option that breaks the schema; a secret's value is never quoted."""
    err = first_schema_error(options, OPTIONS_SCHEMA)
    if err is None:
        return
    if err.validator == "anyOf" and not err.path:
        name, reason = "conf_file", "either conf_file or mon_host is required"
    else:
        name, reason = describe_schema_error(err, options, OPTIONS_SCHEMA, secret_options=SECRET_OPTIONS,
                                             secret_message=lambda _: SECRET_INVALID, every_unknown=True)
    raise exceptions.ConfigError(reason=f"rbd block backend: {name}: {reason}")


def check_key(key: str) -> None:
    """``ConfigError`` unless ``key`` is a cephx key as ``ceph auth get-key`` prints it (base64 of a 28-byte
    AES key record).  librados prints a key it cannot decode to stderr, so one that is not a key (a typo of
    the real one, likely) never reaches it."""
    try:
        raw = base64.b64decode(key, validate=True)
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) != 28 or raw[10:12] != (16).to_bytes(2, "little"):
        raise exceptions.ConfigError(
            reason="rbd block backend: key: is not a cephx key (not shown: it is a secret; "
            "`ceph auth get-key client.NAME` prints the right one)")


def cluster_config(options: Mapping[str, Any]) -> ClusterConfig:
    """The :class:`ClusterConfig` of checked backend options."""
    client = str(options.get("client_name", "admin")).removeprefix("client.")
    if options.get("key") is not None:
        check_key(str(options["key"]))
    return ClusterConfig(
        pool=str(options["pool"]),
        conf_file=options.get("conf_file"),
        mon_host=options.get("mon_host"),
        namespace=options.get("namespace"),
        client_name=client,
        keyring=options.get("keyring"),
        key=options.get("key"),
        features=parse_features(str(options.get("image_features", DEFAULT_FEATURES))),
        connect_timeout=float(options.get("connect_timeout", DEFAULT_CONNECT_TIMEOUT)),
        op_timeout=float(options.get("op_timeout", DEFAULT_OP_TIMEOUT)),
        read_workers=int(options.get("read_workers", DEFAULT_READ_WORKERS)),
    )
