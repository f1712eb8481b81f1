"""Scheduled operations through real Keystone trusts: the all-in-one under keystonemiddleware, its
``[trustee]`` the service user a deployment has (``strongroom``, role ``service`` on project ``service``, the
same user validating tokens), a real Keystone (:mod:`tests.servers.keystone`) and triggers firing every two
seconds.

A project member creates a scheduled operation with its token: Keystone then holds a trust from that user to
the service user, for the project, with impersonation; a run makes an ``available`` checkpoint in the user's
project whose operation log names the user.  The member revokes the trust: every later fire fails once (one
token request to Keystone per fire, no retries) with a message naming the operation and the revoked trust,
and after ``suspend_after_identity_failures`` such fires in a row the operation is suspended, so nothing more
is asked of Keystone; resuming it makes a new trust from the member, and runs succeed again.  A user whose
role was taken away gets a failure that says so.  Deleting an operation deletes its trust.  The trustee's
traffic goes through a proxy that counts its requests; the service's output is checked for the passwords and
tokens it handled.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests

from tests.functional.harness import PROVIDER_ID, AllInOne, write_mixed_image
from tests.servers.faultproxy import FaultProxy, Request
from tests.servers.keystone import Account, KeystoneServer

pytestmark = [pytest.mark.functional, pytest.mark.slow]

VOLUME = "OS::Cinder::Volume"
PERIOD = 2  # seconds between two fires
SUSPEND_AFTER = 3
ENGINE = f"""[operationengine]
min_interval = 1
min_window = 1
poll_interval = 0.2
claim_timeout = 3
plan_ahead = 6
suspend_after_identity_failures = {SUSPEND_AFTER}
"""


class Caller:
    def __init__(self, base: str, account: Account, token: str) -> None:
        self.base, self.account, self.token = base, account, token

    def __call__(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        url = f"{self.base}/v1/{self.account.project_id}{path}"
        return requests.request(method, url, headers={"X-Auth-Token": self.token}, timeout=30, **kwargs)

    def ok(self, method: str, path: str, body: Any = None) -> Any:
        answer = self(method, path, json=body)
        assert answer.status_code in (200, 202, 204), (method, path, answer.status_code, answer.text)
        return answer.json() if answer.content else None


class AuthCounter:
    """Records every request the trustee's Keystone client sends through the proxy (the proxy's filter is
    asked about each request; it never lets one be faulted)."""

    def __init__(self) -> None:
        self.requests: list[tuple[float, str, str]] = []

    def __call__(self, request: Request) -> bool:
        self.requests.append((time.monotonic(), request.method, request.path))
        return False

    def token_requests(self, since: float = 0.0) -> int:
        return sum(1 for at, method, path in self.requests
                   if at >= since and method == "POST" and path.endswith("/auth/tokens"))


@pytest.fixture(scope="module")
def env(keystone_server: KeystoneServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    ks = keystone_server
    service_user = ks.service_account()
    counter = AuthCounter()
    root = tmp_path_factory.mktemp("keystone-trusts")
    state = root / "state"
    (state / "volumes").mkdir(parents=True)
    write_mixed_image(state / "volumes" / "disk.img", size=2 * 1024 * 1024)
    with FaultProxy("127.0.0.1", ks.port) as proxy:
        proxy.set_faults(rate=1.0, match=counter)
        conf = root / "strongroom.conf"
        # What doc/deployment.md shows: one service user for keystonemiddleware and for the trusts.
        conf.write_text(
            f"[DEFAULT]\nstate_dir = {state}\nauth_strategy = keystone\n[api]\nbind_port = 0\n"
            f"[keystone_authtoken]\nauth_type = password\nauth_url = {ks.url}\nwww_authenticate_uri = {ks.url}\n"
            f"username = {service_user.username}\npassword = {service_user.password}\nproject_name = service\n"
            f"user_domain_name = Default\nproject_domain_name = Default\n"
            f"[trustee]\nauth_url = {proxy.url}/v3\nusername = {service_user.username}\n"
            f"password = {service_user.password}\nuser_domain_id = default\n{ENGINE}")
        service = AllInOne(state_dir=state, config_file=conf)
        service.start()
        try:
            yield {"keystone": ks, "service": service, "service_user": service_user, "counter": counter}
        finally:
            if service.process is not None and service.process.poll() is None:
                service.stop()


def _member(env: dict[str, Any], project: str) -> Caller:
    ks: KeystoneServer = env["keystone"]
    account = ks.account(project, "member")
    return Caller(env["service"].url, account, ks.token(account))


def _scheduled(call: Caller, name: str) -> dict[str, Any]:
    plan = call.ok("POST", "/plans", {"plan": {
        "name": name, "provider_id": PROVIDER_ID, "parameters": {},
        "resources": [{"id": "disk.img", "type": VOLUME, "name": "disk.img"}]}})["plan"]
    trigger = call.ok("POST", "/triggers", {"trigger_info": {"name": name, "type": "time", "properties": {
        "format": "calendar", "pattern": f"BEGIN:VEVENT\nRRULE:FREQ=SECONDLY;INTERVAL={PERIOD}\nEND:VEVENT",
        "window": 1}}})["trigger_info"]
    op = call.ok("POST", "/scheduled_operations", {"scheduled_operation": {
        "name": name, "operation_type": "protect", "trigger_id": trigger["id"],
        "operation_definition": {"provider_id": PROVIDER_ID, "plan_id": plan["id"]}}})["scheduled_operation"]
    return dict(op)


def _fires(call: Caller, op_id: str) -> list[dict[str, Any]]:
    """The operation's logs, oldest first."""
    return list(reversed(call.ok("GET", f"/scheduled_operations/{op_id}/logs")["scheduled_operation_logs"]))


