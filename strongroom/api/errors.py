"""Exception -> HTTP mapping: the only place in Strongroom where HTTP codes live.

Error bodies follow Karbor/Nova: ``{"badRequest": {"code": 400, "title": "Bad Request", "message": "..."}}``.
A Python exception that is not one of ours becomes a 500 with a generic message and the request id; the
traceback is logged server-side, never sent.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import oslo_messaging as messaging
import webob

from strongroom import exceptions

LOG = logging.getLogger(__name__)


class BadRequest(exceptions.InvalidInput):
    """{reason}"""


class RequestTooLarge(exceptions.InvalidInput):
    """Request body is larger than {limit} bytes."""


class MethodNotAllowed(exceptions.InvalidInput):
    """Method {method} is not allowed on {path}."""


class NotAcceptable(exceptions.InvalidInput):
    """{reason}"""


class UnsupportedMediaType(exceptions.InvalidInput):
    """{reason}"""


TITLES: dict[int, str] = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    408: "Request Timeout",
    409: "Conflict",
    413: "Request Entity Too Large",
    415: "Unsupported Media Type",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    503: "Service Unavailable",
}

# Most specific classes first: the first isinstance match wins.
_CODES: list[tuple[type[BaseException], int]] = [
    (RequestTooLarge, 413),
    (exceptions.QuotaExceeded, 413),  # Karbor's (and Nova's, Cinder's) over-quota answer
    (MethodNotAllowed, 405),
    (UnsupportedMediaType, 415),
    (exceptions.Forbidden, 403),
    (exceptions.NotFound, 404),
    (exceptions.Conflict, 409),
    # A bank object a checkpoint needs is damaged: that checkpoint cannot be used (others may).
    (exceptions.BankObjectCorrupt, 409),
    (exceptions.DataIntegrityError, 409),
    (exceptions.InvalidInput, 400),
    (exceptions.TransientError, 503),
    # The key manager cannot give a key a checkpoint needs (its KEK missing or refused): the service's state.
    (exceptions.KeyUnavailable, 503),
    # Any other bank failure (full, read-only, an I/O error) is the bank's state, not the request's fault.
    (exceptions.BankError, 503),
    (messaging.MessagingTimeout, 503),
]


def code_for(err: BaseException) -> int:
    """The HTTP status for ``err``; 500 for anything we did not expect."""
    for klass, code in _CODES:
        if isinstance(err, klass):
            return code
    return 500


def message_for(err: BaseException) -> str:
    """The user-facing message.

    Exceptions rebuilt by oslo.messaging override ``__str__`` to append the remote traceback, so the
    message is read from the ``message`` attribute our exceptions carry.
    """
    if isinstance(err, exceptions.StrongroomError):
        return err.message
    if isinstance(err, messaging.MessagingTimeout):
        return "The protection service did not answer in time; try again later."
    return "An unexpected error occurred."


def error_body(code: int, message: str) -> dict[str, Any]:
    title = TITLES.get(code) or webob.Response(status=code).status.split(" ", 1)[1]
    words = title.replace("-", " ").split()
    key = words[0].lower() + "".join(w.capitalize() for w in words[1:])  # "Bad Request" -> badRequest
    return {key: {"code": code, "title": title, "message": message}}


def error_response(code: int, message: str, headers: dict[str, str] | None = None) -> webob.Response:
    resp = webob.Response(status=code, content_type="application/json", charset="utf-8")
    resp.body = json.dumps(error_body(code, message)).encode("utf-8")
    for name, value in (headers or {}).items():
        resp.headers[name] = value
    return resp


def response_for(err: BaseException, request_id: str) -> webob.Response:
    """Render ``err``; log unexpected ones with their traceback under the request id."""
    code = code_for(err)
    if code >= 500 and code != 503:
        LOG.error("Unexpected error in request %s", request_id, exc_info=err)
        message = f"The server has either erred or is incapable of performing the requested operation " \
                  f"(request {request_id})."
    else:
        message = message_for(err)
        if code == 503:
            LOG.warning("Request %s: service unavailable: %s", request_id, message)
        else:  # the caller's mistake (or a conflict): said once, without a traceback
            LOG.info("Request %s answered %d: %s", request_id, code, message)
    headers = {"Allow": ", ".join(err.kwargs.get("allow", []))} if isinstance(err, MethodNotAllowed) else {}
    return error_response(code, message, {k: v for k, v in headers.items() if v})
