"""A scheduled run acts as the operation's owner: a Keystone trust (against FakeKeystone, a fake Keystone
HTTP server driven through the real keystoneauth1 code) or, under noauth, the owning project."""

from __future__ import annotations

import datetime as _dt
from pathlib import Path
from typing import Any

import pytest

from strongroom.clock import FakeClock
from strongroom.context import RequestContext, get_context
from strongroom.db.api import Database
from strongroom.db.models import ScheduledOperationModel
from strongroom.db.scheduling import SchedulingStore
from strongroom.exceptions import ServiceUnavailable
from strongroom.objects.scheduling import FireState, ScheduledOperation
from strongroom.operationengine.engine import EngineSettings, InlineExecutor, OperationEngine
from strongroom.operationengine.identity import IdentityError, KeystoneTrusts, NoAuthIdentity, TrustRefused
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
    with pytest.raises(ServiceUnavailable, match=r"Keystone refuses the \[trustee\] user strongroom"):
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
    assert "revoked or deleted" in (newest.error_info or "") and op.id in (newest.error_info or "")
    assert len(protection.contexts) == 1
    db.dispose()


class _Refusing(NoAuthIdentity):
    """A RunIdentity whose Keystone refuses every trust (``refused``) or cannot be reached (not ``refused``)."""

    def __init__(self) -> None:
        self.refused = True
        self.asked = 0

    def context_for(self, op: ScheduledOperation) -> RequestContext:
        self.asked += 1
        if self.refused:
            raise TrustRefused(reason=f"the Keystone trust of scheduled operation {op.id} no longer works")
        raise IdentityError(reason=f"Keystone could not be asked for the trust of scheduled operation {op.id}")


def _hourly(tmp_path: Path, identity: NoAuthIdentity, suspend_after: int) -> tuple[Any, ...]:
    clock = FakeClock(_dt.datetime(2026, 7, 1, 8, 0, 30, tzinfo=_dt.UTC))
    db = Database(f"sqlite:///{tmp_path / 'refused.sqlite'}", clock=clock)
    db.sync()
    store = SchedulingStore(db)
    plan = add_plan(db, project="proj-a")
    trigger = add_trigger(store, {"pattern": "0 * * * *", "window": 300}, clock.now(), project="proj-a")
    op = add_operation(store, trigger, plan)
    engine = OperationEngine(db, FakeProtectionForSchedulingTests(db, clock), identity, owner="e", clock=clock,
                             executor=InlineExecutor(),
                             settings=EngineSettings(plan_ahead=3600, suspend_after_identity_failures=suspend_after))
    return clock, db, store, op, engine


def test_refused_trusts_fail_once_per_fire_then_suspend_the_operation(tmp_path: Path) -> None:
    identity = _Refusing()
    clock, db, store, op, engine = _hourly(tmp_path, identity, suspend_after=3)
    engine.tick()
    for _ in range(6):  # six hours
        clock.advance(3600)
        engine.tick()
    fires = list(reversed(store.list_fires(op.id)))
    assert [f.state for f in fires] == [FireState.FAILED] * 3  # then suspended: no more fires
    assert identity.asked == 3 and all(f.attempts == 1 for f in fires)
    assert "suspended after 3 fires in a row" in (fires[-1].error_info or "")
    assert "suspended" not in (fires[0].error_info or "")
    assert store.get_operation(op.id).enabled is False
    # Resumed: it fires again (and counts from zero only after a fire Keystone did not refuse).
    identity.refused = False
    store.set_enabled(op.id, True)
    for _ in range(5):
        clock.advance(3600)
        engine.tick()
    assert store.get_operation(op.id).enabled is True  # Keystone away is no reason to suspend
    later = list(reversed(store.list_fires(op.id)))[3:]
    assert len(later) >= 4 and all(f.state == FireState.FAILED for f in later)
    assert all("could not be asked" in (f.error_info or "") for f in later)
    db.dispose()


def test_suspending_can_be_turned_off(tmp_path: Path) -> None:
    identity = _Refusing()
    clock, db, store, op, engine = _hourly(tmp_path, identity, suspend_after=0)
    engine.tick()
    for _ in range(5):
        clock.advance(3600)
        engine.tick()
    assert store.get_operation(op.id).enabled is True
    assert identity.asked == 5 == len(store.list_fires(op.id))
    db.dispose()


def test_a_wrong_trustee_password_is_the_deployments_fault_not_the_trusts(fake_keystone: FakeKeystone) -> None:
    alice = fake_keystone.add_user("alice", "pw", roles={"proj-a": ["member"]})
    trust_id = trusts(fake_keystone).create_delegation(get_context("proj-a", user_id=alice.id, roles=["member"]),
                                                       fake_keystone.issue_token(alice, "proj-a"))
    wrong = KeystoneTrusts(fake_keystone.url, "strongroom", "wrong-password")
    with pytest.raises(IdentityError, match=r"refuses the \[trustee\] user strongroom") as caught:
        wrong.context_for(operation("proj-a", alice.id, trust_id))
    assert not isinstance(caught.value, TrustRefused)  # so no operation is suspended for it
    assert "wrong-password" not in caught.value.message
