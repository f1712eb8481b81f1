"""``openstack data protection checkpoint list|show|create|delete|reset state``."""

from __future__ import annotations

import argparse
from typing import Any

from cliff import columns
from osc_lib.command import command

from strongroom.client import output
from strongroom.client.client import ClientError
from strongroom.osc.v1 import common

COLUMNS = ("id", "project_id", "status", "protection_plan.name", "created_at")
DONE = {"available", "error", "deleted", "error-deleting"}
FAILED = {"error", "error-deleting"}


class ListCheckpoints(command.Lister):
    """List a provider's checkpoints."""

    def get_parser(self, prog_name: str) -> argparse.ArgumentParser:
        parser = super().get_parser(prog_name)
        parser.add_argument("provider", metavar="<provider>", help="Provider name or id.")
        parser.add_argument("--plan", "--plan_id", dest="plan", metavar="<plan>", help="Plan name or id.")
        parser.add_argument("--status", metavar="<status>")
        parser.add_argument("--start-date", "--start_date", dest="start_date", metavar="<date>")
        parser.add_argument("--end-date", "--end_date", dest="end_date", metavar="<date>")
        parser.add_argument("--project", "--project_id", dest="project", metavar="<project_id>")
        common.add_list_options(parser)
        return parser

    def take_action(self, args: argparse.Namespace) -> Any:
        c = common.client_of(self)
        filters = {"plan_id": common.plan_id(c, args.plan) if args.plan else None, "status": args.status,
                   "start_date": args.start_date, "end_date": args.end_date, "project_id": args.project}
        items = common.call(c.list_checkpoints, common.provider_id(c, args.provider),
                            **common.list_params(args, **filters))
        return common.rows(COLUMNS, items)


class ShowCheckpoint(command.ShowOne):
    """Show a checkpoint."""

    def get_parser(self, prog_name: str) -> argparse.ArgumentParser:
        parser = super().get_parser(prog_name)
        parser.add_argument("provider", metavar="<provider>", help="Provider name or id.")
        parser.add_argument("checkpoint", metavar="<checkpoint_id>")
        return parser

    def take_action(self, args: argparse.Namespace) -> Any:
        c = common.client_of(self)
        return shown(common.call(c.show_checkpoint, common.provider_id(c, args.provider), args.checkpoint))


class ResourceTreeColumn(columns.FormattableColumn):  # type: ignore[misc]
    """``resource_graph``: an indented tree of the resources in a table, Karbor's JSON text in ``-f json``."""

    def __init__(self, graph: Any, resources: list[dict[str, Any]]) -> None:
        super().__init__(graph)
        self._resources = resources

    def human_readable(self) -> str:
        return output.resource_tree(self._resources)

    def machine_readable(self) -> Any:
        return self._value


class ResourcesColumn(columns.FormattableColumn):  # type: ignore[misc]
    """``resources``: their totals in a table, the list itself in ``-f json``."""

    def human_readable(self) -> str:
        return output.resources_total(self._value)

    def machine_readable(self) -> Any:
        return self._value


def shown(cp: dict[str, Any]) -> tuple[tuple[str, ...], tuple[Any, ...]]:
    """A checkpoint for ``checkpoint show``: :func:`common.one`, the resource graph drawn as a tree."""
    keys, values = common.one(cp)
    resources = cp.get("resources")
    if not resources or not isinstance(resources, list) or not all(isinstance(item, dict) for item in resources):
        return keys, values  # an older server, or a graph it could not read: as it is
    special = {"resource_graph": ResourceTreeColumn(cp.get("resource_graph"), resources),
               "resources": ResourcesColumn(resources)}
    return keys, tuple(special.get(key, value) for key, value in zip(keys, values, strict=True))


class CreateCheckpoint(command.ShowOne):
    """Take a checkpoint of a plan."""

    def get_parser(self, prog_name: str) -> argparse.ArgumentParser:
        parser = super().get_parser(prog_name)
        parser.add_argument("provider", metavar="<provider>", help="Provider name or id.")
        parser.add_argument("plan", metavar="<plan>", help="Plan name or id.")
        parser.add_argument("--extra-info", "--extra_info", dest="extra_info", action="append",
                            metavar="<key=value[,key=value]>")
        common.add_wait(parser)
        return parser

    def take_action(self, args: argparse.Namespace) -> Any:
        c = common.client_of(self)
        provider = common.provider_id(c, args.provider)
        cp = common.call(c.create_checkpoint, provider, common.plan_id(c, args.plan),
                         common.key_values(args.extra_info, "--extra-info"))
        if args.wait:
            cp = common.wait(args, lambda: c.show_checkpoint(provider, cp["id"]), DONE, FAILED, True,
                             cp["id"]) or cp
        return shown(cp)


class DeleteCheckpoint(command.Command):
    """Delete checkpoints."""

    def get_parser(self, prog_name: str) -> argparse.ArgumentParser:
        parser = super().get_parser(prog_name)
        parser.add_argument("provider", metavar="<provider>", help="Provider name or id.")
        parser.add_argument("checkpoints", metavar="<checkpoint_id>", nargs="+")
        common.add_wait(parser)
        return parser

    def take_action(self, args: argparse.Namespace) -> None:
        c = common.client_of(self)
        provider = common.provider_id(c, args.provider)
        for cid in args.checkpoints:
            common.call(c.delete_checkpoint, provider, cid)
        for cid in args.checkpoints if args.wait else ():
            def fetch(cid: str = cid) -> dict[str, Any] | None:
                try:
                    return c.show_checkpoint(provider, cid)
                except ClientError as err:
                    if err.status == 404:
                        return None
                    raise

            common.wait(args, fetch, {"deleted", "error-deleting", "error"}, FAILED, False, cid)


class ResetCheckpointState(command.Command):
    """Reset a checkpoint's state (admin)."""

    def get_parser(self, prog_name: str) -> argparse.ArgumentParser:
        parser = super().get_parser(prog_name)
        parser.add_argument("provider", metavar="<provider>", help="Provider name or id.")
        parser.add_argument("checkpoints", metavar="<checkpoint_id>", nargs="+")
        group = parser.add_mutually_exclusive_group()
        group.add_argument("--available", dest="state", action="store_const", const="available")
        group.add_argument("--error", dest="state", action="store_const", const="error")
        parser.set_defaults(state="error")
        return parser

    def take_action(self, args: argparse.Namespace) -> None:
        c = common.client_of(self)
        provider = common.provider_id(c, args.provider)
        for cid in args.checkpoints:
            common.call(c.reset_checkpoint_state, provider, cid, args.state)
