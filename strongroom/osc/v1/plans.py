"""``openstack data protection plan list|show|create|update|delete``."""

from __future__ import annotations

import argparse
from typing import Any

from osc_lib import exceptions
from osc_lib.command import command

from strongroom.osc.v1 import common

COLUMNS = ("id", "name", "description", "provider_id", "status")


def resources_arg(text: str) -> list[dict[str, Any]]:
    """Karbor's ``id=type=name[=extra_info],id=type=name...`` as plan resources (``extra_info`` as JSON)."""
    resources = []
    for part in text.split(","):
        fields = part.split("=", 3)
        if len(fields) < 2 or not fields[0] or not fields[1]:
            raise exceptions.CommandError(f"resource {part!r}: expected id=type[=name[=extra_info]]")
        resource: dict[str, Any] = {"id": fields[0], "type": fields[1]}
        if len(fields) > 2:
            resource["name"] = fields[2]
        if len(fields) > 3:
            resource["extra_info"] = common.json_object(fields[3], f"resource {fields[0]} extra_info")
        resources.append(resource)
    return resources


class ListPlans(command.Lister):
    """List protection plans."""

    def get_parser(self, prog_name: str) -> argparse.ArgumentParser:
        parser = super().get_parser(prog_name)
        parser.add_argument("--name", metavar="<name>")
        parser.add_argument("--status", metavar="<status>")
        common.add_list_options(parser)
        return parser

    def take_action(self, args: argparse.Namespace) -> Any:
        c = common.client_of(self)
        items = common.call(c.list_plans, **common.list_params(args, name=args.name, status=args.status))
        return common.rows(COLUMNS, items)


class ShowPlan(command.ShowOne):
    """Show a plan."""

    def get_parser(self, prog_name: str) -> argparse.ArgumentParser:
        parser = super().get_parser(prog_name)
        parser.add_argument("plan", metavar="<plan>", help="Name or id.")
        return parser

    def take_action(self, args: argparse.Namespace) -> Any:
        c = common.client_of(self)
        return common.one(common.call(c.show_plan, common.plan_id(c, args.plan)))


class CreatePlan(command.ShowOne):
    """Create a plan: a provider and the resources it protects."""

    def get_parser(self, prog_name: str) -> argparse.ArgumentParser:
        parser = super().get_parser(prog_name)
        parser.add_argument("name", metavar="<name>")
        parser.add_argument("provider", metavar="<provider>", help="Provider name or id.")
        parser.add_argument("resources", metavar="<id=type=name[=extra_info],...>",
                            help="The resources, e.g. disk.img=OS::Cinder::Volume=disk.img")
        parser.add_argument("--parameters-json", "--parameters", dest="parameters", metavar="<json>",
                            help="JSON object keyed by type or type#id.")
        parser.add_argument("--description", metavar="<description>")
        return parser

    def take_action(self, args: argparse.Namespace) -> Any:
        c = common.client_of(self)
        plan = common.call(c.create_plan, args.name, common.provider_id(c, args.provider),
                           resources_arg(args.resources), common.json_object(args.parameters, "--parameters"),
                           args.description)
        return common.one(plan)


class UpdatePlan(command.ShowOne):
    """Rename, describe, start or suspend a plan, or replace its resources."""

    def get_parser(self, prog_name: str) -> argparse.ArgumentParser:
        parser = super().get_parser(prog_name)
        parser.add_argument("plan", metavar="<plan>", help="Name or id.")
        parser.add_argument("--name", metavar="<name>")
        parser.add_argument("--description", metavar="<description>")
        parser.add_argument("--resources", metavar="<id=type=name,...>", help="Replaces all resources.")
        parser.add_argument("--status", choices=["suspended", "started"])
        return parser

    def take_action(self, args: argparse.Namespace) -> Any:
        c = common.client_of(self)
        values: dict[str, Any] = {k: getattr(args, k) for k in ("name", "description", "status")
                                  if getattr(args, k) is not None}
        if args.resources:
            values["resources"] = resources_arg(args.resources)
        if not values:
            raise exceptions.CommandError("plan update: nothing to change")
        return common.one(common.call(c.update_plan, common.plan_id(c, args.plan), **values))


class DeletePlan(command.Command):
    """Delete plans."""

    def get_parser(self, prog_name: str) -> argparse.ArgumentParser:
        parser = super().get_parser(prog_name)
        parser.add_argument("plans", metavar="<plan>", nargs="+", help="Names or ids.")
        return parser

    def take_action(self, args: argparse.Namespace) -> None:
        c = common.client_of(self)
        for name in args.plans:
            common.call(c.delete_plan, common.plan_id(c, name))
