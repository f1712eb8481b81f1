"""``openstack data protection restore|verification list|show|create``."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from osc_lib.command import command

from strongroom.osc.v1 import common

RESTORE_COLUMNS = ("id", "project_id", "provider_id", "checkpoint_id", "restore_target", "status")
VERIFICATION_COLUMNS = ("id", "project_id", "provider_id", "checkpoint_id", "status")
DONE = {"success", "fail"}
FAILED = {"fail"}


class _List(command.Lister):
    kind = "restore"

    def get_parser(self, prog_name: str) -> argparse.ArgumentParser:
        parser = super().get_parser(prog_name)
        parser.add_argument("--status", metavar="<status>")
        parser.add_argument("--checkpoint", "--checkpoint_id", dest="checkpoint", metavar="<checkpoint_id>")
        common.add_list_options(parser)
        return parser

    def take_action(self, args: argparse.Namespace) -> Any:
        c = common.client_of(self)
        params = common.list_params(args, status=args.status, checkpoint_id=args.checkpoint)
        if self.kind == "restore":
            return common.rows(RESTORE_COLUMNS, common.call(c.list_restores, **params))
        return common.rows(VERIFICATION_COLUMNS, common.call(c.list_verifications, **params))


class _Show(command.ShowOne):
    kind = "restore"

    def get_parser(self, prog_name: str) -> argparse.ArgumentParser:
        parser = super().get_parser(prog_name)
        parser.add_argument("ident", metavar=f"<{self.kind}_id>")
        return parser

    def take_action(self, args: argparse.Namespace) -> Any:
        c = common.client_of(self)
        show = c.show_restore if self.kind == "restore" else c.show_verification
        return common.one(common.call(show, args.ident))


class _Create(command.ShowOne):
    kind = "restore"

    def get_parser(self, prog_name: str) -> argparse.ArgumentParser:
        parser = super().get_parser(prog_name)
        parser.add_argument("provider", metavar="<provider>", help="Provider name or id.")
        parser.add_argument("checkpoint", metavar="<checkpoint_id>")
        parser.add_argument("--parameters-json", "--parameters", dest="parameters", metavar="<json>",
                            help="JSON object keyed by type or type#id.")
        if self.kind == "restore":
            parser.add_argument("--restore-target", "--restore_target", dest="restore_target", metavar="<url>")
            parser.add_argument("--restore-name", metavar="<name>", help="Sets restore_name for every resource type.")
        common.add_wait(parser)
        return parser

    def take_action(self, args: argparse.Namespace) -> Any:
        c = common.client_of(self)
        provider = common.provider_id(c, args.provider)
        parameters = common.json_object(args.parameters, "--parameters")
        show: Callable[[str], dict[str, Any]]
        if self.kind == "restore":
            if args.restore_name:
                cp = common.call(c.show_checkpoint, provider, args.checkpoint)
                types = {r.get("type") for r in (cp.get("protection_plan") or {}).get("resources", [])}
                for rtype in sorted(t for t in types if t):
                    parameters.setdefault(rtype, {})["restore_name"] = args.restore_name
            run = common.call(c.create_restore, provider, args.checkpoint, parameters,
                              restore_target=args.restore_target)
            show = c.show_restore
        else:
            run = common.call(c.create_verification, provider, args.checkpoint, parameters)
            show = c.show_verification
        if args.wait:
            run = common.wait(args, lambda: show(run["id"]), DONE, FAILED, True, run["id"]) or run
        return common.one(run)


class ListRestores(_List):
    """List restores."""


class ShowRestore(_Show):
    """Show a restore."""


class CreateRestore(_Create):
    """Restore a checkpoint."""


class ListVerifications(_List):
    """List verifications."""

    kind = "verification"


class ShowVerification(_Show):
    """Show a verification."""

    kind = "verification"


class CreateVerification(_Create):
    """Verify a checkpoint (read every chunk back and check its hash)."""

    kind = "verification"
