"""The declarative layer: a condition in a few lines, its life cycle (raised, kept, cleared without flapping,
forgotten), "at risk" along affects, and what a project sees of it."""

from __future__ import annotations

import datetime as _dt

import pytest

from strongroom.alerts import resources as rc
from strongroom.alerts.engine import AT_RISK, Evaluator, visible_to
from strongroom.alerts.model import Resource, ResourceClass, Settings, Severity, condition

T0 = _dt.datetime(2026, 5, 4, 12, 0, tzinfo=_dt.UTC)


def at(minutes: float) -> _dt.datetime:
    return T0 + _dt.timedelta(minutes=minutes)


class Thermometer(ResourceClass):
    """A resource class of this test only: declaring one and a condition on it takes these lines."""

    kind = "thermometer"


@condition(Thermometer, "too_hot", Severity.WARNING, "{name} reads {celsius} C, over 40 C")
def _too_hot(t: Resource, s: Settings) -> bool:
    return bool(t.statistics["celsius"] > 40)


def thermometer(celsius: float) -> Resource:
    return Thermometer.resource("t1", "thermometer 't1'", project_id="p1", statistics={"celsius": celsius})


def test_a_new_condition_is_a_few_declarative_lines_and_raises_then_clears() -> None:
    ev = Evaluator()
    assert ev.evaluate([thermometer(20)], at(0)) == []
    [alert] = ev.evaluate([thermometer(45)], at(1))
    assert (alert.condition, alert.severity, alert.resource_type, alert.project_id) == \
        ("too_hot", Severity.WARNING, "thermometer", "p1")
    assert alert.message == "thermometer 't1' reads 45 C, over 40 C" and alert.raised_at == at(1)
    [still] = ev.evaluate([thermometer(50)], at(2))
    assert still.id == alert.id and still.raised_at == at(1) and still.message.endswith("50 C, over 40 C")
    [cleared] = ev.evaluate([thermometer(30)], at(3))
    assert not cleared.active and cleared.cleared_at == at(3) and cleared.raised_at == at(1)


def test_a_condition_name_is_declared_once() -> None:
    with pytest.raises(ValueError, match="already has a condition 'too_hot'"):
        condition(Thermometer, "too_hot", Severity.INFO, "again")(lambda r, s: True)


def test_a_cleared_alert_is_listed_for_the_retention_then_forgotten_and_a_new_one_has_a_new_raised_at() -> None:
    ev = Evaluator(Settings(cleared_retention=600))
    ev.evaluate([thermometer(45)], at(0))
    ev.evaluate([thermometer(20)], at(1))
    assert [a.active for a in ev.evaluate([thermometer(20)], at(10))] == [False]
    assert ev.evaluate([thermometer(20)], at(12)) == []
    [again] = ev.evaluate([thermometer(45)], at(13))
    assert again.active and again.raised_at == at(13)


def pool(free_percent: float) -> Resource:
    return rc.Pool.resource("mem/memory", "pool 'memory' of block backend 'mem'",
                            statistics={"free_percent": free_percent, "free_bytes": int(free_percent),
                                        "total_bytes": 100, "allocated_bytes": 100 - int(free_percent)},
                            affects=[("volume", "mem/vol-1")])


def test_a_pool_hovering_at_its_threshold_does_not_flap() -> None:
    ev = Evaluator(Settings(pool_free_percent=10, pool_hysteresis=5))
    [raised] = ev.evaluate([pool(9)], at(0))
    assert raised.condition == "pool_free_capacity_low" and "9.0% free" in raised.message
    for minute, free in enumerate((11, 9.5, 14.9, 12), start=1):  # above the threshold, not above 15%
        [alert] = ev.evaluate([pool(free)], at(minute))
        assert alert.active and alert.raised_at == at(0), free
    [cleared] = ev.evaluate([pool(15)], at(9))
    assert not cleared.active


def world(bank_error: str | None) -> list[Resource]:
    """A bank of provider P, two projects' plans on P, one of them also on a pool."""
    return [
        rc.Bank.resource("P/bank", "bank 'swift' of provider 'P'", statistics={"error": bank_error},
                         affects=[("provider", "P")]),
        rc.Provider.resource("P", "provider 'P'", affects=[("plan", "mine"), ("plan", "theirs")]),
        rc.Plan.resource("mine", "plan 'nightly'", project_id="p1"),
        rc.Plan.resource("theirs", "plan 'secret-payroll'", project_id="p2"),
    ]


def test_a_bank_alert_is_carried_to_the_plans_it_puts_at_risk_and_clears_with_them() -> None:
    ev = Evaluator()
    ev.evaluate(world(None), at(0))
    alerts = ev.evaluate(world("connection refused"), at(1))
    [bank] = [a for a in alerts if a.condition == "bank_unreachable"]
    assert bank.message == "bank 'swift' of provider 'P' is unreachable: connection refused"
    at_risk = {a.resource_id: a for a in alerts if a.condition == AT_RISK}
    assert set(at_risk) == {"P", "mine", "theirs"}
    assert at_risk["mine"].cause_id == bank.id and at_risk["mine"].severity == Severity.ERROR
    assert at_risk["mine"].message == ("plan 'nightly' is at risk: bank 'swift' of provider 'P' is unreachable: "
                                       "connection refused")
    after = ev.evaluate(world(None), at(2))
    assert after and not any(a.active for a in after)


def test_a_project_sees_its_plans_alerts_and_their_cause_never_another_projects() -> None:
    ev = Evaluator()
    alerts = ev.evaluate(world("connection refused"), at(0))
    seen = visible_to(alerts, "p1")
    assert {(a.condition, a.resource_id) for a in seen} == {
        ("bank_unreachable", "P/bank"), (AT_RISK, "P"), (AT_RISK, "mine")}
    assert not any("payroll" in a.message or a.project_id == "p2" for a in seen)
    assert visible_to(alerts, "p3") == []
    assert len(visible_to(alerts, None)) == len(alerts) == 4


def test_a_message_whose_field_is_missing_or_of_another_type_never_breaks_the_evaluation() -> None:
    class Gauge(ResourceClass):
        kind = "gauge"

    condition(Gauge, "odd", Severity.INFO, "{name} at {level:.1f} of {unknown}")(lambda r, s: True)
    [missing] = Evaluator().evaluate([Gauge.resource("g", "gauge 'g'", statistics={"level": 2})], at(0))
    assert missing.message == "gauge 'g' at 2.0 of ?"
    [wrong] = Evaluator().evaluate([Gauge.resource("g", "gauge 'g'", statistics={"level": "high"})], at(0))
    assert wrong.message == "odd on gauge 'g'"
