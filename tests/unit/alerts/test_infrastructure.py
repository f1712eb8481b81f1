"""Done-when 3, infrastructure: stopping the bank (a real Swift all-in-one this test starts, then stops)
raises "bank unreachable" and marks the plans that use it at risk; a pool under its threshold (the real
memory block backend with a configured capacity of 1 MiB) marks its volumes' plans at risk.  Alerts are read
from the protection service's RPC endpoint, built by the real wiring over a real sqlite metadata store."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from strongroom import exceptions
from strongroom.alerts.engine import AT_RISK
from strongroom.clock import FakeClock
from strongroom.context import get_context
from strongroom.db.api import Database
from strongroom.objects.records import Plan, Resource
from strongroom.protection.manager import ProtectionManager
from strongroom.protection.providers import ProviderRegistry
from strongroom.protection.wiring import protection_manager
from tests.servers.swift import SwiftServerError, start_swift

PROVIDER = "6f1d2a8e-0b51-4c1e-9d44-5b7b1d6c0a01"
OTHER = "6f1d2a8e-0b51-4c1e-9d44-5b7b1d6c0a02"
VOLUME = "OS::Cinder::Volume"


def provider_file(directory: Path, pid: str, name: str, bank: str, bank_options: dict[str, Any],
                  capacity: int = 1 << 30) -> None:
    directory.mkdir(exist_ok=True)
    lines = [f"{k} = {v}" for k, v in bank_options.items()]
    (directory / f"{name}.conf").write_text("\n".join([
        "[provider]", f"name = {name}", f"id = {pid}", "plugin = volume", f"bank = {bank}", "encryption = none",
        "", "[volume]", "block_backend = memory", "", f"[{bank}]", *lines,
        "", "[memory]", f"capacity = {capacity}", ""]))


def add_plan(db: Database, provider_id: str, project: str, name: str, volume_id: str) -> Plan:
    return db.create_plan(Plan(id=str(uuid.uuid4()), name=name, provider_id=provider_id, project_id=project,
                               resources=[Resource(id=volume_id, type=VOLUME, name=volume_id)]))


@pytest.fixture
def make(tmp_path: Path) -> Iterator[Any]:
    made: list[tuple[ProtectionManager, ProviderRegistry, Database]] = []

    def build(providers: Path) -> tuple[ProtectionManager, Database]:
        db = Database(f"sqlite:///{tmp_path / 'alerts.sqlite'}", clock=FakeClock())
        db.sync()
        registry = ProviderRegistry.load(str(providers), str(tmp_path / "state"))
        manager = protection_manager(db, registry, host="alerts-host", clock=FakeClock())
        made.append((manager, registry, db))
        return manager, db

    yield build
    for manager, registry, db in made:
        manager.stop()
        registry.close()
        db.dispose()


def by(alerts: list[dict[str, Any]], condition: str, active: bool = True) -> list[dict[str, Any]]:
    return [a for a in alerts if a["condition"] == condition and a["active"] == active]


def test_stopping_the_bank_raises_bank_unreachable_and_marks_the_plans_that_use_it_at_risk(
        tmp_path: Path, make: Any) -> None:
    try:
        swift = start_swift(tmp_path / "swift")
    except (SwiftServerError, OSError) as err:
        pytest.skip(f"the Swift all-in-one could not start: {err}")
    try:
        providers = tmp_path / "providers.d"
        provider_file(providers, PROVIDER, "Cloud", "swift", swift.bank_options(swift.new_container("alerts")))
        provider_file(providers, OTHER, "Local", "memory", {})
        manager, db = make(providers)
        mine = add_plan(db, PROVIDER, "p1", "nightly", "vol-a")
        add_plan(db, PROVIDER, "p2", "payroll-of-p2", "vol-b")
        elsewhere = add_plan(db, OTHER, "p1", "local", "vol-c")
        manager.leases.fence(manager.registry.get(PROVIDER))  # this service holds its lease in the bank
        admin = get_context("admin-project", is_admin=True)
        assert manager.alerts is not None
        manager.alerts.evaluate()
        assert [a for a in manager.list_alerts(admin, all_tenants=True) if a["active"]] == []

        swift.stop()
        manager.leases.keeper(manager.registry.get(PROVIDER)).tick()  # a renewal, refused: the lease is still held
        manager.alerts.evaluate()
        everything = manager.list_alerts(admin, all_tenants=True)
        [down] = by(everything, "bank_unreachable")
        assert down["resource_type"] == "bank" and down["project_id"] is None
        assert down["message"].startswith("bank 'swift' of provider 'Cloud' is unreachable: ")
        assert swift.key not in str(everything)
        [renewals] = by(everything, "lease_renewals_failing")
        assert "renewals of this service's lease in bank 'swift' of provider 'Cloud' are failing" \
            in renewals["message"]
        at_risk = {(a["resource_type"], a["resource_name"]) for a in by(everything, AT_RISK)
                   if a["cause_id"] == down["id"]}
        assert at_risk == {("provider", "provider 'Cloud'"), ("plan", "plan 'nightly'"),
                           ("plan", "plan 'payroll-of-p2'")}
        assert not any(a["resource_id"] == elsewhere.id for a in by(everything, AT_RISK))

        seen = manager.list_alerts(get_context("p1"))
        [plan_alert] = [a for a in by(seen, AT_RISK) if a["resource_id"] == mine.id and a["cause_id"] == down["id"]]
        assert plan_alert["message"].startswith("plan 'nightly' is at risk: bank 'swift' of provider 'Cloud' is "
                                                "unreachable")
        assert down["id"] in {a["id"] for a in seen}
        assert "payroll" not in str(seen) and "p2" not in {a["project_id"] for a in seen}
        with pytest.raises(exceptions.Forbidden):
            manager.list_alerts(get_context("p1"), all_tenants=True)
    finally:
        swift.stop()


def test_a_pool_under_its_threshold_marks_its_volumes_plans_at_risk_and_clears_once_freed(
        tmp_path: Path, make: Any) -> None:
    providers = tmp_path / "providers.d"
    provider_file(providers, PROVIDER, "Small", "memory", {}, capacity=1 << 20)
    provider_file(providers, OTHER, "Large", "memory", {})
    manager, db = make(providers)
    backend = manager.registry.get(PROVIDER).block_backend("memory")
    volume = backend.create_volume(1 << 20, name="data")
    with backend.open_volume_writer(volume.id) as writer:
        writer.write(0, b"\x01" * (960 << 10))  # 64 KiB of 1 MiB left: 6.25% free
    plan = add_plan(db, PROVIDER, "p1", "nightly", volume.id)
    other = add_plan(db, OTHER, "p1", "large", volume.id)
    assert manager.alerts is not None
    manager.alerts.evaluate()
    alerts = manager.list_alerts(get_context("p1"))
    [low] = by(alerts, "pool_free_capacity_low")
    # Two providers configure a backend named memory differently: the second (by name) is memory@Small.
    assert low["message"] == ("pool 'memory' of block backend 'memory@Small' has 6.2% free (65536 of 1048576 "
                              "bytes), under 10.0%")
    risky = {(a["resource_type"], a["resource_id"]) for a in by(alerts, AT_RISK) if a["cause_id"] == low["id"]}
    assert risky == {("volume", f"memory@Small/{volume.id}"), ("plan", plan.id)}
    assert not any(a["resource_id"] == other.id for a in alerts)

    backend.destroy_volume(volume.id)
    manager.alerts.evaluate()
    after = manager.list_alerts(get_context("p1"))
    assert by(after, "pool_free_capacity_low") == [] and by(after, AT_RISK) == []
    assert len(by(after, "pool_free_capacity_low", active=False)) == 1


def test_a_backend_that_cannot_report_its_capacity_raises_its_alert_and_puts_its_volumes_plans_at_risk(
        tmp_path: Path, make: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    providers = tmp_path / "providers.d"
    provider_file(providers, PROVIDER, "Small", "memory", {})
    manager, db = make(providers)
    backend = manager.registry.get(PROVIDER).block_backend("memory")
    plan = add_plan(db, PROVIDER, "p1", "nightly", "vol-a")

    def refused() -> Any:
        raise exceptions.ServiceUnavailable(what="the cluster", reason="no monitor answers")

    monkeypatch.setattr(backend, "stats", refused)  # the real backend, its stats() made to fail
    assert manager.alerts is not None
    manager.alerts.evaluate()
    alerts = manager.list_alerts(get_context("p1"))
    [down] = by(alerts, "block_backend_unreachable")
    assert down["message"].startswith("block backend 'memory' cannot report its capacity: ")
    assert "no monitor answers" in down["message"]
    assert {(a["resource_type"], a["resource_id"]) for a in by(alerts, AT_RISK)} == {
        ("volume", "memory/vol-a"), ("plan", plan.id)}
