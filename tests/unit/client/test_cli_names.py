"""The ``strongroom`` CLI takes a plan, provider, trigger or scheduled operation by name wherever it takes its
id, and ``checkpoint show`` draws the resource graph as a tree; against the in-process API server."""

from __future__ import annotations

import functools
import json

import cliharness
import pytest
from apiharness import PROVIDER_ID, VOLUME, Stack

PROJECT = "cli-names"
run = functools.partial(cliharness.run, project=PROJECT)
run_json = functools.partial(cliharness.run_json, project=PROJECT)
PROVIDER_NAME = "OS Infra Provider"


def test_names_wherever_an_id_is_taken(stack: Stack, capsys: pytest.CaptureFixture[str]) -> None:
    plan = stack.add_plan(project=PROJECT, name="nightly")
    assert run_json(stack, capsys, "provider", "show", PROVIDER_NAME)["id"] == PROVIDER_ID
    assert run_json(stack, capsys, "plan", "show", "nightly")["id"] == plan.id
    made = run_json(stack, capsys, "plan", "create", "weekly", PROVIDER_NAME, "--resource", f"{VOLUME}=vol-02")
    assert made["provider_id"] == PROVIDER_ID
    assert run_json(stack, capsys, "plan", "update", "weekly", "--name", "weekly-2")["id"] == made["id"]

    cp = run_json(stack, capsys, "checkpoint", "create", PROVIDER_NAME, "nightly")
    assert cp["protection_plan"]["id"] == plan.id
    listed = run_json(stack, capsys, "checkpoint", "list", PROVIDER_NAME, "--plan-id", "nightly")
    assert [c["id"] for c in listed] == [cp["id"]]
    assert run_json(stack, capsys, "checkpoint", "show", PROVIDER_NAME, cp["id"])["id"] == cp["id"]
    logs = run_json(stack, capsys, "operationlog", "list", "--plan-id", "nightly")
    assert all(log["plan_id"] == plan.id for log in logs)

    trigger = run_json(stack, capsys, "trigger", "create", "at two", "--pattern", "0 2 * * *")
    assert run_json(stack, capsys, "trigger", "show", "at two")["id"] == trigger["id"]
    op = run_json(stack, capsys, "scheduledoperation", "create", "nightly run", "protect", "at two",
                  "--provider-id", PROVIDER_NAME, "--plan-id", "nightly")
    assert (op["trigger_id"], op["operation_definition"]) == (
        trigger["id"], {"provider_id": PROVIDER_ID, "plan_id": plan.id})
    assert run_json(stack, capsys, "scheduledoperation", "show", "nightly run")["id"] == op["id"]
    assert run_json(stack, capsys, "scheduledoperation", "suspend", "nightly run")["enabled"] is False
    listed = run_json(stack, capsys, "scheduledoperation", "list", "--trigger-id", "at two")
    assert [o["id"] for o in listed] == [op["id"]]
    code, _, err = run(stack, capsys, "scheduledoperation", "delete", "nightly run")
    assert code == 0 and op["id"] in err
    code, _, err = run(stack, capsys, "plan", "delete", "weekly-2")
    assert code == 0 and made["id"] in err


def test_an_ambiguous_or_unknown_name_is_a_clear_error(stack: Stack, capsys: pytest.CaptureFixture[str]) -> None:
    calls = len(stack.endpoint.calls)
    first, second = stack.add_plan(project=PROJECT, name="twin"), stack.add_plan(project=PROJECT, name="twin")
    code, out, err = run(stack, capsys, "plan", "show", "twin")
    assert code == 1 and not out
    assert "2 plans are named 'twin'" in err and first.id in err and second.id in err and "give the id" in err
    code, _, err = run(stack, capsys, "checkpoint", "create", PROVIDER_ID, "nope")
    assert code == 1 and "no plan with the name or id 'nope'" in err
    code, _, err = run(stack, capsys, "checkpoint", "list", "no-such-provider")
    assert code == 1 and "no provider with the name or id 'no-such-provider'" in err
    code, _, err = run(stack, capsys, "trigger", "show", "nightly")
    assert code == 1 and "no trigger with the name or id 'nightly'" in err
    code, _, err = run(stack, capsys, "scheduledoperation", "show", "nightly")
    assert code == 1 and "no scheduled operation with the name or id 'nightly'" in err
    assert "protect" not in stack.endpoint.calls[calls:]  # nothing was asked of the service
    # An id is an id: no lookup, the service's own 404.
    code, _, err = run(stack, capsys, "plan", "show", "4f7e3a52-0c1d-4b7e-9f1a-2d3c4b5a6e7f")
    assert code == 1 and "HTTP 404" in err


def test_checkpoint_show_draws_the_resource_graph_as_a_tree(stack: Stack, capsys: pytest.CaptureFixture[str]) -> None:
    graph = json.dumps([{"0x0": ["OS::Keystone::Project", "proj", "", {}],
                         "0x1": [VOLUME, "vol-01", "volume 1", {}], "0x2": [VOLUME, "vol-02", "", {}]},
                        [["0x0", ["0x1", "0x2"]]]])
    protected = {f"{VOLUME}#vol-01": {"size_bytes": 24 << 20, "bytes_stored": 1 << 20, "status": "available",
                                      "seconds": 1.25},
                 f"{VOLUME}#vol-02": {"size_bytes": 3 << 30, "bytes_stored": 0, "status": "available",
                                      "seconds": 125.0}}
    cp = stack.add_checkpoint(project=PROJECT, resource_graph=graph, extra_info={"protected": protected})
    code, out, err = run(stack, capsys, "checkpoint", "show", PROVIDER_ID, cp.id)
    assert code == 0, err
    assert "0x0" not in out  # not the packed JSON
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("| resource_graph"))
    tree = [" ".join(line.split("|")[2].split()) for line in lines[start:start + 3]]
    assert tree == [
        "OS::Keystone::Project proj available size - stored - took -",
        "OS::Cinder::Volume volume 1 available size 24.0 MiB stored 1.0 MiB took 1.25 s",
        "OS::Cinder::Volume vol-02 available size 3.0 GiB stored 0 B took 2m05s"]
    assert lines[start + 1].split("|")[2].startswith("   OS::Cinder::Volume")  # indented under the project
    assert any("3 resources, size 3.0 GiB, stored 1.0 MiB, took 2m06s" in line for line in lines)
    code, out, _ = run(stack, capsys, "checkpoint", "show", PROVIDER_ID,
                       stack.add_checkpoint(project=PROJECT, resource_graph="not a graph").id)
    assert code == 0 and "not a graph" in out  # what the server could not read is shown as it is
    shown = run_json(stack, capsys, "checkpoint", "show", PROVIDER_ID, cp.id)
    assert shown["resource_graph"] == graph
    assert [(r["id"], r["depth"], r["size_bytes"], r["stored_bytes"], r["seconds"]) for r in shown["resources"]] == [
        ("proj", 0, None, None, None), ("vol-01", 1, 24 << 20, 1 << 20, 1.25), ("vol-02", 1, 3 << 30, 0, 125.0)]
