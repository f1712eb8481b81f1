"""castellan's Barbican key manager against a real Barbican (and its Keystone) on 127.0.0.1.

The server and how castellan's credential is obtained: tests/servers/barbican.py.  What a caller configures is
``barbican_server.castellan_options()``; these tests hold that configuration to the round trip the encryption
code relies on (a 256-bit AES key made, read back, deleted, then gone) by both routes a service may take:
options set on a ``ConfigOpts``, and the same options read from a configuration file.
"""

from __future__ import annotations

import pathlib

import pytest
from castellan import key_manager
from castellan.common import exception as castellan_exception
from castellan.common import utils as castellan_utils
from castellan.common.objects import symmetric_key
from oslo_config import cfg

from tests.servers.barbican import BarbicanServer, castellan_conf


def test_create_get_delete_round_trip(barbican_server: BarbicanServer) -> None:
    conf = barbican_server.castellan_conf()
    km = key_manager.API(conf)
    ctx = castellan_utils.credential_factory(conf)

    key_id = km.create_key(ctx, algorithm="AES", length=256)
    key = km.get(ctx, key_id)
    assert len(key.get_encoded() or b"") == 32
    assert isinstance(key, symmetric_key.SymmetricKey)
    assert (key.algorithm, key.bit_length) == ("AES", 256)
    shown = barbican_server.barbican_api("GET", f"/secrets/{key_id}")     # behind castellan's back
    assert shown.status_code == 200, shown.text
    assert (shown.json()["algorithm"], shown.json()["bit_length"]) == ("AES", 256)
    km.delete(ctx, key_id)
    assert barbican_server.barbican_api("GET", f"/secrets/{key_id}").status_code == 404

    with pytest.raises(castellan_exception.ManagedObjectNotFoundError):
        km.get(ctx, key_id)


def test_options_from_a_configuration_file(barbican_server: BarbicanServer, tmp_path: pathlib.Path) -> None:
    """The options as a deployment writes them: nothing registered by hand, castellan registers what it reads."""
    path = tmp_path / "castellan.conf"
    path.write_text(barbican_server.castellan_config_text())
    conf = cfg.ConfigOpts()
    conf(args=[], default_config_files=[str(path)])
    km = key_manager.API(conf)
    ctx = castellan_utils.credential_factory(conf)

    material = bytes(range(32))
    key_id = km.store(ctx, symmetric_key.SymmetricKey("AES", 256, material))
    try:
        assert km.get(ctx, key_id).get_encoded() == material
    finally:
        km.delete(ctx, key_id)
    with pytest.raises(castellan_exception.ManagedObjectNotFoundError):
        km.get(ctx, key_id)


def test_a_key_is_its_projects_alone(barbican_server: BarbicanServer) -> None:
    """Another project's user can neither read nor delete it: castellan gives Barbican's 403 as a
    KeyManagerError (not its own Forbidden, which it raises for a missing context)."""
    mine = barbican_server.castellan_conf()
    theirs = barbican_server.castellan_conf("strongroom-other")
    km = key_manager.API(mine)
    key_id = km.create_key(castellan_utils.credential_factory(mine), algorithm="AES", length=256)
    try:
        other = key_manager.API(theirs)
        with pytest.raises(castellan_exception.KeyManagerError, match="Forbidden"):
            other.get(castellan_utils.credential_factory(theirs), key_id)
        with pytest.raises(castellan_exception.KeyManagerError, match="Forbidden"):
            other.delete(castellan_utils.credential_factory(theirs), key_id)
        assert len(km.get(castellan_utils.credential_factory(mine), key_id).get_encoded() or b"") == 32
    finally:
        km.delete(castellan_utils.credential_factory(mine), key_id)


def test_a_wrong_password_is_refused_without_showing_it(barbican_server: BarbicanServer) -> None:
    options = barbican_server.castellan_options()
    options["key_manager"]["password"] = "not-the-password-0123456789"
    conf = castellan_conf(options)
    with pytest.raises(castellan_exception.KeyManagerError) as raised:
        key_manager.API(conf).create_key(castellan_utils.credential_factory(conf), algorithm="AES", length=256)
    assert "not-the-password-0123456789" not in str(raised.value)
