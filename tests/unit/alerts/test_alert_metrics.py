"""A gauge per active alert in the Prometheus exposition; a cleared alert leaves it."""

from __future__ import annotations

import datetime as _dt

from strongroom import metrics
from strongroom.alerts import resources as rc
from strongroom.alerts.engine import Evaluator

T0 = _dt.datetime(2026, 5, 4, 12, 0, tzinfo=_dt.UTC)


def world(error: str | None) -> list[rc.Resource]:
    return [rc.Bank.resource("P/bank", "bank 'swift' of provider 'Cloud'", statistics={"error": error},
                             affects=[("plan", "plan-a")]),
            rc.Plan.resource("plan-a", "plan 'nightly'", project_id="proj-a")]


def _alert_lines(text: str) -> list[str]:
    return sorted(line for line in text.splitlines() if line.startswith("strongroom_alert{"))


def test_each_active_alert_is_one_gauge_and_a_cleared_one_disappears() -> None:
    ev = Evaluator()
    collector = metrics.AlertCollector(ev.active)
    ev.evaluate(world("connection refused"), T0)
    [bank] = [a for a in ev.active() if a.condition == "bank_unreachable"]
    lines = _alert_lines(metrics.render([collector])[0].decode())
    assert lines == sorted([
        f'strongroom_alert{{cause="",condition="bank_unreachable",id="{bank.id}",project="",resource_id="P/bank",'
        f'resource_type="bank",severity="error"}} 1.0',
        f'strongroom_alert{{cause="{bank.id}",condition="at_risk",id="{ev.active()[1].id}",project="proj-a",'
        f'resource_id="plan-a",resource_type="plan",severity="error"}} 1.0'])
    ev.evaluate(world(None), T0 + _dt.timedelta(minutes=1))
    assert _alert_lines(metrics.render([collector])[0].decode()) == []


def test_a_listing_that_fails_leaves_the_scrape_without_the_gauge_but_answering() -> None:
    def broken() -> list[object]:
        raise RuntimeError("evaluator gone")

    body = metrics.render([metrics.AlertCollector(broken)])[0].decode()
    assert "strongroom_alert{" not in body and "python_info" in body
