"""The Bank/BankSection facade: key validation at the boundary, sections, read-only sections."""

from __future__ import annotations

import pytest

from strongroom import exceptions
from strongroom.bank_plugins.bank import Bank, normalize_key, normalize_prefix
from strongroom.bank_plugins.memory import MemoryBank


@pytest.fixture
def bank() -> Bank:
    return Bank(MemoryBank({}), name="unit")


@pytest.mark.parametrize("key, expected", [
    ("a", "a"),
    ("/a/b", "a/b"),
    ("checkpoints/c1/index.json", "checkpoints/c1/index.json"),
    ("a/.hidden/..x/x..", "a/.hidden/..x/x.."),
    ("caf\u00e9/\U0001f600", "caf\u00e9/\U0001f600"),
    ("k" * 1024, "k" * 1024),
    ("\u00e9" * 512, "\u00e9" * 512),  # exactly 1024 UTF-8 bytes
])
def test_valid_keys(key: str, expected: str) -> None:
    assert normalize_key(key) == expected


@pytest.mark.parametrize("key, reason", [
    ("", "empty"),
    ("/", "empty"),
    ("a//b", "segment ''"),
    ("//a", "segment ''"),
    ("a/", "segment ''"),
    ("a/./b", "segment '.'"),
    ("../etc/passwd", "segment '..'"),
    ("a\x00b", "control"),
    ("a\x1fb", "control"),
    ("a\x7fb", "control"),
    ("line\nbreak", "control"),
    ("k" * 1025, "longer than 1024"),
    ("\u00e9" * 513, "longer than 1024"),
])
def test_invalid_keys_are_rejected_with_the_key_and_reason(bank: Bank, key: str, reason: str) -> None:
    with pytest.raises(exceptions.InvalidBankKey) as excinfo:
        bank.put(key, b"x")
    message = str(excinfo.value)
    assert repr(key) in message
    assert reason in message
    assert bank.list() == []


def test_invalid_key_is_also_invalid_input() -> None:
    with pytest.raises(exceptions.InvalidInput):
        normalize_key("a//b")


def test_non_string_key_is_rejected(bank: Bank) -> None:
    with pytest.raises(exceptions.InvalidBankKey):
        bank.get(b"bytes-key")  # type: ignore[arg-type]


@pytest.mark.parametrize("prefix, expected", [
    ("", ""), ("/", ""), ("a", "a"), ("a/", "a/"), ("/a/b", "a/b"),
    ("a/.", "a/."), ("a/..", "a/.."), (".", "."),  # partial segments: plain string prefixes
])
def test_valid_prefixes(prefix: str, expected: str) -> None:
    assert normalize_prefix(prefix) == expected


@pytest.mark.parametrize("prefix", ["a//", "//a", "a/../b", "./x", "a\nb", "a/b\x00", "p" * 1025])
def test_invalid_prefixes_name_the_prefix(bank: Bank, prefix: str) -> None:
    with pytest.raises(exceptions.InvalidBankKey) as excinfo:
        bank.list(prefix)
    assert repr(prefix) in str(excinfo.value)


def test_partial_dot_segment_prefix_lists_hidden_keys(bank: Bank) -> None:
    bank.put("a/.hidden", b"")
    bank.put("a/visible", b"")
    assert bank.list("a/.") == ["a/.hidden"]


def test_metadata_keys_and_values_are_validated(bank: Bank) -> None:
    bank.put("ok", b"", {"owner-id": "x", "v2": ""})
    assert bank.head("ok").metadata == {"owner-id": "x", "v2": ""}
    for bad in ({"Upper": "x"}, {"under_score": "x"}, {"": "x"}, {"sp ace": "x"}):
        with pytest.raises(exceptions.InvalidInput) as excinfo:
            bank.put("bad", b"", bad)
        assert repr(next(iter(bad))) in str(excinfo.value)
    with pytest.raises(exceptions.InvalidInput, match="'size' must be a string"):
        bank.put("bad", b"", {"size": 3})  # type: ignore[dict-item]
    assert not bank.exists("bad")


