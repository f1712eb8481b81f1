"""The OSC plugin's pieces that need no ``openstack`` process: the catalogue URL's tail, name-or-id lookup,
Karbor's resource spelling, and the command set registered beside python-karborclient's."""

from __future__ import annotations

from importlib import metadata

import pytest
from osc_lib import exceptions

from strongroom.osc import plugin
from strongroom.osc.v1 import common, plans


def test_split_endpoint() -> None:
    assert plugin.split_endpoint("http://h:8799/v1/abc123") == ("http://h:8799", "abc123")
    assert plugin.split_endpoint("http://h:8799/v1/") == ("http://h:8799", None)
    assert plugin.split_endpoint("http://h:8799/") == ("http://h:8799", None)
    assert plugin.split_endpoint("https://h/backup/v1/p") == ("https://h/backup", "p")


def test_find_by_id_then_name_and_ambiguity_names_the_matches() -> None:
    items = [{"id": "a1", "name": "nightly"}, {"id": "b2", "name": "nightly"}, {"id": "c3", "name": "weekly"}]
    assert common.find("plan", items, "b2")["id"] == "b2"
    assert common.find("plan", items, "weekly")["id"] == "c3"
    with pytest.raises(exceptions.CommandError, match=r"2 plans are named 'nightly' \(a1, b2\)"):
        common.find("plan", items, "nightly")
    with pytest.raises(exceptions.CommandError, match="no plan with the name or id 'monthly'"):
        common.find("plan", items, "monthly")


def test_karbor_resource_spelling() -> None:
    assert plans.resources_arg('v1=OS::Cinder::Volume=disk,v2=OS::Cinder::Volume=d2={"k": 1}') == [
        {"id": "v1", "type": "OS::Cinder::Volume", "name": "disk"},
        {"id": "v2", "type": "OS::Cinder::Volume", "name": "d2", "extra_info": {"k": 1}}]
    with pytest.raises(exceptions.CommandError, match="expected id=type"):
        plans.resources_arg("justid")


def test_every_karbor_command_but_quotas_is_registered() -> None:
    ours = {ep.name for ep in metadata.entry_points(group="openstack.data_protection.v1")
            if ep.value.startswith("strongroom.")}
    karbor = {ep.name for ep in metadata.entry_points(group="openstack.data_protection.v1")
              if ep.value.startswith("karborclient.")}
    if not karbor:
        pytest.skip("python-karborclient is not installed")
    assert karbor - ours == {n for n in karbor if "quota" in n}  # Strongroom has no quota classes API yet
    for ep in metadata.entry_points(group="openstack.data_protection.v1"):
        if ep.value.startswith("strongroom."):
            ep.load()  # each names a class that exists


def test_wait_interrupted_prints_the_id_and_ends_as_ctrl_c(capsys: pytest.CaptureFixture[str],
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    import argparse

    def sleep(_seconds: float) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(common.time, "sleep", sleep)
    args = argparse.Namespace(poll_interval=1.0, wait_timeout=60.0)
    with pytest.raises(KeyboardInterrupt):  # cliff turns it into exit code 130
        common.wait(args, lambda: {"id": "cp-1", "status": "protecting"}, {"available"}, set(), True, "cp-1")
    out, err = capsys.readouterr()
    assert out == "cp-1\n" and "interrupted: cp-1 carries on in the service" in err


def test_wait_failed_status_is_a_command_error() -> None:
    import argparse

    args = argparse.Namespace(poll_interval=0.0, wait_timeout=60.0)
    with pytest.raises(exceptions.CommandError, match=r"cp-2: error \(disk on fire\)"):
        common.wait(args, lambda: {"id": "cp-2", "status": "error", "status_reason": "disk on fire"},
                    {"available", "error"}, {"error"}, True, "cp-2")


def test_checkpoint_show_draws_the_graph_in_a_table_and_keeps_the_data_in_json() -> None:
    import argparse
    import io
    import json

    from cliff.formatters.json_format import JSONFormatter
    from cliff.formatters.table import TableFormatter

    from strongroom.osc.v1 import checkpoints

    graph = '[{"0x0": ["OS::Cinder::Volume", "v1", "disk", {}]}, []]'
    resources = [{"id": "v1", "type": "OS::Cinder::Volume", "name": "disk", "depth": 0, "status": "available",
                  "size_bytes": 24 << 20, "stored_bytes": 512 << 10, "seconds": 0.5}]
    columns, data = checkpoints.shown({"id": "cp", "status": "available", "resource_graph": graph,
                                       "resources": resources})
    table = io.StringIO()
    formatter = TableFormatter()
    parser = argparse.ArgumentParser()
    formatter.add_argument_group(parser)
    formatter.emit_one(columns, data, table, parser.parse_args(["--max-width", "0"]))
    text = " ".join(table.getvalue().split())
    assert "OS::Cinder::Volume disk available size 24.0 MiB stored 512.0 KiB took 0.50 s" in text
    assert "1 resource, size 24.0 MiB, stored 512.0 KiB, took 0.50 s" in text and "0x0" not in text
    out = io.StringIO()
    json_formatter = JSONFormatter()
    parser = argparse.ArgumentParser()
    json_formatter.add_argument_group(parser)
    json_formatter.emit_one(columns, data, out, parser.parse_args([]))
    shown = json.loads(out.getvalue())
    assert shown["resource_graph"] == graph and shown["resources"] == resources
    assert checkpoints.shown({"id": "cp", "resource_graph": graph}) == (("id", "resource_graph"), ("cp", graph))
