"""``openstack data protection provider|protectable|operationlog|service ...``: what the service offers and
reports."""

from __future__ import annotations

import argparse
from typing import Any

from osc_lib import exceptions
from osc_lib.command import command

from strongroom.osc.v1 import common

PROVIDER_COLUMNS = ("id", "name", "description")
INSTANCE_COLUMNS = ("id", "type", "name")
LOG_COLUMNS = ("id", "operation_type", "status", "checkpoint_id", "plan_id", "restore_id", "started_at",
               "ended_at")
SERVICE_COLUMNS = ("id", "binary", "host", "status", "state", "updated_at", "disabled_reason")


class ListProviders(command.Lister):
    """List providers."""

    def get_parser(self, prog_name: str) -> argparse.ArgumentParser:
        parser = super().get_parser(prog_name)
        common.add_list_options(parser, all_projects=False)
        return parser

    def take_action(self, args: argparse.Namespace) -> Any:
        c = common.client_of(self)
        return common.rows(PROVIDER_COLUMNS, common.call(c.list_providers, **common.list_params(args)))


class ShowProvider(command.ShowOne):
    """Show a provider."""

    def get_parser(self, prog_name: str) -> argparse.ArgumentParser:
        parser = super().get_parser(prog_name)
        parser.add_argument("provider", metavar="<provider>", help="Name or id.")
        return parser

    def take_action(self, args: argparse.Namespace) -> Any:
        c = common.client_of(self)
        return common.one(common.call(c.show_provider, common.provider_id(c, args.provider)))


class ListProtectables(command.Lister):
    """List the protectable resource types."""

    def take_action(self, args: argparse.Namespace) -> Any:
        c = common.client_of(self)
        return ("protectable_type",), [(t,) for t in common.call(c.list_protectables)]


class ShowProtectable(command.ShowOne):
    """Show a protectable type (what it depends on)."""

    def get_parser(self, prog_name: str) -> argparse.ArgumentParser:
        parser = super().get_parser(prog_name)
        parser.add_argument("protectable_type", metavar="<protectable_type>")
        return parser

    def take_action(self, args: argparse.Namespace) -> Any:
        return common.one(common.call(common.client_of(self).show_protectable, args.protectable_type))


class ListProtectableInstances(command.Lister):
    """List the instances of a protectable type (what a plan can name)."""

    def get_parser(self, prog_name: str) -> argparse.ArgumentParser:
        parser = super().get_parser(prog_name)
        parser.add_argument("protectable_type", metavar="<protectable_type>")
        parser.add_argument("--parameters-json", "--parameters", dest="parameters", metavar="<json>")
        common.add_list_options(parser, all_projects=False)
        return parser

    def take_action(self, args: argparse.Namespace) -> Any:
        c = common.client_of(self)
        items = common.call(c.list_protectable_instances, args.protectable_type,
                            common.json_object(args.parameters, "--parameters"), **common.list_params(args))
        return common.rows(INSTANCE_COLUMNS, items)


class ShowProtectableInstance(command.ShowOne):
    """Show one instance of a protectable type."""

    def get_parser(self, prog_name: str) -> argparse.ArgumentParser:
        parser = super().get_parser(prog_name)
        parser.add_argument("protectable_type", metavar="<protectable_type>")
        parser.add_argument("instance", metavar="<instance_id>")
        parser.add_argument("--parameters-json", "--parameters", dest="parameters", metavar="<json>")
        return parser

    def take_action(self, args: argparse.Namespace) -> Any:
        c = common.client_of(self)
        return common.one(common.call(c.show_protectable_instance, args.protectable_type, args.instance,
                                      common.json_object(args.parameters, "--parameters")))


class ListOperationLogs(command.Lister):
    """List operation logs (protect, restore, verify, delete, copy runs)."""

    def get_parser(self, prog_name: str) -> argparse.ArgumentParser:
        parser = super().get_parser(prog_name)
        for name in ("status", "checkpoint_id", "plan_id", "restore_id", "operation_type"):
            parser.add_argument("--" + name.replace("_", "-"), dest=name, metavar=f"<{name}>")
        common.add_list_options(parser)
        return parser

    def take_action(self, args: argparse.Namespace) -> Any:
        c = common.client_of(self)
        filters = {k: getattr(args, k) for k in ("status", "checkpoint_id", "plan_id", "restore_id",
                                                 "operation_type")}
        return common.rows(LOG_COLUMNS, common.call(c.list_operation_logs, **common.list_params(args, **filters)))


class ShowOperationLog(command.ShowOne):
    """Show an operation log."""

    def get_parser(self, prog_name: str) -> argparse.ArgumentParser:
        parser = super().get_parser(prog_name)
        parser.add_argument("operation_log", metavar="<operation_log_id>")
        return parser

    def take_action(self, args: argparse.Namespace) -> Any:
        return common.one(common.call(common.client_of(self).show_operation_log, args.operation_log))


class ListServices(command.Lister):
    """List the services, up or down (admin)."""

    def get_parser(self, prog_name: str) -> argparse.ArgumentParser:
        parser = super().get_parser(prog_name)
        parser.add_argument("--host", metavar="<host>")
        parser.add_argument("--binary", metavar="<binary>")
        return parser

    def take_action(self, args: argparse.Namespace) -> Any:
        c = common.client_of(self)
        return common.rows(SERVICE_COLUMNS, common.call(c.list_services, host=args.host, binary=args.binary))


class _ServiceState(command.ShowOne):
    status = "enabled"

    def get_parser(self, prog_name: str) -> argparse.ArgumentParser:
        parser = super().get_parser(prog_name)
        parser.add_argument("host", metavar="<host>")
        parser.add_argument("binary", metavar="<binary>", help="e.g. strongroom-protection")
        if self.status == "disabled":
            parser.add_argument("--reason", metavar="<reason>")
        return parser

    def take_action(self, args: argparse.Namespace) -> Any:
        c = common.client_of(self)
        matches = [s for s in common.call(c.list_services, host=args.host, binary=args.binary)
                   if s.get("host") == args.host and s.get("binary") == args.binary]
        if not matches:
            raise exceptions.CommandError(f"no {args.binary} service on host {args.host}")
        return common.one(common.call(c.update_service, matches[0]["id"], self.status,
                                      getattr(args, "reason", None)))


class EnableService(_ServiceState):
    """Enable a service."""


class DisableService(_ServiceState):
    """Disable a service (a disabled worker takes no new work)."""

    status = "disabled"