def test_negative_limit_and_empty_pages_are_refused(bank: Bank) -> None:
    with pytest.raises(exceptions.InvalidInput):
        bank.list(limit=-1)
    with pytest.raises(exceptions.InvalidInput):
        list(bank.iter(page_size=0))
    assert bank.list(limit=0) == []


def test_json_helpers(bank: Bank) -> None:
    bank.put_json("doc.json", {"b": [1, 2], "a": "\u00e9"})
    assert bank.get("doc.json") == b'{"a":"\\u00e9","b":[1,2]}'
    assert bank.get_json("doc.json") == {"a": "\u00e9", "b": [1, 2]}
    bank.put("broken.json", b"{nope")
    with pytest.raises(exceptions.BankError, match="broken.json"):
        bank.get_json("broken.json")


def test_section_maps_keys_both_ways(bank: Bank) -> None:
    section = bank.section("/checkpoints/c1/")
    assert section.prefix == "checkpoints/c1/"
    section.put("index.json", b"{}")
    section.put("resources/volume#1/manifest", b"m")
    assert bank.list() == ["checkpoints/c1/index.json", "checkpoints/c1/resources/volume#1/manifest"]
    assert section.list() == ["index.json", "resources/volume#1/manifest"]
    assert section.list(prefix="resources/") == ["resources/volume#1/manifest"]
    assert section.list(marker="index.json") == ["resources/volume#1/manifest"]
    assert section.list(limit=1) == ["index.json"]
    assert list(section.iter(page_size=1)) == ["index.json", "resources/volume#1/manifest"]
    assert section.get("index.json") == b"{}"
    assert section.exists("index.json") and not section.exists("missing")
    assert section.head("index.json").key == "checkpoints/c1/index.json"
    with section.open("resources/volume#1/manifest") as stream:
        assert stream.read() == b"m"
    section.delete("index.json")
    assert bank.list() == ["checkpoints/c1/resources/volume#1/manifest"]


def test_section_does_not_see_sibling_prefixes(bank: Bank) -> None:
    bank.put("p1/x", b"")
    bank.put("p10/y", b"")
    bank.put("p1-z/w", b"")
    bank.put("p1", b"")
    assert bank.section("p1").list() == ["x"]


def test_section_validates_relative_keys(bank: Bank) -> None:
    section = bank.section("s")
    for bad in ("", "../escape", "a//b", "a/"):
        with pytest.raises(exceptions.InvalidBankKey):
            section.put(bad, b"x")
    with pytest.raises(exceptions.InvalidBankKey):
        bank.section("a/../b")
    assert bank.list() == []


def test_nested_sections(bank: Bank) -> None:
    inner = bank.section("projects/p1").section("chunks/ab")
    inner.put("abcdef", b"chunk")
    assert bank.get("projects/p1/chunks/ab/abcdef") == b"chunk"
    assert inner.list() == ["abcdef"]


def test_read_only_section_refuses_writes_and_says_where(bank: Bank) -> None:
    bank.put("checkpoints/c1/index.json", b"{}")
    ro = bank.section("checkpoints/c1", read_only=True)
    with pytest.raises(exceptions.BankReadOnly) as excinfo:
        ro.put_json("index.json", {"status": "deleted"})
    assert "checkpoints/c1/" in str(excinfo.value) and "index.json" in str(excinfo.value)
    with pytest.raises(exceptions.BankReadOnly):
        ro.delete("index.json")
    assert bank.get("checkpoints/c1/index.json") == b"{}"
    assert ro.get_json("index.json") == {}
    assert "ro" in repr(ro)


def test_read_only_is_inherited_by_subsections(bank: Bank) -> None:
    ro = bank.section("a", read_only=True)
    sub = ro.section("b")  # asking for a writable subsection does not lift read-only
    assert sub.read_only
    with pytest.raises(exceptions.BankReadOnly):
        sub.put("c", b"")
    rw = bank.section("a").section("b", read_only=True)
    assert rw.read_only


def test_repr_names_the_bank() -> None:
    assert repr(Bank(MemoryBank({}), name="local")) == "Bank('local')"
    assert repr(Bank(MemoryBank({}))) == "Bank('MemoryBank')"
