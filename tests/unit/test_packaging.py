"""The built wheel carries the samples a ``pip install`` user starts from, and the code finds them there.

The wheel is built from a copy of what the build reads with ``pip wheel --no-deps --no-build-isolation``:
1.4 to 2.4 s on this machine, against 5 s with build isolation (which installs setuptools into a fresh
environment, from the network or pip's cache)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest

from strongroom import paths

ROOT = Path(__file__).resolve().parents[2]
SHARE = "strongroom-0.1.0.data/data/share/strongroom/"


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    src = tmp_path_factory.mktemp("src")
    for name in ("setup.cfg", "pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for tree in ("strongroom", "providers.d", "etc"):
        shutil.copytree(ROOT / tree, src / tree, ignore=ignore)
    out = tmp_path_factory.mktemp("wheel")
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", ".", "--no-deps", "--no-build-isolation", "-q",
                            "-w", str(out)], cwd=src, capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stderr[-3000:]
    [found] = out.glob("strongroom-*.whl")
    return found


def test_wheel_carries_the_samples_as_data_files(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        shipped = {n[len(SHARE):]: zf.read(n) for n in names if n.startswith(SHARE)}
        entry_points = zf.read("strongroom-0.1.0.dist-info/entry_points.txt").decode()
        metadata = zf.read("strongroom-0.1.0.dist-info/METADATA").decode()
    expected = {f"providers.d/{p.name}" for p in (ROOT / "providers.d").glob("*.conf")}
    expected |= {f"etc/strongroom/{p.name}" for p in (ROOT / "etc" / "strongroom").iterdir()}
    assert "etc/strongroom/api-paste.ini" in expected and "providers.d/local.conf" in expected
    assert set(shipped) == expected
    for name, content in shipped.items():
        assert content == (ROOT / name).read_bytes(), name
    assert "strongroom/db/migrations/env.py" in names  # package data as before
    for asset in ("index.html", "app.js", "style.css"):  # the dashboard's pages
        name = f"strongroom/dashboard/static/{asset}"
        assert name in names and zf_read(wheel, name) == (ROOT / name).read_bytes(), name
    assert "strongroom_database = strongroom.api.health:DatabaseCheck" in entry_points
    assert "Requires-Dist: PasteDeploy" in metadata and "Requires-Dist: oslo.middleware" in metadata


def zf_read(wheel: Path, name: str) -> bytes:
    with zipfile.ZipFile(wheel) as zf:
        return zf.read(name)


def test_installed_layout_is_found_without_a_source_tree(wheel: Path, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """Unpack the wheel's data files as pip would (under sys.prefix), with no checkout beside the package:
    the default providers directory and paste file are the installed ones, and they work."""
    from strongroom.api import pipeline
    from strongroom.config import new_conf
    from strongroom.db.api import Database
    from strongroom.protection.providers import ProviderRegistry
    from strongroom.service import resolve_providers_dir

    prefix = tmp_path / "prefix"
    with zipfile.ZipFile(wheel) as zf:
        for name in zf.namelist():
            if name.startswith(SHARE):
                target = prefix / "share" / "strongroom" / name[len(SHARE):]
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(zf.read(name))
    monkeypatch.setattr(paths, "SOURCE_ROOT", str(tmp_path / "site-packages"))  # no providers.d, no etc/
    monkeypatch.setattr(sys, "prefix", str(prefix))
    monkeypatch.chdir(tmp_path)
    conf = new_conf(overrides={"DEFAULT": {"state_dir": str(tmp_path / "state")}})
    providers = resolve_providers_dir(conf)
    assert providers == str(prefix / "share" / "strongroom" / "providers.d")
    registry: Any = ProviderRegistry.load(providers, conf.state_dir)
    assert "Local" in [p.name for p in registry.providers()]
    for provider in registry.providers():
        provider.close()
    paste = pipeline.paste_config_path(conf)
    assert paste == str(prefix / "share" / "strongroom" / "etc" / "strongroom" / "api-paste.ini")

    from strongroom.api.app import make_app

    db = Database(f"sqlite:///{tmp_path / 'meta.sqlite'}")
    db.sync()
    import webob

    app = make_app(conf, db, None)  # type: ignore[arg-type]
    assert webob.Request.blank("/v1/p/plans", headers={"X-Auth-Token": "t"}).get_response(app).status_int == 200
    db.dispose()


def test_a_missing_providers_directory_is_still_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from strongroom.config import new_conf
    from strongroom.service import resolve_providers_dir

    monkeypatch.setattr(paths, "SOURCE_ROOT", str(tmp_path / "site-packages"))
    monkeypatch.setattr(sys, "prefix", str(tmp_path / "empty-prefix"))
    monkeypatch.chdir(tmp_path)
    assert resolve_providers_dir(new_conf()) == str(tmp_path / "providers.d")
