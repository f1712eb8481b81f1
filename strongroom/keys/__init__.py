"""Key-encryption keys through castellan, OpenStack's key-manager interface.

A bank's data keys are wrapped by a KEK (:mod:`strongroom.bank_plugins.keyring`); the KEK lives in a key
manager that castellan reaches: Barbican when deployed (``[key_manager] backend = barbican``), or, by
default, :class:`strongroom.keys.local.LocalKeyManager`, a castellan driver over one file with mode 0600 in
the state directory.  ``doc/encryption.md`` says how to back it up.
"""

from __future__ import annotations

from strongroom.keys.kek import LOCAL_BACKEND, CastellanKek, announce, kek_source, list_opts, register_opts

__all__ = ["LOCAL_BACKEND", "CastellanKek", "announce", "kek_source", "list_opts", "register_opts"]
