"""What a swiftclient/requests/Keystone failure means for the bank: its message, and whether it may pass.

5xx, 408/409/422/429/498/499, timeouts, resets and refused connections are
transient; every other failure is permanent.  Nothing here adds the bank's name
or scrubs secrets: :class:`~strongroom.bank_plugins.swift.plugin.SwiftBank` does.
"""

from __future__ import annotations

import http.client

from strongroom import exceptions

_TRANSIENT_STATUSES = frozenset({408, 409, 422, 429, 498, 499})


def _from_keystone(err: BaseException) -> bool:
    return type(err).__module__.startswith("keystoneauth1")


def status(err: BaseException) -> int | None:
    """The HTTP status of a swiftclient ``ClientException`` (None: not an HTTP answer of Swift's).

    keystoneauth's HTTP errors carry ``http_status`` too, but they are Keystone's answers: a 401 from
    Keystone is refused credentials, a 404 no missing object.
    """
    if _from_keystone(err):
        return None
    value = getattr(err, "http_status", None)
    return value if isinstance(value, int) else None


def is_http_error(err: BaseException) -> bool:
    """An HTTP answer (the connection is still fine), as opposed to a transport failure."""
    return status(err) is not None or isinstance(err, exceptions.StrongroomError)


def describe(err: BaseException) -> tuple[str, bool] | None:
    """(what went wrong, is it transient) for a storage failure; None for anything else."""
    if _from_keystone(err):
        return _describe_keystone(err)
    name = type(err).__name__
    code = status(err)
    if name == "ClientException" or code is not None:
        reason = getattr(err, "http_reason", "") or ""
        msg = str(getattr(err, "msg", "") or err)
        if code is None:
            # e.g. a token that expired during an upload swiftclient cannot replay
            return msg, "no ability to reset" in msg
        if code == 401:
            return f"authentication failed (HTTP 401 {reason})", False
        body = getattr(err, "http_response_content", b"") or b""
        if isinstance(body, bytes):
            body = body.decode("utf-8", "replace")
        detail = f"{msg}: HTTP {code} {reason}".rstrip()
        text = " ".join(str(body).split())[:200]
        if text and "<html" not in text.lower():
            detail += f": {text}"
        return detail, code >= 500 or code in _TRANSIENT_STATUSES
    try:
        import requests
        import urllib3
    except ImportError:  # pragma: no cover - swiftclient needs both
        requests = urllib3 = None  # type: ignore[assignment]
    if requests is not None and isinstance(err, requests.exceptions.SSLError):
        text = str(err)
        if "certificate" in text.lower():
            return f"TLS certificate verification failed: {text}", False
        return f"TLS error: {text}", True
    if requests is not None and isinstance(err, requests.exceptions.Timeout):
        return f"timed out ({name}: {err})", True
    if requests is not None and isinstance(err, requests.exceptions.RequestException):
        return f"connection failed ({name}: {err})", True
    if urllib3 is not None and isinstance(err, urllib3.exceptions.HTTPError):
        return f"connection failed ({name}: {err})", True
    if isinstance(err, http.client.HTTPException | OSError):
        return f"connection failed ({name}: {err})", True
    return None


def _describe_keystone(err: BaseException) -> tuple[str, bool]:
    from keystoneauth1 import exceptions as ks

    transient = (isinstance(err, ks.ConnectionError | ks.HttpServerError | ks.RequestTimeout)
                 or getattr(err, "http_status", None) in _TRANSIENT_STATUSES)
    if isinstance(err, ks.Unauthorized):
        return (f"Keystone refused the credentials (check user, key, the project and the domains): "
                f"{type(err).__name__}: {err}"), False
    return f"Keystone: {type(err).__name__}: {err}", transient
