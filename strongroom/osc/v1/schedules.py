"""``openstack data protection trigger|scheduledoperation ...``: time triggers and the operations they fire."""

from __future__ import annotations

import argparse
from typing import Any

from osc_lib import exceptions
from osc_lib.command import command

from strongroom.osc.v1 import common

TRIGGER_COLUMNS = ("id", "name", "type", "properties.format", "properties.pattern", "properties.window")
OPERATION_COLUMNS = ("id", "name", "operation_type", "trigger_id", "operation_definition.plan_id", "enabled")
RETENTION_OPTIONS = ("max_backups", "retention_duration", "keep_last", "keep_hourly", "keep_daily", "keep_weekly",
                     "keep_monthly", "keep_yearly")


def _add_properties(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--pattern", metavar="<pattern>", help="Cron expression, or an RFC 5545 VEVENT.")
    parser.add_argument("--pattern-format", dest="pattern_format", choices=["crontab", "calendar"])
    parser.add_argument("--start-time", metavar="<time>")
    parser.add_argument("--end-time", metavar="<time>")
    parser.add_argument("--window", type=int, metavar="<seconds>")
    parser.add_argument("--properties", action="append", metavar="<key=value[,key=value]>",
                        help="Karbor's spelling of the options above.")


def _properties(args: argparse.Namespace) -> dict[str, Any]:
    props = {k: getattr(args, k) for k in ("pattern", "start_time", "end_time", "window")
             if getattr(args, k) is not None}
    if args.pattern_format:
        props["format"] = args.pattern_format
    for key, value in common.key_values(args.properties, "--properties").items():
        props.setdefault(key, value)
    return props


class ListTriggers(command.Lister):
    """List triggers."""

    def get_parser(self, prog_name: str) -> argparse.ArgumentParser:
        parser = super().get_parser(prog_name)
        parser.add_argument("--name", metavar="<name>")
        parser.add_argument("--type", metavar="<type>")
        common.add_list_options(parser)
        return parser

    def take_action(self, args: argparse.Namespace) -> Any:
        c = common.client_of(self)
        items = common.call(c.list_triggers, **common.list_params(args, name=args.name, type=args.type))
        return common.rows(TRIGGER_COLUMNS, items)


class ShowTrigger(command.ShowOne):
    """Show a trigger."""

    def get_parser(self, prog_name: str) -> argparse.ArgumentParser:
        parser = super().get_parser(prog_name)
        parser.add_argument("trigger", metavar="<trigger>", help="Name or id.")
        return parser

    def take_action(self, args: argparse.Namespace) -> Any:
        c = common.client_of(self)
        return common.one(common.call(c.show_trigger, common.trigger_id(c, args.trigger)))


class CreateTrigger(command.ShowOne):
    """Create a time trigger."""

    def get_parser(self, prog_name: str) -> argparse.ArgumentParser:
        parser = super().get_parser(prog_name)
        parser.add_argument("name", metavar="<name>")
        parser.add_argument("type", metavar="<type>", nargs="?", default="time", choices=["time"])
        _add_properties(parser)
        return parser

    def take_action(self, args: argparse.Namespace) -> Any:
        props = _properties(args)
        if "pattern" not in props:
            raise exceptions.CommandError("trigger create: --pattern is required")
        return common.one(common.call(common.client_of(self).create_trigger, args.name, props, args.type))


class UpdateTrigger(command.ShowOne):
    """Rename a trigger or change its schedule."""

    def get_parser(self, prog_name: str) -> argparse.ArgumentParser:
        parser = super().get_parser(prog_name)
        parser.add_argument("trigger", metavar="<trigger>", help="Name or id.")
        parser.add_argument("--name", metavar="<name>")
        _add_properties(parser)
        return parser

    def take_action(self, args: argparse.Namespace) -> Any:
        c = common.client_of(self)
        props = _properties(args)
        if args.name is None and not props:
            raise exceptions.CommandError("trigger update: nothing to change")
        return common.one(common.call(c.update_trigger, common.trigger_id(c, args.trigger), args.name, props))


class DeleteTrigger(command.Command):
    """Delete triggers."""

    def get_parser(self, prog_name: str) -> argparse.ArgumentParser:
        parser = super().get_parser(prog_name)
        parser.add_argument("triggers", metavar="<trigger>", nargs="+", help="Names or ids.")
        return parser

    def take_action(self, args: argparse.Namespace) -> None:
        c = common.client_of(self)
        for name in args.triggers:
            common.call(c.delete_trigger, common.trigger_id(c, name))


class ListScheduledOperations(command.Lister):
    """List scheduled operations."""

    def get_parser(self, prog_name: str) -> argparse.ArgumentParser:
        parser = super().get_parser(prog_name)
        parser.add_argument("--name", metavar="<name>")
        parser.add_argument("--operation-type", metavar="<type>")
        parser.add_argument("--trigger", metavar="<trigger>", help="Trigger name or id.")
        parser.add_argument("--plan", metavar="<plan>", help="Plan name or id.")
        common.add_list_options(parser)
        return parser

    def take_action(self, args: argparse.Namespace) -> Any:
        c = common.client_of(self)
        filters = {"name": args.name, "operation_type": args.operation_type,
                   "trigger_id": common.trigger_id(c, args.trigger) if args.trigger else None,
                   "plan_id": common.plan_id(c, args.plan) if args.plan else None}
        items = common.call(c.list_scheduled_operations, **common.list_params(args, **filters))
        return common.rows(OPERATION_COLUMNS, items)


class ShowScheduledOperation(command.ShowOne):
    """Show a scheduled operation."""

    def get_parser(self, prog_name: str) -> argparse.ArgumentParser:
        parser = super().get_parser(prog_name)
        parser.add_argument("operation", metavar="<scheduled_operation>", help="Name or id.")
        return parser

    def take_action(self, args: argparse.Namespace) -> Any:
        c = common.client_of(self)
        return common.one(common.call(c.show_scheduled_operation, common.scheduled_operation_id(c, args.operation)))


class CreateScheduledOperation(command.ShowOne):
    """Run a plan's protection (or protection with retention) each time a trigger fires."""

    def get_parser(self, prog_name: str) -> argparse.ArgumentParser:
        parser = super().get_parser(prog_name)
        parser.add_argument("name", metavar="<name>")
        parser.add_argument("operation_type", metavar="<operation_type>", choices=["protect", "retention_protect"])
        parser.add_argument("trigger", metavar="<trigger>", help="Trigger name or id.")
        parser.add_argument("operation_definition", metavar="<key=value,...>", nargs="?",
                            help="Karbor's provider_id=...,plan_id=... (or the options below).")
        parser.add_argument("--provider", metavar="<provider>", help="Provider name or id.")
        parser.add_argument("--plan", metavar="<plan>", help="Plan name or id.")
        parser.add_argument("--description", metavar="<description>")
        for option in RETENTION_OPTIONS:
            parser.add_argument("--" + option.replace("_", "-"), dest=option, type=int, metavar="<n>")
        return parser

    def take_action(self, args: argparse.Namespace) -> Any:
        c = common.client_of(self)
        definition: dict[str, Any] = dict(common.key_values(
            [args.operation_definition] if args.operation_definition else None, "operation definition"))
        if args.provider:
            definition["provider_id"] = common.provider_id(c, args.provider)
        if args.plan:
            definition["plan_id"] = common.plan_id(c, args.plan)
        for key in ("provider_id", "plan_id"):
            if key not in definition:
                raise exceptions.CommandError(f"scheduledoperation create: --{key[:-3]} is required")
        for key in RETENTION_OPTIONS:
            if getattr(args, key) is not None:
                definition[key] = getattr(args, key)
            elif key in definition:
                try:
                    definition[key] = int(definition[key])
                except ValueError:
                    raise exceptions.CommandError(f"{key}={definition[key]!r}: not a whole number") from None
        return common.one(common.call(c.create_scheduled_operation, args.name, args.operation_type,
                                      common.trigger_id(c, args.trigger), definition, args.description))


class DeleteScheduledOperation(command.Command):
    """Delete scheduled operations."""

    def get_parser(self, prog_name: str) -> argparse.ArgumentParser:
        parser = super().get_parser(prog_name)
        parser.add_argument("operations", metavar="<scheduled_operation>", nargs="+", help="Names or ids.")
        return parser

    def take_action(self, args: argparse.Namespace) -> None:
        c = common.client_of(self)
        for name in args.operations:
            common.call(c.delete_scheduled_operation, common.scheduled_operation_id(c, name))
