"""Done-when 2: retention never deletes what a rule keeps, for random histories (hypothesis).

The rules are recomputed here by a deliberately naive reference (group, sort, take), independent of
:mod:`strongroom.operationengine.retention`; histories come in random listing order, with random statuses,
ties in ``created_at`` and dependencies between checkpoints.
"""

from __future__ import annotations

import datetime as _dt
import random
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from strongroom import exceptions
from strongroom.objects.records import CheckpointRecord
from strongroom.operationengine.retention import KEEP_KEYS, Policy, decide

NOW = _dt.datetime(2026, 6, 15, 12, 0, tzinfo=_dt.UTC)
STATUSES = ["available"] * 6 + ["protecting", "error", "deleting", "deleted", "copying"]


@st.composite
def histories(draw: Any) -> list[CheckpointRecord]:
    n = draw(st.integers(min_value=0, max_value=40))
    # Minutes back from NOW over about two years, with deliberate collisions (same created_at).
    offsets = draw(st.lists(st.one_of(st.integers(0, 2 * 366 * 24 * 60), st.sampled_from([0, 60, 1440])),
                            min_size=n, max_size=n))
    out = []
    for i, minutes in enumerate(offsets):
        status = draw(st.sampled_from(STATUSES))
        out.append(CheckpointRecord(id=f"cp-{i:03d}", provider_id="p", project_id="proj", status=status,
                                    plan_id="plan", created_at=NOW - _dt.timedelta(minutes=minutes)))
    for cp in out:
        if out and draw(st.integers(0, 9)) == 0:
            cp.extra_info = {"depends_on": [draw(st.sampled_from(out)).id]}
    return draw(st.permutations(out))


policies = st.builds(
    Policy,
    max_backups=st.none() | st.integers(1, 10),
    retention_duration=st.none() | st.integers(1, 400),
    keep_last=st.none() | st.integers(1, 5),
    keep_hourly=st.none() | st.integers(1, 6),
    keep_daily=st.none() | st.integers(1, 10),
    keep_weekly=st.none() | st.integers(1, 6),
    keep_monthly=st.none() | st.integers(1, 12),
    keep_yearly=st.none() | st.integers(1, 3),
)


def period_key(period: str, t: _dt.datetime) -> str:
    fmt = {"hourly": "%Y-%m-%d %H", "daily": "%Y-%m-%d", "monthly": "%Y-%m", "yearly": "%Y"}
    if period == "weekly":
        year, week, _ = t.isocalendar()
        return f"{year}-W{week:02d}"
    return t.strftime(fmt[period])


def reference_keeps(policy: Policy, history: list[CheckpointRecord]) -> dict[str, set[str]]:
    """Each rule's keeps, computed the plain way."""
    good = [cp for cp in history if cp.status == "available"]
    newest_first = sorted(good, key=lambda cp: (cp.created_at, cp.id), reverse=True)
    rules: dict[str, set[str]] = {}
    if policy.max_backups is not None or policy.retention_duration is not None:
        within = set()
        for rank, cp in enumerate(newest_first):
            assert cp.created_at is not None
            ok = policy.max_backups is None or rank < policy.max_backups
            ok = ok and (policy.retention_duration is None
                         or NOW - cp.created_at <= _dt.timedelta(days=policy.retention_duration))
            if ok:
                within.add(cp.id)
        rules["limits"] = within
    if policy.keep_last is not None:
        rules["keep_last"] = {cp.id for cp in newest_first[:policy.keep_last]}
    for period in ("hourly", "daily", "weekly", "monthly", "yearly"):
        count = getattr(policy, f"keep_{period}")
        if count is None:
            continue
        groups: dict[str, list[CheckpointRecord]] = {}
        for cp in good:
            assert cp.created_at is not None
            groups.setdefault(period_key(period, cp.created_at), []).append(cp)
        recent = sorted(groups, key=lambda k: max((c.created_at, c.id) for c in groups[k]), reverse=True)[:count]
        rules[f"keep_{period}"] = {max(groups[k], key=lambda c: (c.created_at, c.id)).id for k in recent}
    return rules


