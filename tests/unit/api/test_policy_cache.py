"""The API's enforcer keeps its decisions while the rules stay the same: the same answers as oslo.policy's
own enforcer, and an edited policy file rules the answers once ``recheck_interval`` has passed."""

from __future__ import annotations

import os
from pathlib import Path

from oslo_config import cfg
from oslo_context.context import RequestContext
from oslo_policy import policy as oslo_policy

from strongroom.api import policy, rules

MEMBER = RequestContext(user_id="u1", project_id="p1", roles=["member", "reader"], overwrite=False)
READER = RequestContext(user_id="u2", project_id="p1", roles=["reader"], overwrite=False)
ADMIN = RequestContext(user_id="a", project_id="p1", roles=["admin", "member", "reader"], overwrite=False)


class Clock:
    def __init__(self) -> None:
        self.now = 50.0

    def __call__(self) -> float:
        return self.now


def _conf(policy_file: Path | None = None) -> cfg.ConfigOpts:
    conf = cfg.ConfigOpts()
    conf([], project="strongroom", default_config_files=[])
    if policy_file is not None:
        oslo_policy.Enforcer(conf)  # registers [oslo_policy]
        conf.set_override("policy_file", str(policy_file), "oslo_policy")
    return conf


def test_the_same_answers_as_oslo_policy_asked_again_and_again() -> None:
    cached = policy.get_enforcer(_conf())
    plain = oslo_policy.Enforcer(_conf())
    plain.register_defaults(policy.list_rules())
    questions = [(ctx, rule.action, {"project_id": project}) for ctx in (MEMBER, READER, ADMIN)
                 for rule in rules.Rule for project in ("p1", "p2")]
    expected = [rules.allowed(plain, ctx, action, target) for ctx, action, target in questions]
    assert True in expected and False in expected
    for _ in range(3):
        assert [rules.allowed(cached, ctx, action, target) for ctx, action, target in questions] == expected
    assert [rules.is_admin(cached, ctx) for ctx in (MEMBER, READER, ADMIN)] == [False, False, True]


def test_an_edited_policy_file_rules_once_the_recheck_interval_passed(tmp_path: Path) -> None:
    policy_file = tmp_path / "policy.yaml"
    policy_file.write_text('"plan:create": "role:member"\n')
    clock = Clock()
    enforcer = policy.CachingEnforcer(_conf(policy_file), recheck_interval=1.0, clock=clock)
    enforcer.register_defaults(policy.list_rules())
    assert rules.allowed(enforcer, MEMBER, "plan:create")

    policy_file.write_text('"plan:create": "role:nobody"\n')
    later = policy_file.stat().st_mtime + 10  # newer than the first file, whatever the filesystem's resolution
    os.utime(policy_file, (later, later))
    clock.now += 0.5
    assert rules.allowed(enforcer, MEMBER, "plan:create")  # within the interval: the file is not looked at
    clock.now += 0.6
    assert not rules.allowed(enforcer, MEMBER, "plan:create")
    assert rules.allowed(enforcer, MEMBER, "plan:get")  # the other rules still as they were


def test_rules_set_in_code_drop_the_decisions() -> None:
    enforcer = policy.get_enforcer(_conf())
    assert rules.allowed(enforcer, READER, "plan:get")
    enforcer.set_rules(oslo_policy.Rules.from_dict({"plan:get": "role:nobody"}), overwrite=False)
    assert not rules.allowed(enforcer, READER, "plan:get")
