"""The swift bank's options: their schema, the checks between them, and the swiftclient/Keystone arguments they make."""

from __future__ import annotations

import urllib.parse
from collections.abc import Mapping
from typing import Any

from strongroom import exceptions
from strongroom.bank_plugins.base import LEASE_OPTIONS
from strongroom.bank_plugins.objectstore import MiB, check_schema, option_error

#: Swift's largest single object (``max_file_size``), hence the largest segment or single PUT.
MAX_OBJECT_SIZE = 5 * 1024 * MiB
DEFAULT_TIMEOUT = 30.0
DEFAULT_LARGE_OBJECT_THRESHOLD = 16 * MiB
DEFAULT_SEGMENT_SIZE = 64 * MiB
MAX_CONTAINER_NAME_LENGTH = 256

SECRET_OPTIONS = frozenset({"key", "preauth_token"})
KEYSTONE_OPTIONS = ("project_name", "project_id", "project_domain_name", "project_domain_id",
                    "user_domain_name", "user_domain_id", "region_name", "interface")

_STRING = {"type": "string", "minLength": 1}

OPTIONS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "auth_url": _STRING,
        "auth_version": {"type": "string", "enum": ["1", "3"]},
        "user": _STRING,
        "key": _STRING,
        "project_name": _STRING,
        "project_id": _STRING,
        "project_domain_name": _STRING,
        "project_domain_id": _STRING,
        "user_domain_name": _STRING,
        "user_domain_id": _STRING,
        "region_name": _STRING,
        "interface": {"type": "string", "enum": ["public", "internal", "admin"]},
        "preauth_url": _STRING,
        "preauth_token": _STRING,
        "container": _STRING,
        "segment_container": _STRING,
        "insecure": {"type": "boolean"},
        "cacert": _STRING,
        "timeout": {"type": "number", "exclusiveMinimum": 0},
        "large_object_threshold": {"type": "integer", "minimum": MiB, "maximum": MAX_OBJECT_SIZE},
        "segment_size": {"type": "integer", "minimum": MiB, "maximum": MAX_OBJECT_SIZE},
        **LEASE_OPTIONS,
    },
    "required": ["container"],
    "additionalProperties": False,
}


def validate_options(options: Mapping[str, Any]) -> None:
    """Check ``options`` against :data:`OPTIONS_SCHEMA` and each other.

    Raises ``ConfigError`` naming the option (never quoting a secret's value).
    """
    check_schema("swift", options, OPTIONS_SCHEMA, secret_options=SECRET_OPTIONS,
                 secret_message=lambda prop: f"must be a non-empty {prop['type']}")

    def given(name: str) -> bool:
        return options.get(name) not in (None, "")

    for first, second in (("preauth_url", "preauth_token"), ("preauth_token", "preauth_url")):
        if given(first) and not given(second):
            raise _option_error(second, f"is required with {first}")
    version = str(options.get("auth_version", "1"))
    preauth = given("preauth_url")
    if given("auth_url") or not preauth or version == "3":
        for name in ("auth_url", "user", "key"):
            if not given(name):
                raise _option_error(name, f"is required (auth_version {version}"
                                          f"{'' if version == '3' else ', or preauth_url and preauth_token'})")
    if version == "1":
        for name in KEYSTONE_OPTIONS:
            if name in options:
                raise _option_error(name, "is a Keystone option: it needs auth_version 3")
    else:
        if not (given("project_name") or given("project_id")):
            raise _option_error("project_name", "auth_version 3 needs project_name or project_id")
        if given("project_name") and not (given("project_domain_name") or given("project_domain_id")):
            raise _option_error("project_domain_name",
                                "a project given by name needs project_domain_name or project_domain_id")
        if not (given("user_domain_name") or given("user_domain_id")):
            raise _option_error("user_domain_name", "a user given by name needs user_domain_name or user_domain_id")
    for name in ("auth_url", "preauth_url"):
        if given(name):
            parsed = urllib.parse.urlsplit(str(options[name]))
            if parsed.scheme not in ("http", "https") or not parsed.hostname:
                raise _option_error(name, "must be an http(s)://host[:port]/... URL")
            if "@" in parsed.netloc:
                raise _option_error(name, "must not carry credentials (use user and key)")
    container = str(options["container"])
    segments = segment_container_of(options)
    for name, value in (("container", container), ("segment_container", segments)):
        if "/" in value or len(value.encode("utf-8", "surrogatepass")) > MAX_CONTAINER_NAME_LENGTH:
            raise _option_error(name, f"{value!r} is not a Swift container name (no '/', at most "
                                      f"{MAX_CONTAINER_NAME_LENGTH} bytes)")
    if segments == container:
        raise _option_error("segment_container", "must differ from container")


