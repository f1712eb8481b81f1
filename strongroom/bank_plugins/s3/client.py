"""The botocore S3 client of an s3 bank: its configuration, and one botocore session shared by every bank.

botocore's own retries are disabled (one attempt per call): retrying belongs to
:class:`strongroom.bank_plugins.retry.RetryingBank`.  Sessions are not
thread-safe, so clients are created under a lock; the credentials are given to
each client, never stored in the shared session.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

from strongroom import exceptions

_SESSION_LOCK = threading.Lock()
_SESSION: Any = None


def botocore_config(opts: Mapping[str, Any]) -> Any:
    """The ``botocore.config.Config`` for these options (defaults filled in)."""
    from botocore.config import Config

    settings: dict[str, Any] = {
        "region_name": opts["region_name"],
        "signature_version": opts["signature_version"],
        "s3": {"addressing_style": opts["addressing_style"]},
        "retries": {"total_max_attempts": 1, "mode": "standard"},
        "connect_timeout": opts["connect_timeout"],
        "read_timeout": opts["read_timeout"],
        "max_pool_connections": opts["max_pool_connections"],
        "user_agent_extra": "strongroom",
    }
    # botocore < 1.36 has neither setting and sends no default checksums anyway.
    for name in ("request_checksum_calculation", "response_checksum_validation"):
        if name in Config.OPTION_DEFAULTS:
            settings[name] = opts[name]
    return Config(**settings)


def create_client(**kwargs: Any) -> Any:
    """An S3 client from one shared botocore session (its loader caches the service model)."""
    global _SESSION
    with _SESSION_LOCK:
        if _SESSION is None:
            try:
                import botocore.session
            except ImportError as err:
                raise exceptions.ConfigError(
                    reason="the s3 bank needs boto3: pip install 'strongroom[s3]'") from err
            _SESSION = botocore.session.get_session()
        return _SESSION.create_client("s3", **kwargs)
