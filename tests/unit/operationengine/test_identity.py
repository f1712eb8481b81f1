"""A scheduled run acts as the operation's owner: a Keystone trust (against FakeKeystone, a fake Keystone
HTTP server driven through the real keystoneauth1 code) or, under noauth, the owning project."""

from __future__ import annotations

import datetime as _dt
from pathlib import Path

import pytest

from strongroom.clock import FakeClock
from strongroom.context import get_context
from strongroom.db.api import Database
from strongroom.db.models import ScheduledOperationModel
from strongroom.db.scheduling import SchedulingStore
from strongroom.objects.scheduling import FireState, ScheduledOperation
from strongroom.operationengine.engine import EngineSettings, InlineExecutor, OperationEngine
from strongroom.operationengine.identity import IdentityError, KeystoneTrusts, NoAuthIdentity
from tests.servers.fake_keystone import FakeKeystone
from tests.unit.operationengine.fakes import FakeProtectionForSchedulingTests, add_operation, add_plan, add_trigger


def trusts(keystone: FakeKeystone) -> KeystoneTrusts:
    return KeystoneTrusts(keystone.url, "strongroom", "service-secret")


def operation(project: str, user: str, trust_id: str | None) -> ScheduledOperation:
    return ScheduledOperation(id="op-1", project_id=project, name="n", operation_type="protect", trigger_id="t",
                              plan_id="p", provider_id="pr", user_id=user, trust_id=trust_id)


def test_a_trust_lets_the_engine_act_as_the_owner(fake_keystone: FakeKeystone) -> None:
    alice = fake_keystone.add_user("alice", "pw", roles={"proj-a": ["member", "reader"]})
    token = fake_keystone.issue_token(alice, "proj-a")
    identity = trusts(fake_keystone)
    trust_id = identity.create_delegation(get_context("proj-a", user_id=alice.id, roles=["member"]), token)
    assert trust_id in fake_keystone.trusts
    assert fake_keystone.trusts[trust_id]["trustee_user_id"] == "strongroom-id"

    ctx = identity.context_for(operation("proj-a", alice.id, trust_id))
    assert (ctx.project_id, ctx.user_id, ctx.roles) == ("proj-a", alice.id, ["member"])
    assert ctx.auth_token and fake_keystone.tokens[ctx.auth_token]["trust"] == trust_id
    assert "auth_token" not in ctx.to_dict()  # never sent over RPC

    identity.delete_delegation(trust_id, token)
    assert trust_id not in fake_keystone.trusts
    with pytest.raises(IdentityError, match="no longer works"):
        identity.context_for(operation("proj-a", alice.id, trust_id))


def test_keystone_refusals_are_reported(fake_keystone: FakeKeystone) -> None:
    alice = fake_keystone.add_user("alice", "pw", roles={"proj-a": ["member"]})
    bob = fake_keystone.add_user("bob", "pw", roles={"proj-a": ["member"]})
    identity = trusts(fake_keystone)
    with pytest.raises(IdentityError, match="refused a trust"):  # bob's token cannot delegate alice's rights
        identity.create_delegation(get_context("proj-a", user_id=alice.id, roles=["member"]),
                                   fake_keystone.issue_token(bob, "proj-a"))
    with pytest.raises(IdentityError, match="refused a trust"):  # roles alice does not have
        identity.create_delegation(get_context("proj-a", user_id=alice.id, roles=["admin"]),
                                   fake_keystone.issue_token(alice, "proj-a"))
    with pytest.raises(IdentityError, match="needs the user's token"):
        identity.create_delegation(get_context("proj-a", user_id=alice.id), None)
    with pytest.raises(IdentityError, match="has no Keystone trust"):
        identity.context_for(operation("proj-a", alice.id, None))
    wrong = KeystoneTrusts(fake_keystone.url, "strongroom", "wrong-password")
    with pytest.raises(Exception, match="(?i)authenticat"):
        wrong.create_delegation(get_context("proj-a", user_id=alice.id, roles=["member"]),
                                fake_keystone.issue_token(alice, "proj-a"))


def test_noauth_acts_as_the_owning_project() -> None:
    ctx = NoAuthIdentity().context_for(operation("proj-b", "u-7", None))
    assert (ctx.project_id, ctx.user_id, ctx.is_admin) == ("proj-b", "u-7", False)


def test_a_run_uses_the_trust_and_fails_clearly_once_it_is_revoked(fake_keystone: FakeKeystone,
                                                                    tmp_path: Path) -> None:
    clock = FakeClock(_dt.datetime(2026, 7, 1, 8, 0, 30, tzinfo=_dt.UTC))
    db = Database(f"sqlite:///{tmp_path / 'trust.sqlite'}", clock=clock)
    db.sync()
    store = SchedulingStore(db)
    plan = add_plan(db, project="proj-a")
    alice = fake_keystone.add_user("alice", "pw", roles={"proj-a": ["member"]})
    identity = trusts(fake_keystone)
    trust_id = identity.create_delegation(get_context("proj-a", user_id=alice.id, roles=["member"]),
                                          fake_keystone.issue_token(alice, "proj-a"))
    trigger = add_trigger(store, {"pattern": "0 * * * *", "window": 300}, clock.now(), project="proj-a")
    op = add_operation(store, trigger, plan)
    with store.db.session(write=True) as s:  # the API stores the trust id with the operation
        s.get(ScheduledOperationModel, op.id).trust_id = trust_id  # type: ignore[union-attr]
    protection = FakeProtectionForSchedulingTests(db, clock)
    engine = OperationEngine(db, protection, identity, owner="e", clock=clock, executor=InlineExecutor(),
                             settings=EngineSettings(plan_ahead=3600))
    engine.tick()
    clock.advance(3600)
    engine.tick()
    assert [c.user_id for c in protection.contexts] == [alice.id]
    fake_keystone.revoke_trust(trust_id)
    clock.advance(3600)
    engine.tick()
    newest, first = store.list_fires(op.id)
    assert first.state == FireState.SUCCESS
    assert newest.state == FireState.FAILED and "trust" in (newest.error_info or "")
    assert len(protection.contexts) == 1
    db.dispose()