def _until(what: str, check: Callable[[], Any], timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        got = check()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout:g} s: {what}")
        time.sleep(0.2)


def _finished(call: Caller, op_id: str, state: str, count: int = 1) -> list[dict[str, Any]]:
    def check() -> list[dict[str, Any]] | None:
        done = [f for f in _fires(call, op_id) if f["state"] == state]
        return done if len(done) >= count else None

    return list(_until(f"{count} {state} fire(s) of {op_id}", check))


def _trust_of(ks: KeystoneServer, account: Account) -> dict[str, Any]:
    trusts = ks.admin_call("GET", f"/OS-TRUST/trusts?trustor_user_id={account.user_id}")["trusts"]
    assert len(trusts) == 1, trusts
    return dict(ks.admin_call("GET", f"/OS-TRUST/trusts/{trusts[0]['id']}")["trust"])


def test_a_run_acts_through_a_real_trust_until_it_is_revoked(env: dict[str, Any]) -> None:
    ks: KeystoneServer = env["keystone"]
    counter: AuthCounter = env["counter"]
    member = _member(env, "trusts-a")
    op = _scheduled(member, "nightly")

    # Keystone holds the trust: from the member, to the service user, on the project, impersonating.
    trust = _trust_of(ks, member.account)
    assert trust["trustor_user_id"] == member.account.user_id
    assert trust["trustee_user_id"] == env["service_user"].user_id
    assert trust["project_id"] == member.account.project_id
    assert trust["impersonation"] is True
    assert "member" in {role["name"] for role in trust["roles"]}

    # A run makes an available checkpoint in the member's project, logged as the member's.
    fire = _finished(member, op["id"], "success")[0]
    assert fire["attempts"] == 1
    cps = f"/providers/{PROVIDER_ID}/checkpoints"
    checkpoint = member.ok("GET", f"{cps}/{fire['checkpoint_id']}")["checkpoint"]
    assert checkpoint["status"] == "available" and checkpoint["project_id"] == member.account.project_id
    assert checkpoint["extra_info"]["scheduled_operation_id"] == op["id"]
    logs = member.ok("GET", "/operation_logs", {})["operation_logs"]
    mine = [log for log in logs if log["checkpoint_id"] == checkpoint["id"]]
    assert len(mine) == 1 and mine[0]["scheduled_operation_id"] == op["id"], logs
    assert mine[0]["extra_info"]["user_id"] == member.account.user_id, mine

    # The member revokes the trust with its own token (fires claimed before that are left out of the count).
    before = {f["id"] for f in _fires(member, op["id"])}
    since = time.monotonic()
    revoked = requests.delete(f"{ks.url}/OS-TRUST/trusts/{trust['id']}", headers={"X-Auth-Token": member.token},
                              timeout=30)
    assert revoked.status_code == 204, revoked.text

    # Every fire from now on fails once, saying why, until the operation is suspended.
    suspended = _until("the operation suspended", lambda: not member.ok(
        "GET", f"/scheduled_operations/{op['id']}")["scheduled_operation"]["enabled"], timeout=60)
    assert suspended
    failed = [f for f in _fires(member, op["id"]) if f["id"] not in before and f["state"] == "failed"]
    assert len(failed) == SUSPEND_AFTER, _fires(member, op["id"])
    for f in failed:
        assert f["attempts"] == 1, f
        assert op["id"] in f["error_info"] and "trust" in f["error_info"], f
        assert "revoked" in f["error_info"], f
        assert "Traceback" not in f["error_info"]
    assert "suspended" in failed[-1]["error_info"] and str(SUSPEND_AFTER) in failed[-1]["error_info"], failed[-1]
    # One token request per failed fire (scoped to the trust), and one look at the trust (Keystone's 401 does
    # not say why), plus the engine's first token of the trustee itself, which it keeps; nothing after the
    # suspension, over several more periods.
    asked = counter.token_requests(since)
    assert asked == SUSPEND_AFTER + 1, counter.requests
    looks = [r for r in counter.requests if r[0] >= since and r[1:] == ("GET", f"/v3/OS-TRUST/trusts/{trust['id']}")]
    assert len(looks) == SUSPEND_AFTER, counter.requests
    seen = len(counter.requests)
    time.sleep(4 * PERIOD)
    assert counter.requests[seen:] == [], counter.requests[seen:]
    assert [f for f in _fires(member, op["id"]) if f["id"] not in before and f["state"] != "failed"] == []

    # The log names the operation, not a traceback, and holds no secret.
    output = "".join(env["service"].output)
    assert f"scheduled operation {op['id']} suspended" in output, output[-3000:]
    for secret in (env["service_user"].password, member.token, member.account.password, ks.admin_password):
        assert secret not in output
    assert "Traceback" not in output, output[-3000:]

    # Resumed by the member: a new trust from the member, and runs succeed again.
    resumed = member.ok("POST", f"/scheduled_operations/{op['id']}/action", {"resume": {}})
    assert resumed["scheduled_operation"]["enabled"] is True
    renewed = _trust_of(ks, member.account)
    assert renewed["id"] != trust["id"] and renewed["trustee_user_id"] == env["service_user"].user_id
    succeeded = len(_finished(member, op["id"], "success"))
    _finished(member, op["id"], "success", count=succeeded + 1)

    # Deleting the operation deletes its trust.
    member.ok("DELETE", f"/scheduled_operations/{op['id']}")
    for trust_id in (trust["id"], renewed["id"]):
        gone = requests.get(f"{ks.url}/OS-TRUST/trusts/{trust_id}", headers={"X-Auth-Token": ks.admin_token()},
                            timeout=30)
        assert gone.status_code == 404, gone.text


