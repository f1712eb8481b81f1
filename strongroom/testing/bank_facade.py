"""The facade part of the bank conformance suite (mixed into :class:`strongroom.testing.bank.BankConformance`).

These tests go through :class:`strongroom.bank_plugins.bank.Bank`, as
components do: key validation, leading slashes, read-only and nested sections.
"""

from __future__ import annotations

import pytest

from strongroom import exceptions
from strongroom.bank_plugins.bank import Bank


class FacadeConformance:
    """Facade tests; they use the ``facade`` fixture of :class:`~strongroom.testing.bank.BankConformance`."""

    @pytest.mark.parametrize("bad", ["", "/", "a//b", "a/./b", "a/../b", "..", "a/", "a\x00b", "a\nb",
                                     "tab\there", "del\x7f", "k" * 1025])
    def test_facade_rejects_invalid_keys_naming_them(self, facade: Bank, bad: str) -> None:
        for attempt in (lambda: facade.put(bad, b"x"), lambda: facade.get(bad), lambda: facade.head(bad),
                        lambda: facade.delete(bad), lambda: facade.exists(bad)):
            with pytest.raises(exceptions.InvalidBankKey) as excinfo:
                attempt()
            assert repr(bad) in str(excinfo.value)
        assert facade.list() == []

    def test_facade_round_trip_and_leading_slash(self, facade: Bank) -> None:
        facade.put("/checkpoints/c1/index.json", b'{"status":"available"}', {"status": "available"})
        assert facade.get("checkpoints/c1/index.json") == b'{"status":"available"}'
        assert facade.get_json("/checkpoints/c1/index.json") == {"status": "available"}
        assert facade.list("/checkpoints/") == ["checkpoints/c1/index.json"]

    def test_read_only_section_refuses_writes(self, facade: Bank) -> None:
        facade.put("checkpoints/c1/index.json", b"{}")
        section = facade.section("checkpoints/c1", read_only=True)
        with pytest.raises(exceptions.BankReadOnly) as excinfo:
            section.put("index.json", b"overwritten")
        assert "index.json" in str(excinfo.value)
        with pytest.raises(exceptions.BankReadOnly):
            section.put("new", b"x")
        with pytest.raises(exceptions.BankReadOnly):
            section.delete("index.json")
        with pytest.raises(exceptions.BankReadOnly):
            section.section("sub").put("x", b"x")
        assert section.get("index.json") == b"{}"
        assert section.list() == ["index.json"]
        assert facade.list() == ["checkpoints/c1/index.json"]

    def test_section_keys_are_relative_and_isolated(self, facade: Bank) -> None:
        facade.put("projects/p1/chunks/aa/1", b"1")
        facade.put("projects/p1-other/chunks/aa/2", b"2")
        facade.put("projects/p10/x", b"3")
        section = facade.section("projects/p1")
        assert section.list() == ["chunks/aa/1"]
        section.put("chunks/bb/2", b"22")
        assert facade.get("projects/p1/chunks/bb/2") == b"22"
        assert section.list(prefix="chunks/", marker="chunks/aa/1") == ["chunks/bb/2"]
        assert list(section.iter(page_size=1)) == ["chunks/aa/1", "chunks/bb/2"]
        assert section.section("chunks").list() == ["aa/1", "bb/2"]
