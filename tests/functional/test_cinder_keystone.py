"""The cinder block backend against a real Cinder behind a real Keystone, through the all-in-one under Keystone.

Cinder (``cinder_keystone_service``) runs with ``auth_strategy = keystone``: keystonemiddleware validates each
token as its service user ``cinder``, and Cinder is in Keystone's catalogue as ``block-storage``.  The
provider's ``[cinder]`` section gives a password identity (``auth_type = password``) and no ``endpoint``: the
backend finds Cinder in the catalogue.  The all-in-one itself runs under keystonemiddleware too, so each REST
call is made with a real token of a project's member.

What a user would notice, and so what is asserted:

* project A's member lists A's Cinder volumes, protects one (a 1 GiB volume with data written through its
  RBD image) into an fs bank and restores it as a new volume Cinder reports ``available`` in project A, byte
  for byte the volume at its protect;
* project B's member lists only B's volume: never A's, not even by its id;
* with a wrong password the listing is a 503 naming the cinder block backend and Keystone, and the password
  is in neither the answer nor the service's output;
* a backend whose identity holds no admin role is refused another project's listing (``Forbidden`` naming
  both projects and the role, where Cinder answers 400 to the ``project_id`` filter) and making a volume there,
  and does not read that project's volume by its id;
* with ``act_as_user``, the backend acts with a user's token, and with a scheduled run's trust token, in that
  user's project; and through the API (the token carried to the protection service over RPC) B's member
  protects and restores B's volume through a provider whose identity is a plain member of A, the token in no
  file and none of the output.
"""

from __future__ import annotations

import hashlib
import random
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from strongroom import exceptions
from strongroom.block.cinder import CinderBackend
from tests.functional.banks import bank_under_test
from tests.functional.harness import AllInOne, MiB
from tests.servers.cinder import CinderService
from tests.servers.keystone import Account, KeystoneServer

# The first test also starts Ceph, Keystone and this Cinder (about 65 s at load 12; more under make test's workers).
pytestmark = [pytest.mark.functional, pytest.mark.slow, pytest.mark.timeout(600)]

GiB = 1 << 30
VOLUME = "OS::Cinder::Volume"


def digest(handle: Any) -> str:
    sha = hashlib.sha256()
    for offset in range(0, handle.size(), 32 * MiB):
        sha.update(handle.read(offset, 32 * MiB))
    return sha.hexdigest()