def test_deleting_an_operation_deletes_its_trust(env: dict[str, Any]) -> None:
    ks: KeystoneServer = env["keystone"]
    member = _member(env, "trusts-b")
    op = _scheduled(member, "to delete")
    trust = _trust_of(ks, member.account)
    member.ok("DELETE", f"/scheduled_operations/{op['id']}")
    answer = requests.get(f"{ks.url}/OS-TRUST/trusts/{trust['id']}", timeout=30,
                          headers={"X-Auth-Token": ks.admin_token()})
    assert answer.status_code == 404, answer.text


def test_a_user_whose_role_was_removed_gets_a_failure_saying_so(env: dict[str, Any]) -> None:
    ks: KeystoneServer = env["keystone"]
    member = _member(env, "trusts-c")
    op = _scheduled(member, "losing its role")
    _finished(member, op["id"], "success")
    ks.revoke_role(member.account)
    # The member's token no longer works for the API either: ask as Keystone's admin from now on.
    admin = Caller(env["service"].url, member.account, ks.admin_token())
    failed = _finished(admin, op["id"], "failed")[0]
    assert op["id"] in failed["error_info"], failed
    assert member.account.user_id in failed["error_info"], failed
    assert "role" in failed["error_info"] and member.account.project_id in failed["error_info"], failed
    admin.ok("DELETE", f"/scheduled_operations/{op['id']}")
