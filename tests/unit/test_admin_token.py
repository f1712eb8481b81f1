"""``strongroom.admin_token``: the noauth administrator token file, and the CLI's use of it."""

from __future__ import annotations

import os
import stat
import threading
from pathlib import Path

import pytest

from strongroom import admin_token, exceptions
from strongroom.client.cli import default_token


def test_first_use_creates_a_private_random_token_and_later_uses_reuse_it(tmp_path: Path) -> None:
    token, source = admin_token.resolve(None, str(tmp_path / "state"))
    assert source == str(tmp_path / "state" / "admin-token")
    assert stat.S_IMODE(os.stat(source).st_mode) == 0o600
    assert len(token) >= 32
    assert admin_token.resolve(None, str(tmp_path / "state")) == (token, source)
    assert admin_token.resolve(None, str(tmp_path / "other"))[0] != token
    assert sorted(p.name for p in (tmp_path / "state").iterdir()) == ["admin-token"]  # no temporary left


def test_processes_starting_at_once_agree_on_one_token(tmp_path: Path) -> None:
    seen: list[str] = []
    threads = [threading.Thread(target=lambda: seen.append(admin_token.load_or_create(str(tmp_path))))
               for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(seen) == 8 and len(set(seen)) == 1


def test_a_configured_token_is_used_unless_it_is_guessable(tmp_path: Path) -> None:
    assert admin_token.resolve("x" * 16, str(tmp_path)) == ("x" * 16, None)
    assert not (tmp_path / "admin-token").exists()
    with pytest.raises(exceptions.ConfigError, match="admin_token is too short .5 characters"):
        admin_token.resolve("admin", str(tmp_path))


def test_a_token_file_others_can_read_is_refused(tmp_path: Path) -> None:
    admin_token.load_or_create(str(tmp_path))
    (tmp_path / "admin-token").chmod(0o644)
    with pytest.raises(exceptions.ConfigError, match="readable by others .mode 644.: run 'chmod 600"):
        admin_token.load_or_create(str(tmp_path))


def test_cli_sends_the_state_directory_token_to_loopback_urls_only(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("STRONGROOM_STATE_DIR", raising=False)
    monkeypatch.chdir(tmp_path)
    assert default_token("http://127.0.0.1:8799") == "noauth"  # no service ever started here
    token = admin_token.load_or_create(str(tmp_path / ".strongroom"))  # the default state directory
    for url in ("http://127.0.0.1:8799", "http://localhost:1", "http://[::1]:8799", "http://127.0.0.2:80"):
        assert default_token(url) == token, url
    for url in ("http://10.0.0.5:8799", "https://api.example.com", "http://[2001:db8::1]:8799"):
        assert default_token(url) == "noauth", url
    monkeypatch.setenv("STRONGROOM_STATE_DIR", str(tmp_path / "elsewhere"))
    assert default_token("http://127.0.0.1:8799") == "noauth"