def segment_container_of(options: Mapping[str, Any]) -> str:
    """Where the segments of large objects go (default ``<container>_segments``)."""
    return str(options.get("segment_container") or f"{options['container']}_segments")


def _option_error(name: str, message: str) -> exceptions.ConfigError:
    return option_error("swift", name, message)


def keystone_auth_kwargs(options: Mapping[str, Any]) -> dict[str, Any]:
    """Arguments of ``keystoneauth1.identity.v3.Password`` for these (validated, auth_version 3) options."""
    kwargs: dict[str, Any] = {"auth_url": options["auth_url"], "username": options["user"],
                              "password": options["key"]}
    for name in ("project_name", "project_id", "project_domain_name", "project_domain_id",
                 "user_domain_name", "user_domain_id"):
        if options.get(name):
            kwargs[name] = options[name]
    return kwargs


def connection_kwargs(options: Mapping[str, Any], session: Any = None) -> dict[str, Any]:
    """Arguments of ``swiftclient.client.Connection`` for these (validated) options.

    ``session`` is the shared Keystone session (``auth_version`` 3); without it
    the connection authenticates with tempauth/v1 itself.  swiftclient never
    retries (``retries=0``, no backoff): that is RetryingBank's job.
    """
    kwargs: dict[str, Any] = {
        "retries": 0, "starting_backoff": 0, "max_backoff": 0, "retry_on_ratelimit": False,
        "timeout": float(options.get("timeout", DEFAULT_TIMEOUT)),
        "insecure": bool(options.get("insecure", False)),
    }
    if options.get("cacert"):
        kwargs["cacert"] = options["cacert"]
    if options.get("preauth_url"):
        kwargs["preauthurl"] = options["preauth_url"]
        kwargs["preauthtoken"] = options["preauth_token"]
    if str(options.get("auth_version", "1")) == "3":
        kwargs["auth_version"] = "3"
        kwargs["session"] = session
        os_options = {"service_type": "object-store", "endpoint_type": options.get("interface", "public")}
        if options.get("region_name"):
            os_options["region_name"] = options["region_name"]
        kwargs["os_options"] = os_options
    elif options.get("auth_url"):
        kwargs.update(authurl=options["auth_url"], user=options["user"], key=options["key"], auth_version="1")
    return kwargs


def keystone_session(options: Mapping[str, Any]) -> Any:
    """A keystoneauth1 session (thread-safe, one token for every connection of the bank)."""
    from keystoneauth1 import session as ks_session
    from keystoneauth1.identity import v3

    verify: bool | str = False if options.get("insecure") else options.get("cacert") or True
    return ks_session.Session(auth=v3.Password(**keystone_auth_kwargs(options)), verify=verify,
                              timeout=float(options.get("timeout", DEFAULT_TIMEOUT)))


def swiftclient_connection(**kwargs: Any) -> Any:
    """A ``swiftclient.client.Connection`` whose DEBUG logs show no part of a secret header."""
    from swiftclient import client

    # swiftclient logs request headers at DEBUG with secrets cut to a prefix of up
    # to 16 characters; show none of it.
    client.logger_settings["redact_sensitive_headers"] = True
    client.logger_settings["reveal_sensitive_prefix"] = 0
    return client.Connection(**kwargs)


def host_of(url: str | None) -> str:
    """``host:port`` of ``url`` (never its userinfo)."""
    if not url:
        return "?"
    parsed = urllib.parse.urlsplit(url)
    host = parsed.hostname or "?"
    return f"{host}:{parsed.port}" if parsed.port else host