class Caller:
    """REST calls to the all-in-one as one Keystone account (its project-scoped token in the URL's project)."""

    def __init__(self, base: str, account: Account, token: str) -> None:
        self.base, self.account, self.token = base, account, token

    def __call__(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        return requests.request(method, f"{self.base}/v1/{self.account.project_id}{path}", timeout=60,
                                headers={"X-Auth-Token": self.token}, **kwargs)

    def wait(self, path: str, key: str, done: set[str], timeout: float = 300) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            body = self("GET", path).json()[key]
            if body["status"] in done or time.monotonic() > deadline:
                return dict(body)
            time.sleep(0.3)


def write_config(root: Path, ks: KeystoneServer, cinder_section: str, bank_section: str) -> tuple[AllInOne, str]:
    """An all-in-one (not started) under keystonemiddleware with one provider whose volumes are Cinder's."""
    state, providers = root / "state", root / "providers.d"
    state.mkdir(parents=True)
    providers.mkdir()
    provider_id = str(uuid.uuid4())
    (providers / "cinder.conf").write_text(
        f"[provider]\nname = OpenStack\nid = {provider_id}\nplugin = volume\nbank = fs\n\n"
        f"[volume]\nblock_backend = cinder\n\n[cinder]\n{cinder_section}\n" + bank_section)
    authtoken = "".join(f"{name} = {value}\n" for name, value in ks.authtoken_options().items())
    conf = root / "strongroom.conf"
    conf.write_text(f"[DEFAULT]\nstate_dir = {state}\nproviders_dir = {providers}\nauth_strategy = keystone\n"
                    f"[api]\nbind_port = 0\n[keystone_authtoken]\n{authtoken}"
                    f"[trustee]\nauth_url = {ks.url}\nusername = admin\npassword = {ks.admin_password}\n")
    return AllInOne(state_dir=state, config_file=conf), provider_id


def cinder_section(cinder: CinderService, identity: Account, password: str | None = None) -> str:
    """The provider's ``[cinder]``: a password identity, Cinder from the catalogue (no ``endpoint``)."""
    assert cinder.keystone is not None
    return (f"auth_type = password\nauth_url = {cinder.keystone.url}\nusername = {identity.username}\n"
            f"password = {password or identity.password}\nuser_domain_name = Default\n"
            f"project_name = {identity.project}\nproject_domain_name = Default\n"
            f"rbd_mon_host = {cinder.ceph.mon_host}\nrbd_client_name = strongroom\n"
            f"rbd_keyring = {cinder.ceph.client_keyring}\nstatus_timeout = 60\ntimeout = 30\n")


@pytest.fixture
def projects(cinder_keystone_service: CinderService) -> Iterator[dict[str, Any]]:
    """Projects A and B with a member each and a volume each (A's holding data); the volumes are deleted
    afterwards, with any the test made in either project."""
    cinder = cinder_keystone_service
    ks = cinder.keystone
    assert ks is not None
    suffix = uuid.uuid4().hex[:6]
    a, b = ks.account(f"cks-a-{suffix}"), ks.account(f"cks-b-{suffix}")
    volume_a = cinder.create_volume(1, "database", project=a.project)
    volume_b = cinder.create_volume(1, "theirs", project=b.project)
    try:
        yield {"a": a, "b": b, "volume_a": volume_a, "volume_b": volume_b, "keystone": ks}
    finally:
        for account in (a, b):
            for volume in cinder.api("GET", "/volumes", account.project).json()["volumes"]:
                cinder.delete_volume(volume["id"], project=account.project)


def test_protect_and_restore_through_the_catalogue_each_project_seeing_its_own(
        cinder_keystone_service: CinderService, projects: dict[str, Any], request: pytest.FixtureRequest,
        tmp_path: Path) -> None:
    import rbd

    cinder, ks = cinder_keystone_service, projects["keystone"]
    a, b, source, theirs = projects["a"], projects["b"], projects["volume_a"], projects["volume_b"]
    # Strongroom's identity for A's volumes: an admin (so that other projects' listings are answered for
    # them, with all_tenants) scoped to project A.
    identity = ks.service_user(f"strongroom-{uuid.uuid4().hex[:6]}", project=a.project, role="admin")
    ioctx = cinder.ceph.admin().open_ioctx(cinder.pool)
    try:
        with rbd.Image(ioctx, f"volume-{source['id']}") as image:
            rng = random.Random(14)
            image.write(rng.randbytes(3 * MiB), 0)
            image.write(rng.randbytes(MiB), 500 * MiB + 4321)
            image.write(b"the last bytes", GiB - 14)
            image.flush()
            original = digest(image)

        bank = bank_under_test("fs", request, tmp_path)
        service, provider_id = write_config(tmp_path, ks, cinder_section(cinder, identity), bank.section())
        service.start()
        try:
            member_a = Caller(service.url, a, ks.token(a))
            member_b = Caller(service.url, b, ks.token(b))
            listed = member_a("GET", f"/protectables/{VOLUME}/instances")
            assert listed.status_code == 200, listed.text
            assert [(i["id"], i["name"]) for i in listed.json()["instances"]] == [(source["id"], "database")]
            seen_by_b = member_b("GET", f"/protectables/{VOLUME}/instances")
            assert seen_by_b.status_code == 200, seen_by_b.text
            assert [(i["id"], i["name"]) for i in seen_by_b.json()["instances"]] == [(theirs["id"], "theirs")]
            assert member_b("GET", f"/protectables/{VOLUME}/instances/{source['id']}").status_code == 404
            assert member_a("GET", f"/protectables/{VOLUME}/instances/{theirs['id']}").status_code == 404

            plan = member_a("POST", "/plans", json={"plan": {
                "name": "cinder-keystone", "provider_id": provider_id, "parameters": {},
                "resources": [{"id": source["id"], "type": VOLUME, "name": "database"}]}})
            assert plan.status_code == 200, plan.text
            cps = f"/providers/{provider_id}/checkpoints"
            began = time.monotonic()
            made = member_a("POST", cps, json={"checkpoint": {"plan_id": plan.json()["plan"]["id"]}})
            assert made.status_code == 200, made.text
            cp = member_a.wait(f"{cps}/{made.json()['checkpoint']['id']}", "checkpoint", {"available", "error"})
            protect_seconds = time.monotonic() - began
            assert cp["status"] == "available", cp
            assert cp["extra_info"]["protected"][f"{VOLUME}#{source['id']}"]["mode"] == "full"

            began = time.monotonic()
            restore = member_a("POST", "/restores", json={"restore": {
                "provider_id": provider_id, "checkpoint_id": cp["id"], "restore_target": None,
                "parameters": {VOLUME: {"restore_name": "database-restored"}}}})
            assert restore.status_code == 200, restore.text
            done = member_a.wait(f"/restores/{restore.json()['restore']['id']}", "restore", {"success", "fail"})
            restore_seconds = time.monotonic() - began
            assert done["status"] == "success", done
        finally:
            service.stop()
        volumes = cinder.api("GET", "/volumes/detail", a.project).json()["volumes"]
        restored = [v for v in volumes if v["name"] == "database-restored"]
        assert len(restored) == 1, volumes
        assert (restored[0]["status"], restored[0]["size"]) == ("available", 1)
        assert [v["name"] for v in cinder.api("GET", "/volumes", b.project).json()["volumes"]] == ["theirs"]
        with rbd.Image(ioctx, f"volume-{restored[0]['id']}", read_only=True) as image:
            assert digest(image) == original, "the restored volume is not the volume at its protect"
        output = "".join(service.output)
        assert identity.password not in output and a.password not in output
        print(f"\ncinder behind Keystone, 1 GiB volume (5 MiB written): protect {protect_seconds:.1f} s, "
              f"restore {restore_seconds:.1f} s; Cinder up in {cinder.start_seconds:.1f} s")
    finally:
        ioctx.close()


def test_a_wrong_password_is_a_503_naming_the_backend_and_never_the_password(
        cinder_keystone_service: CinderService, projects: dict[str, Any], request: pytest.FixtureRequest,
        tmp_path: Path) -> None:
    cinder, ks, a = cinder_keystone_service, projects["keystone"], projects["a"]
    identity = ks.service_user(f"strongroom-{uuid.uuid4().hex[:6]}", project=a.project, role="admin")
    wrong = f"not-{identity.password}"
    bank = bank_under_test("fs", request, tmp_path)
    service, _ = write_config(tmp_path, ks, cinder_section(cinder, identity, password=wrong), bank.section())
    service.start()
    try:
        answer = Caller(service.url, a, ks.token(a))("GET", f"/protectables/{VOLUME}/instances")
    finally:
        service.stop()
    assert answer.status_code == 503, answer.text
    message = answer.json()["serviceUnavailable"]["message"]
    assert "cinder block backend" in message and "Keystone" in message and identity.username in message, message
    for secret in (wrong, identity.password):
        assert secret not in answer.text
        assert secret not in "".join(service.output)


def test_an_identity_without_admin_sees_nothing_of_another_project_and_makes_nothing_there(
        cinder_keystone_service: CinderService, projects: dict[str, Any]) -> None:
    cinder, a, b = cinder_keystone_service, projects["a"], projects["b"]
    backend = CinderBackend(cinder.keystone_backend_options(a))  # A's member: no admin role
    try:
        assert [v.id for v in backend.list_volumes()] == [projects["volume_a"]["id"]]
        assert backend.describe()["endpoint"] == f"the catalogue of {cinder.keystone.url}"  # type: ignore[union-attr]
        other = backend.for_project(b.project_id)
        with pytest.raises(exceptions.Forbidden) as refused:
            other.list_volumes()
        assert "admin role" in str(refused.value) and b.project_id in str(refused.value), refused.value
        with pytest.raises(exceptions.VolumeNotFound):  # Cinder shows it (A's own), but it is not B's
            other.get_volume(projects["volume_a"]["id"])
        with pytest.raises(exceptions.VolumeNotFound):  # B's, which A's identity cannot read
            other.get_volume(projects["volume_b"]["id"])
        with pytest.raises(exceptions.Forbidden) as refused:
            other.create_volume(GiB, "intruder")
        assert a.project_id in str(refused.value) and b.project_id in str(refused.value), refused.value
        assert [v["name"] for v in cinder.api("GET", "/volumes", a.project).json()["volumes"]] == ["database"]
    finally:
        backend.close()


def test_act_as_user_acts_with_the_users_token_and_a_scheduled_runs_trust_token_in_their_project(
        cinder_keystone_service: CinderService, projects: dict[str, Any]) -> None:
    """``act_as_user``: a request that carries the user's token lists, snapshots and makes volumes in that
    user's project, whatever project the configured identity (a member of A, no admin) is in; so does the
    token a scheduled run gets through its Keystone trust (``strongroom.operationengine.identity``)."""
    from strongroom.context import get_context
    from strongroom.objects.scheduling import ScheduledOperation
    from strongroom.operationengine.identity import KeystoneTrusts

    cinder, ks, a, b = cinder_keystone_service, projects["keystone"], projects["a"], projects["b"]
    theirs = projects["volume_b"]
    backend = CinderBackend(cinder.keystone_backend_options(a, act_as_user=True))
    try:
        token_b = ks.token(b)
        as_b = backend.for_project(b.project_id, token_b)
        assert as_b is backend.for_project(b.project_id, token_b), "the user's backend is not kept"
        assert [(v.id, v.name) for v in as_b.list_volumes()] == [(theirs["id"], "theirs")]
        with pytest.raises(exceptions.VolumeNotFound):
            as_b.get_volume(projects["volume_a"]["id"])  # A's volume is not B's user's to read
        snapshot = as_b.create_snapshot(theirs["id"], tags={"why": "act-as-user"})
        assert [s.id for s in as_b.list_snapshots(theirs["id"])] == [snapshot.id]
        made = as_b.create_volume(GiB, "made-for-b")
        names = sorted(v["name"] for v in cinder.api("GET", "/volumes", b.project).json()["volumes"])
        assert names == ["made-for-b", "theirs"], "the volume was not made in the user's project"
        assert [v["name"] for v in cinder.api("GET", "/volumes", a.project).json()["volumes"]] == ["database"]
        as_b.delete_snapshot(snapshot.id)
        as_b.destroy_volume(made.id)
        assert token_b not in repr(as_b) and token_b not in repr(as_b.api)

        # A scheduled run: B's member trusts Strongroom's trustee; the run's context carries a trust token.
        trustee = ks.service_user(f"trustee-{uuid.uuid4().hex[:6]}")
        trusts = KeystoneTrusts(ks.url, trustee.username, trustee.password)
        owner = get_context(b.project_id, user_id=b.user_id, roles=["member", "reader"])
        trust_id = trusts.create_delegation(owner, token_b)
        assert trust_id is not None
        try:
            op = ScheduledOperation(id=str(uuid.uuid4()), project_id=b.project_id, name="nightly",
                                    operation_type="protect", trigger_id=str(uuid.uuid4()),
                                    plan_id=str(uuid.uuid4()), provider_id=str(uuid.uuid4()),
                                    user_id=b.user_id, trust_id=trust_id)
            run = trusts.context_for(op)
            assert run.auth_token and run.auth_token != token_b
            as_run = backend.for_project(run.project_id, run.auth_token)
            assert [v.id for v in as_run.list_volumes()] == [theirs["id"]]
            snapshot = as_run.create_snapshot(theirs["id"])
            as_run.delete_snapshot(snapshot.id)
        finally:
            trusts.delete_delegation(trust_id, token_b)

        # A token Cinder does not accept: refused as the user's (403 through the API), naming neither token.
        with pytest.raises(exceptions.Forbidden) as refused:
            backend.for_project(b.project_id, "gAAAA-not-a-token").list_volumes()
        assert "token" in str(refused.value) and "gAAAA-not-a-token" not in str(refused.value)
        # Without a token, the configured identity acts as before (A's own volumes).
        assert [v.id for v in backend.for_project(a.project_id).list_volumes()] == [projects["volume_a"]["id"]]
    finally:
        backend.close()


def test_act_as_user_through_the_api_each_member_protects_and_restores_in_their_own_project(
        cinder_keystone_service: CinderService, projects: dict[str, Any], request: pytest.FixtureRequest,
        tmp_path: Path) -> None:
    """The provider's identity is a plain member of project A; with ``act_as_user`` the API's context
    carries each caller's token to the protection service (RPC), so B's member lists B's volumes, protects
    one and restores it as a new volume in B: none of which A's identity could do (it has no admin role)."""
    import rbd

    cinder, ks = cinder_keystone_service, projects["keystone"]
    a, b, mine, theirs = projects["a"], projects["b"], projects["volume_a"], projects["volume_b"]
    ioctx = cinder.ceph.admin().open_ioctx(cinder.pool)
    try:
        with rbd.Image(ioctx, f"volume-{theirs['id']}") as image:
            image.write(random.Random(3).randbytes(2 * MiB), 7 * MiB + 123)
            image.flush()
            original = digest(image)
        bank = bank_under_test("fs", request, tmp_path)
        section = cinder_section(cinder, a) + "act_as_user = true\n"
        service, provider_id = write_config(tmp_path, ks, section, bank.section())
        service.start()
        try:
            token_b = ks.token(b)
            member_a, member_b = Caller(service.url, a, ks.token(a)), Caller(service.url, b, token_b)
            for caller, volume in ((member_a, mine), (member_b, theirs)):
                listed = caller("GET", f"/protectables/{VOLUME}/instances")
                assert listed.status_code == 200, listed.text
                assert [i["id"] for i in listed.json()["instances"]] == [volume["id"]]
            assert member_b("GET", f"/protectables/{VOLUME}/instances/{mine['id']}").status_code == 404
            plan = member_b("POST", "/plans", json={"plan": {
                "name": "as-b", "provider_id": provider_id, "parameters": {},
                "resources": [{"id": theirs["id"], "type": VOLUME, "name": "theirs"}]}})
            assert plan.status_code == 200, plan.text
            cps = f"/providers/{provider_id}/checkpoints"
            made = member_b("POST", cps, json={"checkpoint": {"plan_id": plan.json()["plan"]["id"]}})
            assert made.status_code == 200, made.text
            cp = member_b.wait(f"{cps}/{made.json()['checkpoint']['id']}", "checkpoint", {"available", "error"})
            assert cp["status"] == "available", cp
            restore = member_b("POST", "/restores", json={"restore": {
                "provider_id": provider_id, "checkpoint_id": cp["id"], "restore_target": None,
                "parameters": {VOLUME: {"restore_name": "theirs-restored"}}}})
            assert restore.status_code == 200, restore.text
            done = member_b.wait(f"/restores/{restore.json()['restore']['id']}", "restore", {"success", "fail"})
            assert done["status"] == "success", done
        finally:
            service.stop()
        in_b = {v["name"]: v for v in cinder.api("GET", "/volumes/detail", b.project).json()["volumes"]}
        assert sorted(in_b) == ["theirs", "theirs-restored"], sorted(in_b)
        assert [v["name"] for v in cinder.api("GET", "/volumes", a.project).json()["volumes"]] == ["database"]
        with rbd.Image(ioctx, f"volume-{in_b['theirs-restored']['id']}", read_only=True) as image:
            assert digest(image) == original, "the restored volume is not B's volume at its protect"
        output = "".join(service.output)
        for secret in (token_b, a.password):
            assert secret not in output
        kept = [path for root in (tmp_path / "fs-bank", tmp_path / "state") for path in root.rglob("*")
                if path.is_file() and token_b.encode() in path.read_bytes()]
        assert kept == [], f"the user's token was written to {kept}"
    finally:
        ioctx.close()
