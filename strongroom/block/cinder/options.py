"""The cinder backend's options: how to reach Cinder's API (and as whom), and how to reach the volumes' data.

Two halves, kept apart so that each can be read alone: the API half (an endpoint and/or Keystone auth) and
the data half (``rbd_*``: the Ceph cluster Cinder's RBD driver keeps the volumes on, which Strongroom reads
and writes with librbd as cinder-backup's Ceph driver does).  The pool comes from each volume's
connection information unless ``rbd_pool`` is given.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from strongroom import exceptions
from strongroom.plugin_options import SECRET_INVALID, describe_schema_error, first_schema_error

AUTH_TYPES = ("noauth", "password", "v3applicationcredential")
SECRET_OPTIONS = frozenset({"password", "application_credential_secret", "rbd_key"})
#: The newest microversion this backend knows; the one used is the lower of it and the server's.
MAX_MICROVERSION = (3, 70)
DEFAULT_TIMEOUT = 30.0
DEFAULT_STATUS_TIMEOUT = 300.0
DEFAULT_LEFTOVER_AGE = 86400.0

_text: dict[str, Any] = {"type": "string", "minLength": 1, "maxLength": 1024}

OPTIONS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "auth_type": {"enum": list(AUTH_TYPES),
                      "description": "noauth (a Cinder without Keystone), password or v3applicationcredential."},
        "endpoint": {**_text, "description": "Cinder's v3 endpoint (required with noauth; else from the catalogue)."},
        "auth_url": {**_text, "description": "Keystone's URL."},
        "username": _text, "user_domain_name": _text, "user_id": _text,
        "password": {**_text, "writeOnly": True, "description": "The user's password (secret)."},
        "project_name": _text, "project_domain_name": _text,
        "project_id": {**_text, "description": "The project whose volumes are listed (noauth: the token's)."},
        "application_credential_id": _text,
        "application_credential_secret": {**_text, "writeOnly": True, "description": "Secret."},
        "region_name": _text,
        "interface": {"enum": ["public", "internal", "admin"]},
        "cafile": _text,
        "timeout": {"type": "number", "exclusiveMinimum": 0, "maximum": 3600,
                    "description": "Seconds any one request to Cinder may take."},
        "status_timeout": {"type": "number", "exclusiveMinimum": 0, "maximum": 86400,
                           "description": "Seconds a volume or snapshot may take to become available."},
        "leftover_age": {"type": "number", "minimum": 0,
                         "description": "Seconds after which another process's staged volume is a leftover."},
        "volume_type": _text, "availability_zone": _text,
        "act_as_user": {"type": "boolean",
                        "description": "With Keystone: a request that carries the user's token (the API's, or a "
                        "scheduled run's trust token) acts in Cinder as that user in that user's project; the "
                        "configured identity finds Cinder in the catalogue and does the rest."},
        "rbd_conf_file": _text, "rbd_mon_host": _text, "rbd_pool": _text,
        "rbd_client_name": _text, "rbd_keyring": _text,
        "rbd_key": {**_text, "writeOnly": True, "description": "The Ceph user's cephx key (secret)."},
        "rbd_connect_timeout": {"type": "number", "exclusiveMinimum": 0, "maximum": 3600},
        "rbd_op_timeout": {"type": "number", "exclusiveMinimum": 0, "maximum": 3600},
        "read_workers": {"type": "integer", "minimum": 1, "maximum": 64},
    },
    "anyOf": [{"required": ["rbd_conf_file"]}, {"required": ["rbd_mon_host"]}],
    "additionalProperties": False,
}


@dataclasses.dataclass(frozen=True)
class CinderConfig:
    """The checked options; ``repr()`` never shows a secret."""

    auth_type: str
    endpoint: str | None
    project_id: str | None
    timeout: float
    status_timeout: float
    leftover_age: float
    volume_type: str | None
    availability_zone: str | None
    auth: Mapping[str, Any] = dataclasses.field(default_factory=dict, repr=False)
    region_name: str | None = None
    interface: str = "public"
    cafile: str | None = None
    act_as_user: bool = False

    @property
    def where(self) -> str:
        """How messages name Cinder: its endpoint, or Keystone's catalogue."""
        return self.endpoint or f"the catalogue of {self.auth.get('auth_url')}"


def check_options(options: Mapping[str, Any]) -> None:
    """``ConfigError`` naming the first option that is wrong; a secret's value is never quoted."""
    err = first_schema_error(options, OPTIONS_SCHEMA)
    if err is not None:
        if err.validator == "anyOf" and not err.path:
            name, reason = "rbd_conf_file", "either rbd_conf_file or rbd_mon_host is required (the data path)"
        else:
            name, reason = describe_schema_error(err, options, OPTIONS_SCHEMA, secret_options=SECRET_OPTIONS,
                                                 secret_message=lambda _: SECRET_INVALID, every_unknown=True)
        raise exceptions.ConfigError(reason=f"cinder block backend: {name}: {reason}")
    auth_type = _auth_type(options)
    needs = {"noauth": ("endpoint",), "password": ("auth_url", "password"),
             "v3applicationcredential": ("auth_url", "application_credential_id", "application_credential_secret")}
    for name in needs[auth_type]:
        if name not in options:
            raise exceptions.ConfigError(reason=f"cinder block backend: {name}: required with auth_type {auth_type}")
    if auth_type == "password" and not ({"username", "user_id"} & set(options)):
        raise exceptions.ConfigError(reason="cinder block backend: username: required with auth_type password")
    if auth_type == "noauth" and options.get("act_as_user"):
        raise exceptions.ConfigError(reason="cinder block backend: act_as_user: needs Keystone (auth_type password "
                                     "or v3applicationcredential); a Cinder without Keystone has no user tokens")


def _auth_type(options: Mapping[str, Any]) -> str:
    return str(options.get("auth_type") or ("password" if "auth_url" in options else "noauth"))


def cinder_config(options: Mapping[str, Any]) -> CinderConfig:
    """The :class:`CinderConfig` of checked options."""
    auth_keys = ("auth_url", "username", "user_id", "password", "user_domain_name", "project_name",
                 "project_domain_name", "project_id", "application_credential_id", "application_credential_secret")
    return CinderConfig(
        auth_type=_auth_type(options),
        endpoint=options.get("endpoint"),
        project_id=options.get("project_id"),
        timeout=float(options.get("timeout", DEFAULT_TIMEOUT)),
        status_timeout=float(options.get("status_timeout", DEFAULT_STATUS_TIMEOUT)),
        leftover_age=float(options.get("leftover_age", DEFAULT_LEFTOVER_AGE)),
        volume_type=options.get("volume_type"),
        availability_zone=options.get("availability_zone"),
        auth={k: options[k] for k in auth_keys if k in options},
        region_name=options.get("region_name"),
        interface=str(options.get("interface", "public")),
        cafile=options.get("cafile"),
        act_as_user=bool(options.get("act_as_user", False)),
    )


def rbd_options(options: Mapping[str, Any], pool: str) -> dict[str, Any]:
    """Options of :mod:`strongroom.block.rbd` for the data path to ``pool``."""
    names = {"rbd_conf_file": "conf_file", "rbd_mon_host": "mon_host", "rbd_client_name": "client_name",
             "rbd_keyring": "keyring", "rbd_key": "key", "rbd_connect_timeout": "connect_timeout",
             "rbd_op_timeout": "op_timeout", "read_workers": "read_workers"}
    out = {ours: options[theirs] for theirs, ours in names.items() if theirs in options}
    return {**out, "pool": str(options.get("rbd_pool", pool))}
