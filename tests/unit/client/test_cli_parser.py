"""The command tree the ``strongroom`` CLI assembles from its group modules (no server needed)."""

from __future__ import annotations

import argparse

import pytest

from strongroom.client.cli import build_parser
from strongroom.client.commands import GROUPS

TREE = {
    "provider": ["list", "show"],
    "protectable": ["list", "show", "instances", "instance"],
    "plan": ["create", "list", "show", "update", "delete"],
    "checkpoint": ["create", "list", "copy", "ls", "cat", "get", "stat", "volume", "diff", "show", "delete",
                   "reset-state"],
    "restore": ["create", "list", "show"],
    "verification": ["create", "list", "show"],
    "operationlog": ["list", "show"],
    "trigger": ["create", "list", "show", "update", "delete"],
    "scheduledoperation": ["create", "list", "show", "delete", "suspend", "resume", "logs"],
    "service": ["list", "disable", "enable"],
    "alert": ["list"],
    "usage": [],  # ``strongroom usage`` takes no action
    "pool": ["list"],
    "mount": [],  # ``strongroom mount MOUNTPOINT`` takes no action
}


def _choices(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    actions = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(actions[0].choices) if actions else {}


def test_groups_and_actions_in_help_order() -> None:
    groups = _choices(build_parser())
    assert list(groups) == list(TREE)
    assert {name: list(_choices(parser)) for name, parser in groups.items()} == TREE


def test_each_group_is_run_by_a_function_of_its_own_module() -> None:
    parser = build_parser()
    assert parser.get_default("handler") is None  # only the group parsers set it
    modules = {module.__name__ for module in GROUPS}
    for group, group_parser in _choices(parser).items():
        handler = group_parser.get_default("handler")
        assert callable(handler) and handler.__module__ in modules, group


def test_a_missing_action_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        build_parser().parse_args(["plan"])
    assert info.value.code == 2
    assert "strongroom plan: error: the following arguments are required: action" in capsys.readouterr().err
