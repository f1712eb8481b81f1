"""The rbd backend's options and what it says without a cluster: no Ceph needed for these."""

from __future__ import annotations

import builtins
from typing import Any

import pytest

from strongroom import exceptions
from strongroom.block.rbd import RbdBackend, SnapshotName, cluster_config
from strongroom.block.rbd.layout import validate_name
from strongroom.block.rbd.options import FEATURES, parse_features

KEY = "AQCj2YpRiAe6CxAA7/ETt7Hcl9IyxyYciVs47w=="
BASE = {"mon_host": "v1:127.0.0.1:6789", "pool": "volumes"}


def test_construction_needs_no_cluster_and_hides_the_key() -> None:
    backend = RbdBackend({**BASE, "key": KEY, "client_name": "client.strongroom"})
    assert backend.config.client_name == "strongroom"
    for text in (repr(backend), str(backend), repr(backend.config), repr(backend.connection),
                 repr(backend.describe())):
        assert KEY not in text
    assert backend.config.rados_conf()["key"] == KEY  # given to librados, and only there
    backend.close()


@pytest.mark.parametrize(("options", "named"), [
    ({"pool": "volumes"}, "conf_file"),
    ({"mon_host": "m"}, "pool"),
    ({**BASE, "poool": "x"}, "poool"),
    ({**BASE, "read_workers": 0}, "read_workers"),
    ({**BASE, "image_features": "layering,warp-drive"}, "warp-drive"),
    ({**BASE, "image_features": "layering,fast-diff"}, "fast-diff"),
])
def test_bad_options_are_named(options: dict[str, Any], named: str) -> None:
    with pytest.raises(exceptions.ConfigError, match=named):
        RbdBackend(options)


@pytest.mark.parametrize("key", [12345678, "", ["AQ-secret-in-a-list"], "AQBadKeyBadKeyBadKeyBadKeyBadKeyBadKe==",
                                 "bm90IGEga2V5"])
def test_an_invalid_key_is_never_quoted(key: Any) -> None:
    with pytest.raises(exceptions.ConfigError) as err:
        RbdBackend({**BASE, "key": key})
    assert "key" in str(err.value) and "secret" in str(err.value)
    assert str(key) not in str(err.value) or key == ""


def test_timeouts_become_librados_settings() -> None:
    conf = cluster_config({**BASE, "connect_timeout": 2.5, "op_timeout": 7}).rados_conf()
    assert (conf["client_mount_timeout"], conf["rados_mon_op_timeout"], conf["rados_osd_op_timeout"]) == \
        ("3", "7", "7")
    assert parse_features("layering,exclusive-lock,object-map,fast-diff") == sum(
        FEATURES[f] for f in ("layering", "exclusive-lock", "object-map", "fast-diff"))


def test_missing_bindings_name_the_debian_package(monkeypatch: pytest.MonkeyPatch) -> None:
    real_import = builtins.__import__

    def refuse(name: str, *args: Any, **kwargs: Any) -> Any:
        if name in ("rados", "rbd"):
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", refuse)
    backend = RbdBackend(BASE)
    with pytest.raises(exceptions.ConfigError, match="python3-rados"):
        backend.list_volumes()


def test_only_our_snapshot_names_are_ours() -> None:
    ours = SnapshotName.new("disk")
    assert SnapshotName.parse(ours.id) == ours
    for other in ("disk@nightly", "disk@strongroom-nightly", "disk", "a@b@strongroom-" + ours.token,
                  f".strongroom-staged-disk@{ours.snap}", 42):
        assert SnapshotName.parse(other) is None


@pytest.mark.parametrize("name", ["a@b", ".hidden", "a/b", "x" * 201, "a\nb"])
def test_unusable_image_names(name: str) -> None:
    with pytest.raises(exceptions.InvalidInput):
        validate_name(name)
