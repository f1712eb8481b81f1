"""``strongroom restore`` and ``strongroom verification``: runs against a checkpoint (``--wait`` follows them)."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from strongroom.client.client import ClientError
from strongroom.client.commands.base import (
    EXIT_OK,
    Cli,
    Handler,
    add_group,
    add_list_options,
    add_wait,
    json_arg,
    list_params,
)

if TYPE_CHECKING:
    from strongroom.client.commands.base import SubParsers

RESTORE_COLUMNS = ["id", "project_id", "provider_id", "checkpoint_id", "restore_target", "status"]
VERIFICATION_COLUMNS = ["id", "project_id", "provider_id", "checkpoint_id", "status"]
DONE = {"success", "fail"}
FAILED = {"fail"}


def register(groups: SubParsers) -> None:
    handlers: dict[str, Handler] = {"restore": run_restore, "verification": run_verification}
    for kind, handler in handlers.items():
        g = add_group(groups, kind, f"{kind.capitalize()}s.", handler)
        p = g.add_parser("create")
        p.add_argument("provider_id")
        p.add_argument("checkpoint_id")
        p.add_argument("--parameters", help="JSON object keyed by type or type#id.")
        if kind == "restore":
            p.add_argument("--restore-name", help="Sets restore_name for every resource type.")
            p.add_argument("--restore-target")
            p.add_argument("--path", action="append", dest="paths", metavar="PATH",
                           help="Restore these files or directories only (repeatable): fetched from the checkpoint "
                                "as a tar stream without restoring the volume, into --target-dir or --output.")
            p.add_argument("--resource", help="With --path: the volume (default: the checkpoint's only one).")
            p.add_argument("--partition", type=int, help="With --path: the partition's number.")
            p.add_argument("--target-dir", help="With --path: extract the files here.")
            p.add_argument("--output", help="With --path: write the tar stream to this file ('-': standard output).")
        add_wait(p)
        add_list_options(g.add_parser("list"), "status", "checkpoint_id")
        g.add_parser("show").add_argument(f"{kind}_id")


def run_restore(cli: Cli, a: argparse.Namespace) -> int:
    if a.action == "create":
        return _create(cli, a, "restore")
    if a.action == "list":
        cli.emit_list(RESTORE_COLUMNS, cli.client.list_restores(**list_params(a, "status", "checkpoint_id")))
    else:
        cli.emit_one(cli.client.show_restore(a.restore_id))
    return EXIT_OK


def run_verification(cli: Cli, a: argparse.Namespace) -> int:
    if a.action == "create":
        return _create(cli, a, "verification")
    if a.action == "list":
        params = list_params(a, "status", "checkpoint_id")
        cli.emit_list(VERIFICATION_COLUMNS, cli.client.list_verifications(**params))
    else:
        cli.emit_one(cli.client.show_verification(a.verification_id))
    return EXIT_OK


def _restore_paths(cli: Cli, a: argparse.Namespace) -> int:
    """A file-level restore: the checkpoint's files as a tar stream, extracted or written as it arrives."""
    import os
    import tarfile
    import tempfile

    if bool(a.target_dir) == bool(a.output):
        raise ClientError(0, "--path: give exactly one of --target-dir DIR or --output FILE.tar")
    c = cli.client
    if a.output == "-":
        out = getattr(cli.out, "buffer", None)
        if out is None:
            raise ClientError(0, "--output -: standard output takes no bytes here")
        cli.out.flush()
        c.download_checkpoint_archive(a.provider_id, a.checkpoint_id, a.paths, out.write, a.resource, a.partition)
        out.flush()
        return EXIT_OK
    target = a.output or os.path.join(a.target_dir, ".strongroom-restore.tar")
    if a.target_dir:
        os.makedirs(a.target_dir, exist_ok=True)
        fd, target = tempfile.mkstemp(prefix=".strongroom-restore-", suffix=".tar", dir=a.target_dir)
        os.close(fd)
    try:
        with open(target, "wb") as f:
            size = c.download_checkpoint_archive(a.provider_id, a.checkpoint_id, a.paths, f.write, a.resource,
                                                 a.partition)
        if a.target_dir:
            with tarfile.open(target) as tar:
                members = tar.getmembers()
                tar.extractall(a.target_dir, filter="tar")  # refuses absolute paths and '..'
            cli.err.write(f"{len(members)} entries ({size} bytes of tar) restored into {a.target_dir}\n")
        else:
            cli.err.write(f"{size} bytes of tar written to {target}\n")
    finally:
        if a.target_dir and os.path.exists(target):
            os.unlink(target)
    return EXIT_OK


def _create(cli: Cli, a: argparse.Namespace, kind: str) -> int:
    c = cli.client
    if kind == "restore" and a.paths:
        return _restore_paths(cli, a)
    parameters = json_arg(a.parameters, "--parameters")
    show: Callable[[str], dict[str, Any]]
    if kind == "restore":
        if a.restore_name:
            cp = c.show_checkpoint(a.provider_id, a.checkpoint_id)
            types = {r.get("type") for r in (cp.get("protection_plan") or {}).get("resources", [])}
            for rtype in sorted(t for t in types if t):
                parameters.setdefault(rtype, {})["restore_name"] = a.restore_name
        run = c.create_restore(a.provider_id, a.checkpoint_id, parameters, restore_target=a.restore_target)
        show = c.show_restore
    else:
        run = c.create_verification(a.provider_id, a.checkpoint_id, parameters)
        show = c.show_verification
    code = EXIT_OK
    if a.wait:
        code, final = cli.wait(lambda: show(run["id"]), DONE, FAILED, show_bytes=True, ident=run["id"])
        run = final or run
    cli.emit_one(run)
    return code