@settings(max_examples=400, deadline=None)
@given(history=histories(), policy=policies)
def test_retention_never_deletes_what_a_rule_keeps(history: list[CheckpointRecord], policy: Policy) -> None:
    decision = decide(policy, history, NOW)
    deleted = set(decision.delete)
    by_id = {cp.id: cp for cp in history}

    for rule, kept in reference_keeps(policy, history).items():
        assert not (deleted & kept), f"{rule} keeps {sorted(deleted & kept)}"
    assert all(by_id[i].status == "available" for i in deleted), "only available checkpoints are deleted"
    available = [cp for cp in history if cp.status == "available"]
    if available:
        newest = max(available, key=lambda cp: (cp.created_at, cp.id))
        assert newest.id not in deleted, "the newest available checkpoint is always kept"
    needed = {dep for cp in history if cp.status != "deleted" for dep in cp.extra_info.get("depends_on", [])}
    assert not (deleted & needed), "a checkpoint another one depends on is kept"
    # Nothing is kept without a reason, so retention really trims.
    if not policy.empty:
        reasons = set().union(*reference_keeps(policy, history).values()) | needed
        if available:
            reasons.add(newest.id)
        assert {cp.id for cp in available} - reasons == deleted
    # Oldest first, and the listing order does not matter.
    assert decision.delete == sorted(decision.delete, key=lambda i: (by_id[i].created_at, i))
    shuffled = list(history)
    random.Random(7).shuffle(shuffled)
    assert decide(policy, shuffled, NOW).delete == decision.delete


def cp(i: int, hours_ago: float, status: str = "available", **extra: Any) -> CheckpointRecord:
    return CheckpointRecord(id=f"cp-{i}", provider_id="p", project_id="proj", status=status, plan_id="plan",
                            created_at=NOW - _dt.timedelta(hours=hours_ago), extra_info=dict(extra))


def test_max_backups_trims_to_the_newest_by_creation_time_not_listing_order() -> None:
    history = [cp(1, 1), cp(2, 50), cp(3, 2), cp(4, 3), cp(5, 0.5)]  # listed in no particular order
    decision = decide(Policy(max_backups=2), history, NOW)
    assert decision.delete == ["cp-2", "cp-4", "cp-3"]
    assert set(decision.keep) == {"cp-5", "cp-1"}


def test_failing_backups_never_let_retention_empty_a_plan() -> None:
    history = [cp(1, 24 * 30), cp(2, 24 * 40), cp(3, 1, "error"), cp(4, 0.1, "protecting")]
    decision = decide(Policy(retention_duration=7), history, NOW)
    assert decision.delete == ["cp-2"]
    assert decision.keep["cp-1"] == ["newest available"]


def test_a_base_goes_only_after_its_dependants() -> None:
    history = [cp(1, 10), cp(2, 9, depends_on=["cp-1"]), cp(3, 1)]
    assert decide(Policy(max_backups=1), history, NOW).delete == ["cp-2"]
    history[1].status = "deleted"
    assert decide(Policy(max_backups=1), history, NOW).delete == ["cp-1"]


def test_grandfather_father_son() -> None:
    history = [cp(i, hours) for i, hours in enumerate([0, 1, 2, 25, 26, 24 * 8, 24 * 9, 24 * 40, 24 * 400])]
    decision = decide(Policy(keep_daily=2, keep_weekly=2, keep_monthly=2, keep_yearly=2), history, NOW)
    kept = {k for k, reasons in decision.keep.items() if reasons}
    # Monday 15 June: today and Sunday (daily, and weekly: ISO weeks 25 and 24), May (monthly), 2025 (yearly).
    assert kept == {"cp-0", "cp-3", "cp-7", "cp-8"}
    assert decision.delete == ["cp-6", "cp-5", "cp-4", "cp-2", "cp-1"]


@pytest.mark.parametrize(("definition", "field"), [
    ({"max_backups": "many"}, "operation_definition.max_backups"),
    ({"retention_duration": -5}, "operation_definition.retention_duration"),
    ({"keep_daily": 0}, "operation_definition.keep_daily"),
    ({"keep_weekly": True}, "operation_definition.keep_weekly"),
    ({"keep_last": 1.5}, "operation_definition.keep_last"),
])
def test_policy_errors_name_the_field(definition: dict[str, Any], field: str) -> None:
    with pytest.raises(exceptions.InvalidInput, match=field.replace(".", r"\.")):
        Policy.from_definition(definition)


def test_karbor_spellings_of_no_limit() -> None:
    assert Policy.from_definition({"max_backups": "-1", "retention_duration": 0}).empty
    assert Policy.from_definition({"max_backups": "3"}).max_backups == 3
    assert set(KEEP_KEYS) <= set(Policy().__dataclass_fields__)
