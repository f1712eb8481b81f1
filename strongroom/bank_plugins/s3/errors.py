"""What a boto failure means for the bank, and the scrubbing of boto's logs.

5xx answers, throttling (``SlowDown``...), timeouts and connection failures
are transient (``BankTransientError``); everything else is permanent
(``BankError``).  Messages name the bucket and endpoint, never the credentials;
records of the boto/urllib3 loggers are scrubbed of the keys and request
signatures the s3 banks use (:data:`REDACTOR`).
"""

from __future__ import annotations

import re
from typing import Any

from strongroom import exceptions
from strongroom.redaction import LogRedactor

_TRANSIENT_CODES = frozenset({
    "SlowDown", "Throttling", "ThrottlingException", "ThrottledException", "RequestThrottled",
    "RequestThrottledException", "TooManyRequestsException", "RequestLimitExceeded",
    "BandwidthLimitExceeded", "RequestTimeout", "RequestTimeoutException", "InternalError",
    "ServiceUnavailable", "OperationAborted", "PriorRequestNotComplete",
})
_NOT_FOUND_CODES = frozenset({"404", "NoSuchKey", "NotFound"})

#: botocore logs, at DEBUG, the signed request (``Authorization`` header: access
#: key id and signature), the canonical request and the signature itself.  The
#: secret key is never logged by botocore; it is scrubbed anyway, with every
#: other credential value of a live s3 bank (they register with :data:`REDACTOR`).
SIGNATURE_PATTERNS = [
    (re.compile(r"(Credential=)[^/,\s'\"]+"), r"\1***"),
    (re.compile(r"((?:X-Amz-)?Signature=)[0-9a-fA-F]+"), r"\1***"),
    (re.compile(r"(Signature:\s*)[0-9a-fA-F]{16,}"), r"\1***"),
    (re.compile(r"(AWS )[^:\s'\"]+:[A-Za-z0-9+/=]+"), r"\1***:***"),  # SigV2 header
    (re.compile(r"((?i:x-amz-security-token)['\"]?\s*[:=]\s*b?['\"]?)[^'\",\s}]+"), r"\1***"),
]
REDACTOR = LogRedactor(SIGNATURE_PATTERNS)
SCRUBBED_LOGGERS = ("botocore", "boto3", "s3transfer", "urllib3")


def install_redactor() -> None:
    """Attach :data:`REDACTOR` to every boto/urllib3 logger that exists (filters are per logger)."""
    REDACTOR.install(SCRUBBED_LOGGERS)


def boto_errors() -> tuple[type[Exception], ...]:
    """The exceptions a botocore call raises for a storage failure."""
    from botocore.exceptions import BotoCoreError, ClientError

    return (BotoCoreError, ClientError, OSError)


def code(err: Any) -> str:
    """The S3 error code of a ``ClientError``."""
    return str(err.response.get("Error", {}).get("Code", ""))


def status(err: Any) -> int | None:
    """The HTTP status of a ``ClientError``."""
    value = err.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return int(value) if value is not None else None


def bank_error(err: Exception, where: str, action: str, key: str | None = None) -> exceptions.BankError:
    """The bank error that ``err`` (from boto, while doing ``action`` on ``key`` of the bank ``where``) stands for."""
    from botocore.exceptions import (
        ClientError,
        ConnectionError,
        HTTPClientError,
        IncompleteReadError,
        SSLError,
    )

    what = f"{action} {key!r}" if key is not None else action
    if isinstance(err, ClientError):
        error_code, error_status = code(err), status(err)
        if key is not None and (error_code in _NOT_FOUND_CODES
                                or (error_status == 404 and error_code != "NoSuchBucket")):
            return exceptions.BankObjectNotFound(key=key)
        message = err.response.get("Error", {}).get("Message") or ""
        label = f"HTTP {error_status}" + (f" {error_code}" if error_code and error_code != str(error_status) else "")
        reason = REDACTOR.redact(f"{where}: cannot {what}: {label}" + (f": {message}" if message else ""))
        if (error_status is not None and (error_status >= 500 or error_status in (408, 429))
                or error_code in _TRANSIENT_CODES):
            return exceptions.BankTransientError(reason=reason)
        return exceptions.BankError(reason=reason)
    reason = REDACTOR.redact(f"{where}: cannot {what}: {type(err).__name__}: {err}")
    if isinstance(err, SSLError) and "certificate" in str(err).lower():
        return exceptions.BankError(reason=reason)
    if isinstance(err, ConnectionError | HTTPClientError | IncompleteReadError | OSError):
        return exceptions.BankTransientError(reason=reason)
    return exceptions.BankError(reason=reason)
