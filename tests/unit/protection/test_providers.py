"""Provider files: what loads, and how a malformed file is reported (file, line, section, key)."""

from __future__ import annotations

from pathlib import Path

import pytest

from strongroom import exceptions
from strongroom.protection.providers import ProviderRegistry

GOOD = """
[provider]
name = Test
description = memory bank, memory volumes
id = 11111111-2222-3333-4444-555555555555
plugin = volume
bank = memory
enabled = true

[volume]
block_backend = memory
chunk_size = 65536

[memory]
capacity = 1073741824
"""


def write(tmp_path: Path, text: str, name: str = "p.conf") -> Path:
    directory = tmp_path / "providers.d"
    directory.mkdir(exist_ok=True)
    (directory / name).write_text(text)
    return directory


def load(directory: Path, tmp_path: Path) -> ProviderRegistry:
    return ProviderRegistry.load(str(directory), str(tmp_path / "state"))


def test_good_file_loads_with_schemas(tmp_path: Path) -> None:
    registry = load(write(tmp_path, GOOD), tmp_path)
    [provider] = registry.providers()
    assert provider.name == "Test"
    info = provider.to_dict()["extended_info_schema"]
    assert set(info) == {"options_schema", "restore_schema", "saved_info_schema", "verify_schema"}
    assert "restore_name" in info["restore_schema"]["OS::Cinder::Volume"]["properties"]
    assert sorted(registry.protectables) == ["OS::Cinder::Volume", "OS::Keystone::Project"]
    assert registry.dependent_types("OS::Keystone::Project") == ["OS::Cinder::Volume"]


@pytest.mark.parametrize(("change", "section", "key", "words"), [
    (("id = 11111111-2222-3333-4444-555555555555", "id = not-a-uuid"), "provider", "id", "not a UUID"),
    (("plugin = volume", "plugin = nosuchplugin"), "provider", "plugin", "nosuchplugin"),
    (("bank = memory", "bank = nosuchbank"), "provider", "bank", "strongroom.banks"),
    (("chunk_size = 65536", "chunk_size = big"), "volume", "chunk_size", "not an integer"),
    (("chunk_size = 65536", "chunk_size = 65536\ncolour = blue"), "volume", "colour", "unknown option"),
    (("block_backend = memory", "block_backend = nosuchbackend"), "volume", "block_backend", "nosuchbackend"),
    (("enabled = true", "enabled = maybe"), "provider", "enabled", "not a boolean"),
    (("name = Test\n", ""), "provider", "name", "required"),
])
def test_malformed_file_names_file_section_and_key(tmp_path: Path, change: tuple[str, str], section: str,
                                                   key: str, words: str) -> None:
    directory = write(tmp_path, GOOD.replace(*change))
    with pytest.raises(exceptions.ProviderConfigError) as info:
        load(directory, tmp_path)
    message = str(info.value)
    assert "p.conf" in message
    assert f"[{section}] {key}" in message
    assert words in message


def test_missing_required_option_is_named(tmp_path: Path) -> None:
    directory = write(tmp_path, GOOD.replace("block_backend = memory\n", ""))
    with pytest.raises(exceptions.ProviderConfigError, match=r"\[volume\] block_backend"):
        load(directory, tmp_path)


def test_duplicate_provider_id_names_both_files(tmp_path: Path) -> None:
    directory = write(tmp_path, GOOD, "a.conf")
    write(tmp_path, GOOD.replace("name = Test", "name = Other"), "b.conf")
    with pytest.raises(exceptions.ProviderConfigError) as info:
        load(directory, tmp_path)
    assert "b.conf" in str(info.value) and "a.conf" in str(info.value) and "duplicate" in str(info.value)


def test_disabled_provider_is_not_served(tmp_path: Path) -> None:
    directory = write(tmp_path, GOOD.replace("enabled = true", "enabled = false"))
    assert load(directory, tmp_path).providers() == []


def test_state_dir_is_substituted(tmp_path: Path) -> None:
    text = GOOD.replace("bank = memory", "bank = fs") + "\n[fs]\npath = {state_dir}/bank\n"
    [provider] = load(write(tmp_path, text), tmp_path).providers()
    assert provider.bank_options["path"] == str(tmp_path / "state" / "bank")


def test_shipped_local_provider_loads(tmp_path: Path) -> None:
    registry = ProviderRegistry.load(str(Path(__file__).parents[3] / "providers.d"), str(tmp_path))
    assert [p.name for p in registry.providers()] == ["Local"]


@pytest.mark.parametrize(("bank_section", "key"), [
    ("[swift]\nauth_url = http://127.0.0.1:1/v3\nauth_version = 3\nuser = u\nkey = k\ncontainer = c\n",
     "project_name"),
    ("[s3]\nbucket = backups\nendpoint_url = http://user:pw@127.0.0.1:1\n", "endpoint_url"),
    ("[fs]\npath = /tmp/x\nlease_expire_window = 100\nlease_renew_window = 30\n", "lease_expire_window"),
])
def test_bank_options_that_depend_on_each_other_are_checked_at_load(tmp_path: Path, bank_section: str,
                                                                    key: str) -> None:
    bank = bank_section.split("]", 1)[0][1:]
    text = GOOD.replace("bank = memory", f"bank = {bank}").replace("[memory]\ncapacity = 1073741824\n", bank_section)
    with pytest.raises(exceptions.ProviderConfigError) as excinfo:
        load(write(tmp_path, text), tmp_path)
    message = str(excinfo.value)
    assert "p.conf" in message and f"[{bank}]" in message and key in message
    assert "pw@" not in message  # a credential in a URL is never echoed
