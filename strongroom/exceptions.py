"""One exception tree for the whole project.

Each class's docstring is the user-facing message (formatted with the keyword
arguments given at raise time).  HTTP codes are not attached here: the API layer
maps classes to codes in ``strongroom.api.errors``.  Errors are either
*transient* (retrying may help) or permanent; retry wrappers decide on
``isinstance(err, TransientError)`` alone.
"""

from __future__ import annotations

import errno
from typing import Any


class StrongroomError(Exception):
    """An unexpected error occurred."""

    def __init__(self, message: str | None = None, **kwargs: Any) -> None:
        self.kwargs = kwargs
        if message is None:
            template = (self.__doc__ or "").strip().splitlines()[0] if self.__doc__ else ""
            try:
                message = template.format(**kwargs)
            except (KeyError, IndexError, ValueError):
                message = template
        self.message = message
        super().__init__(message)

    def __str__(self) -> str:
        return self.message


class TransientError(StrongroomError):
    """A temporary failure; the operation may succeed if retried."""


# -- input and lookup -------------------------------------------------------


class InvalidInput(StrongroomError):
    """Invalid input: {reason}"""


class ConfigError(StrongroomError):
    """Invalid configuration: {reason}"""


class ProviderConfigError(ConfigError):
    """{path}: [{section}] {key}: {reason}"""


class NotFound(StrongroomError):
    """{kind} {id} could not be found."""


class Conflict(StrongroomError):
    """{reason}"""


class InvalidStatusTransition(Conflict):
    """{kind} {id} cannot go from status '{current}' to '{target}'."""


class Forbidden(StrongroomError):
    """Policy does not allow this operation: {reason}"""


class ServiceUnavailable(TransientError):
    """{what} is unavailable: {reason}"""


class QuotaExceeded(StrongroomError):
    """Quota exceeded for {resource}: limit {limit}, in use {in_use}"""


# -- plugins ----------------------------------------------------------------


class PluginLoadError(ConfigError):
    """Cannot load plugin '{name}' of group '{group}'{where}: {reason}"""


# -- banks ------------------------------------------------------------------


class BankError(StrongroomError):
    """Bank error: {reason}"""


class BankTransientError(BankError, TransientError):
    """Bank temporarily unavailable: {reason}"""


class BankObjectNotFound(BankError, NotFound):
    """Bank object {key} could not be found."""


class InvalidBankKey(BankError, InvalidInput):
    """Invalid bank key {key!r}: {reason}"""


class BankReadOnly(BankError):
    """Bank section {prefix!r} is read-only; cannot write {key!r}."""


class BankRefusesWrites(BankError):
    """The bank refuses writes: {reason}"""


class BankFull(BankRefusesWrites):
    """The bank has no space left: {reason}"""


class BankNotWritable(BankRefusesWrites):
    """The bank is read-only: {reason}"""


class BankObjectCorrupt(BankError):
    """Bank object {key!r} is corrupt: {reason}"""


class BankObjectLocked(BankError, Conflict):
    """Bank object {key!r} is locked until {until}: {reason}"""


class CheckpointLocked(Conflict):
    """Checkpoint {id} is locked (immutable retention) until {until}: it cannot be deleted before then."""


#: errno values of a store that refuses writes, by the error they are raised as.
_REFUSING_ERRNOS: dict[int, type[BankRefusesWrites]] = {
    errno.ENOSPC: BankFull, errno.EDQUOT: BankFull, errno.EFBIG: BankFull,
    errno.EROFS: BankNotWritable, errno.EACCES: BankNotWritable, errno.EPERM: BankNotWritable,
}
_TRANSIENT_ERRNOS = frozenset({errno.EAGAIN, errno.EINTR, errno.ETIMEDOUT, errno.ESTALE, errno.EBUSY})


def bank_error_from_os(err: OSError, reason: str) -> BankError:
    """The bank error an ``OSError`` of a file-backed store is: transient, full, read-only, or other.

    The message says which in words ("no space left", "read-only") before ``reason``.
    """
    code = err.errno or 0
    if code in _TRANSIENT_ERRNOS:
        return BankTransientError(reason=reason)
    refusing = _REFUSING_ERRNOS.get(code)
    if refusing is not None:
        return refusing(reason=reason)
    return BankError(reason=reason)


class LeaseWindowError(ConfigError):
    """{key}: {reason}"""


class LeaseError(BankError):
    """Lease of {owner} in {bank}: {reason}"""


class LeaseHeld(LeaseError, TransientError):
    """Lease of {owner} in {bank} is held by another live process: {reason}"""


class LeaseLost(LeaseError):
    """Lease of {owner} in {bank} is no longer valid: {reason}"""


# -- block backends ---------------------------------------------------------


class BlockError(StrongroomError):
    """Block backend error: {reason}"""


class VolumeNotFound(BlockError, NotFound):
    """Volume {volume_id} could not be found."""


class SnapshotNotFound(BlockError, NotFound):
    """Snapshot {snapshot_id} could not be found."""


class VolumeExists(BlockError, Conflict):
    """Volume {volume_id} already exists."""


class VolumeInUse(BlockError, Conflict):
    """Volume {volume_id} is in use ({reason}): a restore does not overwrite it."""


class BlockUnavailable(BlockError, TransientError):
    """Block backend {backend} is unavailable: {reason}"""


# -- data path --------------------------------------------------------------


class DataIntegrityError(StrongroomError):
    """Data integrity check failed for {what}: {reason}"""


class SealedObjectRejected(DataIntegrityError):
    """Bank object {key!r} of {bank} is not authentic: {reason}"""


# -- keys -------------------------------------------------------------------


class KeyUnavailable(StrongroomError):
    """{what} of {bank} cannot be used: {reason}"""


# -- protection -------------------------------------------------------------


class ProtectionError(StrongroomError):
    """Protection operation failed: {reason}"""


class ResourceGraphCycle(ProtectionError, InvalidInput):
    """The resource graph has a cycle: {cycle}"""


class FlowFailed(ProtectionError):
    """{operation} of {resource} failed: {reason}"""
