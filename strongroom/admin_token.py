"""The ``noauth`` administrator token: configured, or generated once and kept in the state directory.

With ``auth_strategy = noauth`` any token makes its caller a member of the URL's project; the one that
equals the administrator token also makes it an admin (``os-services``, ``all_tenants``, resets).  A
well-known value would give that to every local process, so when ``admin_token`` is unset the first start
generates a random one into ``<state_dir>/admin-token`` (mode 0600, created atomically, so several
processes starting at once agree) and every later start reuses it.  The CLI reads the same file when it is
given no token and talks to a loopback address (:func:`read`).

This module imports nothing of Strongroom but the exception tree: the CLI client uses it too.
"""

from __future__ import annotations

import logging
import os
import secrets
import stat

from strongroom import exceptions

LOG = logging.getLogger(__name__)

FILE_NAME = "admin-token"
#: A configured ``admin_token`` shorter than this is refused at start: it could be guessed.
MIN_LENGTH = 16
STATE_DIR_ENV = "STRONGROOM_STATE_DIR"
DEFAULT_STATE_DIR = ".strongroom"


def path(state_dir: str) -> str:
    return os.path.join(os.path.abspath(state_dir), FILE_NAME)


def resolve(configured: str | None, state_dir: str) -> tuple[str, str | None]:
    """The token to accept and the file it came from (None when configured).

    A configured token is checked for length; otherwise the file is read, or created on first use.
    """
    if configured:
        if len(configured) < MIN_LENGTH:
            raise exceptions.ConfigError(
                reason=f"admin_token is too short ({len(configured)} characters, at least {MIN_LENGTH} needed); "
                       f"leave it unset to have a random one generated in {path(state_dir)}")
        return configured, None
    token = load_or_create(state_dir)
    LOG.info("noauth administrator token in %s (mode 0600)", path(state_dir))
    return token, path(state_dir)


def load_or_create(state_dir: str) -> str:
    """The token in ``<state_dir>/admin-token``; a new random one is written there (0600) when it is absent."""
    target = path(state_dir)
    existing = _read_checked(target)
    if existing is not None:
        return existing
    os.makedirs(os.path.dirname(target), exist_ok=True)
    token = secrets.token_urlsafe(32)
    temporary = f"{target}.{os.getpid()}.{secrets.token_hex(4)}"
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(token + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        try:
            os.link(temporary, target)  # atomic, and never replaces a token another process wrote first
        except FileExistsError:
            pass
    finally:
        os.unlink(temporary)
    found = _read_checked(target)
    if found is None:
        raise exceptions.ConfigError(reason=f"the admin token file {target} is empty")
    return found


def _read_checked(target: str) -> str | None:
    try:
        info = os.stat(target)
    except FileNotFoundError:
        return None
    if info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise exceptions.ConfigError(
            reason=f"the admin token file {target} is readable by others (mode {stat.S_IMODE(info.st_mode):o}): "
                   f"run 'chmod 600 {target}', or remove it to have a new token generated")
    with open(target, encoding="utf-8") as handle:
        token = handle.read().strip()
    return token or None


def read(state_dir: str | None = None) -> str | None:
    """For the CLI: the token in the state directory (``$STRONGROOM_STATE_DIR``, else ``.strongroom``), if any."""
    directory = state_dir or os.environ.get(STATE_DIR_ENV) or DEFAULT_STATE_DIR
    try:
        with open(path(directory), encoding="utf-8") as handle:
            return handle.read().strip() or None
    except OSError:
        return None
