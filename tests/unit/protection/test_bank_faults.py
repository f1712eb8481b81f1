"""A bank that is full, read-only or holds damaged objects, seen through the REST API of the embedded service.

Each failure is a 4xx/503 naming the bank and the cause (never a 500); bank index and catalogue row agree
after every step, whether it completed or failed; every failed restore or verification says why.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from strongroom.testing.faults import Fault
from tests.unit.protection.embedded import PROJECT, Embedded, embedded, mounted, remount

BANK = "bank 'fs' of provider 'Local'"
pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Embedded]:
    with embedded(tmp_path) as running:
        yield running


def available(stack: Embedded, name: str = "vol", data: bytes | None = None) -> dict:
    plan = stack.plan(stack.volume(name, data if data is not None else os.urandom(100_000)))
    checkpoint = stack.protected(plan)
    assert checkpoint["status"] == "available", checkpoint
    return checkpoint


def assert_names_bank(resp, code: int, *words: str) -> str:  # noqa: ANN001
    assert resp.status_code == code, resp.text
    [body] = resp.json().values()
    message = body["message"]
    assert BANK in message, message
    for word in words:
        assert word in message, message
    return str(message)


# -- a read-only bank ---------------------------------------------------------------------------------


def test_a_delete_refused_by_a_read_only_bank_leaves_the_checkpoint_available(stack: Embedded) -> None:
    cp = available(stack)
    owner = stack.db.get_checkpoint(cp["id"]).owner_id
    stack.faults.inject(Fault.OS_ERROR, errno=errno.EROFS, operations={"put_object", "delete_object"})
    resp = stack.call("DELETE", stack.checkpoint_url(cp["id"]))
    assert_names_bank(resp, 503, "read-only")
    assert stack.checkpoint(cp["id"])["status"] == "available"
    assert stack.agree(cp["id"]) == "available"
    assert stack.db.get_checkpoint(cp["id"]).owner_id == owner

    stack.faults.clear()
    restore = stack.run("restore", cp["id"], parameters={"OS::Cinder::Volume": {"restore_name": "back"}})
    assert restore["status"] == "success", restore  # the backup is still good, and usable
    assert stack.call("DELETE", stack.checkpoint_url(cp["id"])).status_code == 202
    assert stack.wait_checkpoint(cp["id"])["status"] == "deleted"
    assert stack.agree(cp["id"]) == "deleted"


def test_a_delete_whose_index_write_fails_after_its_marker_undoes_the_marker(stack: Embedded) -> None:
    cp = available(stack)
    stack.faults.inject(Fault.OS_ERROR, errno=errno.ENOSPC, operations={"put_object"},
                        when=lambda call: call.key.endswith("index.json"))
    assert_names_bank(stack.call("DELETE", stack.checkpoint_url(cp["id"])), 503, "no space")
    assert stack.agree(cp["id"]) == "available"


def test_a_protect_refused_by_a_read_only_bank_is_a_503_and_leaves_nothing(stack: Embedded) -> None:
    plan = stack.plan(stack.volume("vol", b"x" * 5000))
    stack.faults.inject(Fault.OS_ERROR, errno=errno.EROFS, operations={"put_object"})
    assert_names_bank(stack.protect(plan), 503, "read-only")
    assert stack.db.list_checkpoints(None, None) == []
    assert not list(stack.store.active_markers())


def test_a_protect_whose_row_cannot_be_written_leaves_no_index(stack: Embedded,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    from strongroom import exceptions

    plan = stack.plan(stack.volume("vol", b"x" * 5000))

    def refuse(record, **_kw):  # noqa: ANN001, ANN003, ANN202
        raise exceptions.ServiceUnavailable(what="the metadata store", reason="injected")

    monkeypatch.setattr(stack.db, "create_checkpoint", refuse)
    assert stack.protect(plan).status_code == 503
    assert stack.store.list_ids() == [] and not list(stack.store.active_markers())


def test_a_bank_gone_read_only_during_publish_ends_both_copies_alike(stack: Embedded) -> None:
    plan = stack.plan(stack.volume("vol", os.urandom(50_000)))
    # The listings cannot be written: the index already says available, so the checkpoint is.
    stack.faults.inject(Fault.OS_ERROR, errno=errno.EROFS, operations={"put_object"},
                        when=lambda call: call.key.startswith("indices/by-"))
    cp = stack.protected(plan)
    assert cp["status"] == "available", cp
    stack.faults.clear()
    stack.services.manager.collection.collect(sweep=False)  # finishes the publish: listings, marker
    assert stack.agree(cp["id"]) == "available"
    assert stack.bank.list("indices/by-plan/")


def test_a_protect_whose_bank_turns_read_only_mid_run_ends_error_in_both_copies(stack: Embedded) -> None:
    plan = stack.plan(stack.volume("vol", os.urandom(50_000)))
    stack.faults.inject(Fault.OS_ERROR, errno=errno.EROFS, operations={"put_object"},
                        when=lambda call: "/chunks/" in call.key)
    cp = stack.protected(plan)
    assert cp["status"] == "error", cp
    assert BANK in cp["status_reason"] and "read-only" in cp["status_reason"], cp
    assert stack.agree(cp["id"]) == "error"


def test_a_protect_that_cannot_even_record_its_failure_is_settled_by_garbage_collection(
        stack: Embedded) -> None:
    plan = stack.plan(stack.volume("vol", os.urandom(50_000)))
    failed: list[str] = []

    def read_only_once_a_chunk_failed(call) -> bool:  # noqa: ANN001
        if "/chunks/" in call.key:
            failed.append(call.key)
            return True
        return bool(failed) and call.operation == "delete_object" or (
            bool(failed) and call.key.endswith("index.json"))

    stack.faults.inject(Fault.OS_ERROR, errno=errno.EROFS, operations={"put_object", "delete_object"},
                        when=read_only_once_a_chunk_failed)
    cp = stack.protected(plan)
    assert cp["status"] == "error" and BANK in cp["status_reason"], cp  # the catalogue says it at once
    assert stack.store.read(cp["id"]).status == "protecting"  # the bank could not be told
    stack.faults.clear()
    stack.services.manager.collection.collect(sweep=False)
    assert stack.agree(cp["id"]) == "error"


def test_a_restore_of_a_read_only_bank_still_works(stack: Embedded) -> None:
    cp = available(stack)
    stack.faults.inject(Fault.OS_ERROR, errno=errno.EROFS, operations={"put_object", "delete_object"})
    restore = stack.run("restore", cp["id"], parameters={"OS::Cinder::Volume": {"restore_name": "back"}})
    assert restore["status"] == "success", restore
    verification = stack.run("verification", cp["id"])
    assert verification["status"] == "success", verification


# -- a damaged index ------------------------------------------------------------------------------------


def _damage(stack: Embedded, key: str, how: str) -> None:
    path = Path(stack.bank.plugin.inner.inner._data_path(key))  # type: ignore[attr-defined]
    raw = path.read_bytes()
    if how == "truncate":
        path.write_bytes(raw[: len(raw) // 2])
    elif how == "empty":
        path.write_bytes(b"")
    else:  # one bit of the last byte flipped
        path.write_bytes(raw[:-1] + bytes([raw[-1] ^ 0x01]))


@pytest.mark.parametrize("how", ["truncate", "empty", "flip"])
@pytest.mark.parametrize("kind", ["restore", "verification"])
def test_a_damaged_index_refuses_restore_and_verify_naming_bank_and_cause(stack: Embedded, how: str,
                                                                         kind: str) -> None:
    cp = available(stack)
    _damage(stack, f"checkpoints/{cp['id']}/index.json", how)
    resp = stack.start_run(kind, cp["id"])
    message = assert_names_bank(resp, 409, cp["id"])
    assert "index.json" in message and ("corrupt" in message or "not valid" in message), message
    runs = stack.db.list_restores(None, kind=kind)
    assert runs == [] or all(r.status == "fail" and BANK in r.resources_reason.get("_", "") for r in runs)


def test_a_damaged_index_refuses_a_delete(stack: Embedded) -> None:
    cp = available(stack)
    _damage(stack, f"checkpoints/{cp['id']}/index.json", "truncate")
    assert_names_bank(stack.call("DELETE", stack.checkpoint_url(cp["id"])), 409, "index.json")
    assert stack.db.get_checkpoint(cp["id"]).status == "available"


# -- a full bank -----------------------------------------------------------------------------------------


def test_a_protect_into_a_full_bank_fails_naming_bank_and_cause(stack: Embedded) -> None:
    plan = stack.plan(stack.volume("vol", os.urandom(200_000)))
    stack.faults.inject(Fault.OS_ERROR, errno=errno.ENOSPC, operations={"put_object"},
                        when=lambda call: "/chunks/" in call.key, after=False)
    cp = stack.protected(plan)
    assert cp["status"] == "error", cp
    assert BANK in cp["status_reason"] and "no space" in cp["status_reason"].lower(), cp
    assert stack.agree(cp["id"]) == "error"


# -- real filesystems -------------------------------------------------------------------------------------


def test_a_real_read_only_and_full_filesystem(tmp_path: Path) -> None:
    with mounted(tmp_path / "bankfs", size="2m") as where, embedded(tmp_path, bank_dir=where) as stack:
        cp = available(stack, data=os.urandom(60_000))
        remount(where, read_only=True)
        try:
            assert_names_bank(stack.call("DELETE", stack.checkpoint_url(cp["id"])), 503, "read-only")
            assert stack.checkpoint(cp["id"])["status"] == "available"
            assert stack.run("verification", cp["id"])["status"] == "success"
        finally:
            remount(where, read_only=False)
        assert stack.agree(cp["id"]) == "available"
        big = stack.plan(stack.volume("big", os.urandom(3 * 1024 * 1024), size=3 * 1024 * 1024))
        failed = stack.protected(big)
        assert failed["status"] == "error" and "no space" in failed["status_reason"].lower(), failed
        assert stack.agree(failed["id"]) == "error"
        small = stack.plan(stack.volume("small", os.urandom(60_000)))
        assert stack.protected(small)["status"] == "available"  # the space came back without an operator


# -- damaged objects of every kind a restore reads ---------------------------------------------------------


def _keys(stack: Embedded, checkpoint_id: str, kind: str) -> list[str]:
    from strongroom.bank_plugins.layout import classify

    keys = stack.bank.list(f"checkpoints/{checkpoint_id}/") + stack.bank.list("projects/")
    return sorted(k for k in keys if classify(k) == kind)


def _flip_header(stack: Embedded, key: str, offset: int) -> None:
    """Flip one bit of the object's metadata header (the fs bank's data file: magic, length, JSON)."""
    from strongroom.bank_plugins.fs import MAGIC

    path = Path(stack.bank.plugin.inner.inner._data_path(key))  # type: ignore[attr-defined]
    raw = bytearray(path.read_bytes())
    raw[len(MAGIC) + 4 + offset] ^= 0x01
    path.write_bytes(bytes(raw))


DAMAGE = [("manifest header", "truncate"), ("manifest header", "flip"), ("manifest header", "empty"),
          ("manifest part", "truncate"), ("manifest part", "flip"),
          ("chunk", "truncate"), ("chunk", "flip"), ("chunk", "empty"), ("chunk", "header-key"),
          ("chunk", "header-json"),
          ("resource metadata", "truncate"), ("resource metadata", "flip"), ("resource metadata", "delete"),
          ("manifest header", "delete"), ("chunk", "delete")]


@pytest.mark.parametrize(("kind", "how"), DAMAGE)
def test_verify_finds_every_damage_a_restore_would_trip_on_and_the_checkpoint_shows_it(
        stack: Embedded, kind: str, how: str) -> None:
    cp = available(stack, data=os.urandom(3 * 65536))
    good = stack.run("verification", cp["id"])
    assert good["status"] == "success", good
    shown = stack.checkpoint(cp["id"])["extra_info"]["last_verification"]
    assert shown["status"] == "success" and shown["id"] == good["id"]
    assert stack.agree(cp["id"]) == "available"

    key = _keys(stack, cp["id"], kind)[0]
    if how == "delete":
        stack.bank.delete(key)
    elif how == "header-key":
        _flip_header(stack, key, 2)  # '{"compression"' -> '{"bompression"': still JSON
    elif how == "header-json":
        _flip_header(stack, key, 0)  # '{' -> 'z': no longer JSON
    else:
        _damage(stack, key, how)

    verification = stack.run("verification", cp["id"])
    assert verification["status"] == "fail", (key, verification)
    reasons = verification["resources_reason"]
    assert reasons and all(reasons.values()), verification
    assert "_" in reasons and BANK in reasons["_"] or key.rsplit("/", 1)[-1][:12] in reasons["_"], reasons
    checkpoint = stack.checkpoint(cp["id"])
    last = checkpoint["extra_info"]["last_verification"]
    assert last["status"] == "fail" and last["id"] == verification["id"] and last["reason"], last
    assert checkpoint["status"] == "available"  # a damaged checkpoint is reported, never changed
    assert stack.agree(cp["id"]) == "available"
    assert stack.store.read(cp["id"]).extra_info["last_verification"] == last

    if kind != "resource metadata" and how != "header-key":  # a restore infers the compression from the bytes
        restore = stack.run("restore", cp["id"], parameters={"OS::Cinder::Volume": {"restore_name": "back"}})
        assert restore["status"] == "fail" and restore["resources_reason"].get("_"), restore
        assert not (stack.volumes / "back").exists()


# -- a full bank recovers by itself ------------------------------------------------------------------------


def _chunks(stack: Embedded) -> set[str]:
    return set(stack.bank.list(f"projects/{PROJECT}/chunks/"))


def _full_after(stack: Embedded, chunks: int, *, index_too: bool = False) -> None:
    """Chunk puts fail with ENOSPC once ``chunks`` of them went through (and index writes too, until
    something was deleted, with ``index_too``)."""
    seen = {"chunks": 0, "deleted": 0}

    def full(call) -> bool:  # noqa: ANN001
        if call.operation == "delete_object":
            seen["deleted"] += 1
            return False
        if "/chunks/" in call.key:
            seen["chunks"] += 1
            return seen["chunks"] > chunks
        return index_too and call.key.endswith("index.json") and seen["chunks"] > chunks and not seen["deleted"]

    stack.faults.inject(Fault.OS_ERROR, errno=errno.ENOSPC, operations={"put_object", "delete_object"},
                        when=full)


@pytest.mark.parametrize("index_too", [False, True])
def test_a_failed_protect_releases_the_chunks_only_it_wrote_at_once(stack: Embedded, index_too: bool) -> None:
    shared = os.urandom(2 * 65536)
    kept = available(stack, "old", data=shared)
    before = _chunks(stack)
    plan = stack.plan(stack.volume("new", shared + os.urandom(6 * 65536), size=8 * 65536))
    _full_after(stack, 3, index_too=index_too)
    failed = stack.protected(plan)
    assert failed["status"] == "error" and "no space" in failed["status_reason"].lower(), failed
    assert stack.agree(failed["id"]) == "error"
    assert _chunks(stack) == before  # its own new chunks are gone; the shared ones an available checkpoint needs stay
    assert not stack.bank.list(f"checkpoints/{failed['id']}/resources/")
    stack.faults.clear()
    assert stack.run("verification", kept["id"])["status"] == "success"
    assert stack.protected(plan)["status"] == "available"  # no operator, no grace period to wait for
