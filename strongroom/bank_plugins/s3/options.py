"""The s3 bank's options: their schema, their defaults and the checks between them."""

from __future__ import annotations

import urllib.parse
from collections.abc import Mapping
from typing import Any

from strongroom.bank_plugins.base import LEASE_OPTIONS
from strongroom.bank_plugins.objectstore import MiB, option_error
from strongroom.plugin_options import describe_schema_error, first_schema_error

#: S3's limits on multipart uploads: parts of 5 MiB to 5 GiB (the last one may be smaller), 10,000 parts.
MIN_PART_SIZE = 5 * MiB
MAX_PART_SIZE = 5 * 1024 * MiB
MAX_PARTS = 10_000

SECRET_OPTIONS = frozenset({"secret_access_key", "session_token"})
#: Every option that is a credential (masked in logs, never in a message).
CREDENTIAL_OPTIONS = ("secret_access_key", "session_token", "access_key_id")
CHECKSUM_MODES = ["when_required", "when_supported"]
#: S3 Object Lock modes: GOVERNANCE (a principal with s3:BypassGovernanceRetention can still remove a
#: locked version) and COMPLIANCE (nobody can, not even the account's root, until the date).
OBJECT_LOCK_MODES = ["GOVERNANCE", "COMPLIANCE"]

OPTIONS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "endpoint_url": {"type": "string", "minLength": 1},
        "region_name": {"type": "string", "minLength": 1},
        "bucket": {"type": "string", "minLength": 3, "maxLength": 255,
                   "pattern": r"^[A-Za-z0-9][A-Za-z0-9._-]*$"},
        "key_prefix": {"type": "string", "pattern": r"^([^/]+/)+$"},
        "access_key_id": {"type": "string", "minLength": 1},
        "secret_access_key": {"type": "string", "minLength": 1},
        "session_token": {"type": "string", "minLength": 1},
        "addressing_style": {"enum": ["path", "virtual", "auto"]},
        "signature_version": {"enum": ["s3v4", "s3"]},
        "verify_ssl": {"type": "boolean"},
        "ca_bundle": {"type": "string", "minLength": 1},
        "request_checksum_calculation": {"enum": CHECKSUM_MODES},
        "response_checksum_validation": {"enum": CHECKSUM_MODES},
        "content_md5": {"type": "boolean"},
        "connect_timeout": {"type": "number", "exclusiveMinimum": 0},
        "read_timeout": {"type": "number", "exclusiveMinimum": 0},
        "max_pool_connections": {"type": "integer", "minimum": 1, "maximum": 1000},
        "multipart_threshold": {"type": "integer", "minimum": MIN_PART_SIZE, "maximum": MAX_PART_SIZE},
        "multipart_chunksize": {"type": "integer", "minimum": MIN_PART_SIZE, "maximum": MAX_PART_SIZE},
        "object_lock": {"type": "boolean"},
        "object_lock_mode": {"enum": OBJECT_LOCK_MODES},
        **LEASE_OPTIONS,
    },
    "required": ["bucket"],
    "dependentRequired": {
        "access_key_id": ["secret_access_key"],
        "secret_access_key": ["access_key_id"],
        "session_token": ["access_key_id", "secret_access_key"],
    },
    "additionalProperties": False,
}

DEFAULTS: dict[str, Any] = {
    "region_name": "us-east-1",
    "addressing_style": "auto",
    "signature_version": "s3v4",
    "verify_ssl": True,
    "request_checksum_calculation": "when_required",
    "response_checksum_validation": "when_required",
    "content_md5": True,
    "connect_timeout": 10.0,
    "read_timeout": 60.0,
    "max_pool_connections": 32,
    "multipart_threshold": 16 * MiB,
    "multipart_chunksize": 8 * MiB,
    "object_lock": False,
    "object_lock_mode": "GOVERNANCE",
}


def check_options(options: Mapping[str, Any], schema: Mapping[str, Any] = OPTIONS_SCHEMA) -> None:
    """``ConfigError`` naming the first option that is wrong (never quoting a secret's value)."""
    err = first_schema_error(options, schema)
    if err is not None:
        if not err.path and err.validator == "dependentRequired":
            name, message = "access_key_id", "secret_access_key and access_key_id go together"
            if "session_token" in options:
                message = "session_token needs access_key_id and secret_access_key"
        else:
            name, message = describe_schema_error(
                err, options, schema, secret_options=SECRET_OPTIONS, every_unknown=True,
                secret_message=lambda prop: "has an invalid value (not shown)")
        raise option_error("s3", name, message)
    opts = {**DEFAULTS, **options}
    if "endpoint_url" in options:
        _check_endpoint(opts["endpoint_url"])
    if "ca_bundle" in options and not opts["verify_ssl"]:
        raise option_error("s3", "ca_bundle", "given with verify_ssl = false; drop one of them")
    if "object_lock_mode" in options and not opts["object_lock"]:
        raise option_error("s3", "object_lock_mode", "given without object_lock = true; set both or neither")


def _check_endpoint(endpoint: str) -> None:
    """``http(s)://host[:port][/path]``; errors never echo the value (it might hold a secret)."""
    if "@" in endpoint:
        raise option_error("s3", "endpoint_url", "must not carry credentials (no '@'); use access_key_id "
                                                 "and secret_access_key")
    try:
        parts = urllib.parse.urlsplit(endpoint)
        valid = parts.scheme in ("http", "https") and bool(parts.hostname) and not parts.query \
            and not parts.fragment
        _ = parts.port  # raises ValueError if the port is not a number
    except ValueError:
        valid = False
    if not valid:
        raise option_error("s3", "endpoint_url",
                           "must be an http:// or https:// URL: scheme://host[:port][/path]")
