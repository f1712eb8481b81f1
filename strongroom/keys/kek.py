"""The KEK source of every bank: castellan's key manager, as ``[key_manager]`` configures it."""

from __future__ import annotations

import logging
import threading
from typing import Any

from oslo_config import cfg

from strongroom import exceptions

LOG = logging.getLogger(__name__)

#: The castellan driver of the embedded default (``setup.cfg``'s ``castellan.drivers`` entry point).
LOCAL_BACKEND = "strongroom-local"
KEK_ALGORITHM = "AES"
KEK_BITS = 256

local_opts = [
    cfg.StrOpt("local_kek_file", default="",
               help="The file of the strongroom-local key manager's key-encryption keys (mode 0600). "
                    "Default: <state_dir>/key-encryption-keys.json.  Back it up apart from the bank: without "
                    "it no encrypted checkpoint can be read."),
]


def register_opts(conf: cfg.ConfigOpts) -> None:
    """castellan's ``[key_manager]`` options, with this project's default backend, and our own."""
    from castellan import key_manager

    try:
        conf.register_opts(key_manager.key_manager_opts, group="key_manager")
        conf.register_opts(local_opts, group="key_manager")
    except cfg.DuplicateOptError:
        pass
    conf.set_default("backend", LOCAL_BACKEND, group="key_manager")


def list_opts() -> list[tuple[str, list[cfg.Opt]]]:
    """For the sample configuration: castellan's ``backend`` as Strongroom defaults it, and our own options
    (castellan's credential and Barbican options are castellan's: ``doc/encryption.md`` shows them)."""
    backend = cfg.StrOpt("backend", default=LOCAL_BACKEND,
                         help="castellan key manager that keeps the banks' key-encryption keys: strongroom-local "
                              "(a file in the state directory; one node) or barbican (with castellan's "
                              "[key_manager] auth_* and [barbican] options; doc/encryption.md).")
    return [("key_manager", [backend, *local_opts])]


class CastellanKek:
    """Creates, reads and deletes KEKs in the configured key manager (thread-safe)."""

    def __init__(self, conf: cfg.ConfigOpts) -> None:
        register_opts(conf)
        self.conf = conf
        self.backend = str(conf.key_manager.backend)
        self.name = f"key manager {self.backend!r}"
        self._lock = threading.Lock()
        self._manager: Any = None

    def __repr__(self) -> str:
        return f"CastellanKek({self.backend!r})"

    def _api(self) -> tuple[Any, Any]:
        with self._lock:
            if self._manager is None:
                from castellan import key_manager

                try:
                    self._manager = key_manager.API(self.conf)
                except Exception as err:  # noqa: BLE001 - a driver that does not load is a configuration error
                    raise exceptions.KeyUnavailable(what=self.name, bank="any bank",
                                                    reason=f"cannot be loaded: {_reason(err)}") from None
        return self._manager, self._credentials()

    def _credentials(self) -> Any:
        if self.backend == LOCAL_BACKEND:
            return None
        from castellan.common import utils

        try:
            return utils.credential_factory(conf=self.conf)
        except Exception as err:  # noqa: BLE001 - castellan raises its own tree
            raise exceptions.KeyUnavailable(what=self.name, bank="any bank",
                                            reason=f"no credentials for it ([key_manager] auth_type): "
                                                   f"{_reason(err)}") from None

    def create(self) -> str:
        manager, context = self._api()
        try:
            return str(manager.create_key(context, algorithm=KEK_ALGORITHM, length=KEK_BITS,
                                          name="strongroom key-encryption key"))
        except Exception as err:  # noqa: BLE001
            raise exceptions.KeyUnavailable(what=f"a new key-encryption key of {self.name}", bank="the bank",
                                            reason=_reason(err)) from None

    def get(self, kek_id: str) -> bytes:
        manager, context = self._api()
        from castellan.common import exception as castellan_exception

        try:
            key = manager.get(context, kek_id)
        except castellan_exception.ManagedObjectNotFoundError:
            raise exceptions.KeyUnavailable(what=f"key-encryption key {kek_id}", bank="the bank",
                                            reason=f"{self.name} does not have it") from None
        except Exception as err:  # noqa: BLE001
            raise exceptions.KeyUnavailable(what=f"key-encryption key {kek_id}", bank="the bank",
                                            reason=f"{self.name}: {_reason(err)}") from None
        encoded = key.get_encoded() if hasattr(key, "get_encoded") else None
        if not isinstance(encoded, bytes) or len(encoded) != KEK_BITS // 8:
            raise exceptions.KeyUnavailable(what=f"key-encryption key {kek_id}", bank="the bank",
                                            reason=f"{self.name} holds no 256-bit symmetric key under that id")
        return encoded

    def delete(self, kek_id: str) -> None:
        manager, context = self._api()
        try:
            manager.delete(context, kek_id)
        except Exception as err:  # noqa: BLE001
            raise exceptions.KeyUnavailable(what=f"key-encryption key {kek_id}", bank="the bank",
                                            reason=f"{self.name} did not delete it: {_reason(err)}") from None


def _reason(err: Exception) -> str:
    """A key manager's error in one line: its class and message (castellan's messages carry no secret)."""
    text = str(err).strip().splitlines()[0] if str(err).strip() else ""
    return f"{type(err).__name__}: {text}" if text else type(err).__name__


def kek_source(conf: cfg.ConfigOpts) -> CastellanKek:
    return CastellanKek(conf)


def announce(conf: cfg.ConfigOpts) -> None:
    """Say at start-up where the key-encryption keys are, loudly when they are a local file to back up."""
    register_opts(conf)
    if conf.key_manager.backend != LOCAL_BACKEND:
        LOG.info("key-encryption keys are in key manager %r", conf.key_manager.backend)
        return
    from strongroom.keys.local import key_file

    LOG.warning("key-encryption keys are in %s (mode 0600; created on the first protect). BACK IT UP, apart "
                "from the bank: without it no encrypted checkpoint can be read, by this or any installation. "
                "Copy it when it changes (after the first protect and after 'strongroom-manage keys rotate'); "
                "doc/encryption.md says how.", key_file(conf))
