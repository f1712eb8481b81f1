"""The swift bank with Keystone v3 against a real Keystone, through a Swift whose proxy runs keystonemiddleware's
``authtoken`` and Swift's ``keystoneauth`` (``swift_keystone_server`` of :mod:`tests.servers.swift`).

- A provider whose ``[swift]`` section is the Keystone v3 example of ``doc/bank-swift.md`` (read from it)
  protects a volume through the real all-in-one and restores it byte-identical; the checkpoint is in the
  project's own account, found through Keystone's catalogue.
- A wrong password makes that provider unavailable with a reason naming its bank and Keystone's refusal;
  the password shows in no answer, no log of the service, of Swift or of Keystone.
- A member of project B is refused (403) project A's container, until A's container ACL lets B's project
  read it (then B reads but still cannot write, and a refused preauth token keeps B on A's account).
- A region without an object-store endpoint is a permanent error naming Keystone's ``EndpointNotFound``.
- The bank's token revoked in Keystone (``DELETE /v3/auth/tokens``): once Swift refuses it, the next bank
  calls authenticate again and succeed.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import random
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import requests

from strongroom import exceptions
from strongroom.bank_plugins.swift import SwiftBank
from strongroom.bank_plugins.swift.options import keystone_session
from tests.functional.banks import BankUnderTest, configure, create_plan, restore_and_hash, start_checkpoint
from tests.functional.harness import MiB, providers_once_judged, wait_for
from tests.servers.swift import SwiftServer

pytestmark = [pytest.mark.functional]


DOC = Path(__file__).resolve().parents[2] / "doc" / "bank-swift.md"
#: What the doc's example leaves to the deployment: replaced by this test's Keystone, user and container.
DEPLOYMENT_VALUES = ("auth_url", "user", "key", "project_name", "container")


def doc_keystone_example() -> dict[str, str]:
    """The ``[swift]`` section of the "Keystone v3" example in ``doc/bank-swift.md``."""
    text = DOC.read_text()
    start = text.index("```ini\n", text.index("### Keystone v3")) + len("```ini\n")
    block = text[start:text.index("```", start)]
    assert block.startswith("[swift]\n"), block
    return dict(line.split(" = ", 1) for line in block.splitlines()[1:] if line)


def _swift_bank(server: SwiftServer, container: str) -> BankUnderTest:
    return BankUnderTest("swift", server.bank_options_v3(container), lambda o: SwiftBank(o))


def _objects(server: SwiftServer, container: str, account: Any = None) -> list[str]:
    conn = server.connection(account)
    try:
        _, listing = conn.get_container(container, full_listing=True)
    finally:
        conn.close()
    return [item["name"] for item in listing]


def test_checkpoint_protected_and_restored_with_keystone_v3(swift_keystone_server: SwiftServer,
                                                            tmp_path: Path) -> None:
    server = swift_keystone_server
    container = server.new_container("aio-keystone")
    # The provider's [swift] section is the doc's example, with this Keystone, user, password and container.
    example = doc_keystone_example()
    ours = server.bank_options_v3(container)
    assert set(example) == set(ours), "doc/bank-swift.md's Keystone v3 example and the test's options differ"
    assert example["auth_version"] == "3"
    bank = BankUnderTest("swift", {**example, **{name: ours[name] for name in DEPLOYMENT_VALUES}},
                         lambda o: SwiftBank(o))
    service, provider = configure(tmp_path, bank, "aio-swift-keystone")
    data = random.Random(5).randbytes(6 * MiB)
    (service.volumes / "vol.img").write_bytes(data)
    service.start()
    try:
        api = service.api()
        cid = start_checkpoint(api, provider, create_plan(api, provider, "vol.img"))
        body = wait_for(f"{api}/providers/{provider}/checkpoints/{cid}", "checkpoint", {"available", "error"})
        assert body["status"] == "available", body
        digest, restore = restore_and_hash(service, provider, cid, "back.img")
        assert restore["status"] == "success", restore
        assert digest == hashlib.sha256(data).hexdigest()
    finally:
        service.stop()
    # In the project's own account (AUTH_<project id>, the catalogue's endpoint), seen as that project's user.
    names = _objects(server, container)
    assert any(name.startswith(f"checkpoints/{cid}/") for name in names), names[:20]
    assert bank.options["key"] not in "".join(service.output)


def test_wrong_password_names_the_bank_and_never_the_password(swift_keystone_server: SwiftServer,
                                                              tmp_path: Path) -> None:
    server = swift_keystone_server
    assert server.keystone is not None
    wrong = "Wr0ng-pa55word-never-shown-" + random.Random().randbytes(6).hex()
    bank = _swift_bank(server, server.new_container("wrong-password"))
    bank.options["key"] = wrong
    # The plugin itself: a permanent error naming the container and Keystone's refusal.
    with pytest.raises(exceptions.BankError) as caught:
        SwiftBank(bank.options).put_object("k", b"v")
    assert not isinstance(caught.value, exceptions.BankTransientError)
    message = str(caught.value)
    keystone_host = server.keystone.url.split("/")[2]
    assert f"swift container {bank.options['container']!r} (Keystone at {keystone_host})" in message, message
    assert "Keystone refused the credentials" in message and "HTTP 401" in message, message
    assert wrong not in message
    # Through the service: the provider is unavailable, naming its bank; a checkpoint is refused naming it.
    service, provider = configure(tmp_path, bank, "aio-swift-wrong-password")
    (service.volumes / "vol.img").write_bytes(b"\0" * MiB)
    service.start()
    try:
        api = service.api()
        listed = providers_once_judged(api, provider)
        reason = listed[provider]["status_reason"] or ""
        assert listed[provider]["status"] == "unavailable"
        assert "bank 'swift' of provider 'Test swift'" in reason, reason
        assert "Keystone refused the credentials" in reason, reason
        refused = requests.post(f"{api}/providers/{provider}/checkpoints", timeout=60,
                                json={"checkpoint": {"plan_id": create_plan(api, provider, "vol.img")}})
        assert refused.status_code in (400, 403, 409, 503), refused.text
        assert "bank 'swift' of provider 'Test swift'" in refused.text, refused.text
    finally:
        service.stop()
    for where, text in (("the provider listing", str(listed)), ("the refusal", refused.text),
                        ("the service's output", "".join(service.output)),
                        ("Swift's log", server.log_path.read_text(errors="replace")),
                        ("Keystone's log", server.keystone.log_path().read_text(errors="replace"))):
        assert wrong not in text, where


def test_no_object_store_endpoint_in_the_region_is_a_clear_error(swift_keystone_server: SwiftServer) -> None:
    server = swift_keystone_server
    bank = SwiftBank(server.bank_options_v3(server.new_container("no-endpoint"), region_name="RegionNowhere"))
    with pytest.raises(exceptions.BankError) as caught:
        bank.list_objects()
    assert not isinstance(caught.value, exceptions.BankTransientError)
    assert "EndpointNotFound: public endpoint for object-store service in RegionNowhere region not found" in str(
        caught.value), caught.value
    # The catalogue's own region works.
    assert SwiftBank(server.bank_options_v3(bank.container)).list_objects() == []


def test_project_b_cannot_read_project_a_unless_a_container_acl_lets_it(swift_keystone_server: SwiftServer) -> None:
    server = swift_keystone_server
    assert server.keystone is not None
    a = server.keystone_account("swift-acl-a")
    b = server.keystone_account("swift-acl-b")
    container = server.new_container("acl")
    SwiftBank(server.bank_options_v3(container, a)).put_object("secret", b"A's data")
    # A reader of A is no operator of A's account (operator_roles = admin, member): refused.
    with pytest.raises(exceptions.BankError, match="403"):
        SwiftBank(server.bank_options_v3(container, server.keystone_account("swift-acl-a", "reader"))).list_objects()
    # B's own bank on that container name is B's own account: empty.
    assert SwiftBank(server.bank_options_v3(container, b)).list_objects() == []
    # B's token on A's account and container: refused by keystoneauth.
    b_on_a = SwiftBank(server.bank_options_v3(container, b, preauth_url=server.account_url(a),
                                              preauth_token=server.keystone.token(b)))
    for call in (lambda: b_on_a.get_object("secret"), lambda: b_on_a.list_objects(),
                 lambda: b_on_a.put_object("planted", b"B's data")):
        with pytest.raises(exceptions.BankError) as caught:
            call()
        assert "403" in str(caught.value) and repr(container) in str(caught.value), caught.value
    # A lets B's project read (a keystoneauth ACL: <project id>:<user id or *>): B reads, still cannot write.
    conn = server.connection(a)
    try:
        conn.post_container(container, {"X-Container-Read": f"{b.project_id}:*"})
    finally:
        conn.close()
    assert b_on_a.get_object("secret") == b"A's data"
    with pytest.raises(exceptions.BankError, match="403"):
        b_on_a.put_object("planted", b"B's data")
    # A preauth token Swift refuses (expired): B authenticates again and stays on A's account.
    stale = SwiftBank(server.bank_options_v3(container, b, preauth_url=server.account_url(a),
                                             preauth_token="gAAAAAB-expired-token"))
    assert stale.get_object("secret") == b"A's data"
    assert _objects(server, container, a) == ["secret"]


def _status_with_token(url: str, token: str) -> int:
    request = urllib.request.Request(url, method="HEAD", headers={"X-Auth-Token": token})
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return int(answer.status)
    except urllib.error.HTTPError as err:
        return err.code


def test_revoked_token_makes_the_bank_authenticate_again(swift_keystone_server: SwiftServer) -> None:
    server = swift_keystone_server
    assert server.keystone is not None
    sessions: list[Any] = []

    def session_factory(options: Any) -> Any:
        sessions.append(keystone_session(options))
        return sessions[-1]

    bank = SwiftBank(server.bank_options_v3(server.new_container("revoked"), large_object_threshold=MiB,
                                            segment_size=MiB), session_factory=session_factory)
    big = random.Random(3).randbytes(2 * MiB + 7)
    with concurrent.futures.ThreadPoolExecutor(4) as pool:  # several pooled connections hold the token
        list(pool.map(lambda i: bank.put_object(f"small/{i}", b"%d" % i), range(8)))
    bank.put_object("big", big)
    assert len(sessions) == 1
    token = sessions[0].get_token()
    assert _status_with_token(server.account_url(), token) == 204

    server.keystone.revoke_token(token)
    # Swift's authtoken trusts a validated token for token_cache_time seconds: wait until it refuses this one.
    deadline = time.monotonic() + server.token_cache_time + 30
    while _status_with_token(server.account_url(), token) != 401:
        assert time.monotonic() < deadline, "Swift still accepts the revoked token"
        time.sleep(0.2)

    # Each pooled connection meets a 401 once, makes the session fetch a new token, and goes on.
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        assert list(pool.map(lambda i: bank.get_object(f"small/{i}"), range(8))) == [b"%d" % i for i in range(8)]
    assert bank.get_object("big") == big
    bank.put_object("big", big[::-1])  # a segmented upload after the renewal
    assert bank.get_object("big") == big[::-1]
    assert bank.list_objects("small/") == [f"small/{i}" for i in range(8)]
    renewed = sessions[0].get_token()
    assert renewed != token and len(sessions) == 1
    assert _status_with_token(server.account_url(), renewed) == 204
    log = server.log_path.read_text(errors="replace")
    assert token not in log and renewed not in log  # Swift's authtoken logged refusals, never the tokens
