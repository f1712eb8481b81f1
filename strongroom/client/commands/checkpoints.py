"""``strongroom checkpoint``: checkpoints of a plan, taken, listed, copied to another provider's bank, deleted
(``--wait`` follows them)."""

from __future__ import annotations

import argparse
import functools
from typing import TYPE_CHECKING, Any

from strongroom.client import output
from strongroom.client.client import ClientError
from strongroom.client.commands.base import EXIT_OK, Cli, add_group, add_list_options, add_wait, kv_arg, list_params

if TYPE_CHECKING:
    from strongroom.client.commands.base import SubParsers

COLUMNS = ["id", "project_id", "status", "protection_plan.name", "created_at"]
DONE = {"available", "error", "deleted", "error-deleting"}
FAILED = {"error", "error-deleting"}


def register(groups: SubParsers) -> None:
    g = add_group(groups, "checkpoint", "Checkpoints.", run)
    p = g.add_parser("create")
    p.add_argument("provider_id")
    p.add_argument("plan_id")
    p.add_argument("--extra-info", action="append", metavar="KEY=VALUE")
    add_wait(p)
    p = g.add_parser("list")
    p.add_argument("provider_id")
    add_list_options(p, "plan_id", "status", "start_date", "end_date", "project_id")
    p = g.add_parser("copy", help="Copy checkpoints of a plan to another provider's bank.")
    p.add_argument("provider_id", help="The provider holding the checkpoints.")
    p.add_argument("plan_id")
    p.add_argument("--to", dest="target_provider_id", required=True, metavar="PROVIDER_ID",
                   help="The provider whose bank receives the copies.")
    p.add_argument("--checkpoint", dest="checkpoint_id", metavar="CHECKPOINT_ID",
                   help="Copy this checkpoint only (default: every available one the target lacks).")
    p.add_argument("--retention-lock-days", type=int, metavar="DAYS",
                   help="Lock the copies in the target's bank this many days after each checkpoint's creation.")
    add_wait(p)
    for name, summary in (("ls", "List a directory inside a checkpoint's volume (no restore needed)."),
                          ("cat", "Write a file from inside a checkpoint's volume to standard output."),
                          ("get", "Download a file from inside a checkpoint's volume."),
                          ("stat", "Show one file inside a checkpoint's volume.")):
        p = g.add_parser(name, help=summary)
        p.add_argument("provider_id")
        p.add_argument("checkpoint_id")
        p.add_argument("where", nargs="+", metavar="[RESOURCE] PATH",
                       help="The volume (OS::Cinder::Volume#<id> or its id; default: the checkpoint's only one) "
                            "and an absolute path.")
        p.add_argument("--partition", type=int, help="The partition's number (default: the largest readable).")
        if name == "get":
            p.add_argument("-o", "--output", help="Where to write it (default: the file's name, here).")
    p = g.add_parser("volume", help="Show a checkpoint's volume: partition table and filesystems.")
    p.add_argument("provider_id")
    p.add_argument("checkpoint_id")
    p.add_argument("resource", nargs="?")
    p = g.add_parser("diff", help="What changed between two checkpoints of one volume.")
    p.add_argument("provider_id")
    p.add_argument("checkpoint_id")
    p.add_argument("other_checkpoint_id", metavar="TO_CHECKPOINT_ID")
    p.add_argument("--resource", help="The volume (default: the checkpoint's only one).")
    p.add_argument("--path", help="Also list the files changed under this directory.")
    p.add_argument("--partition", type=int)
    for name in ("show", "delete", "reset-state"):
        p = g.add_parser(name)
        p.add_argument("provider_id")
        p.add_argument("checkpoint_id")
        if name == "delete":
            add_wait(p)
        if name == "reset-state":
            p.add_argument("--state", choices=["available", "error"], required=True)


def run(cli: Cli, a: argparse.Namespace) -> int:
    c = cli.client
    if a.action == "create":
        return _create(cli, a)
    if a.action == "copy":
        return _copy(cli, a)
    if a.action in FILE_ACTIONS:
        return FILE_ACTIONS[a.action](cli, a)
    if a.action == "list":
        cli.emit_list(COLUMNS, c.list_checkpoints(
            a.provider_id, **list_params(a, "plan_id", "status", "start_date", "end_date", "project_id")))
    elif a.action == "show":
        cp = c.show_checkpoint(a.provider_id, a.checkpoint_id)
        cli.emit_one(output.readable_checkpoint(cp) if a.format == "table" else cp)
    elif a.action == "delete":
        return _delete(cli, a)
    else:
        c.reset_checkpoint_state(a.provider_id, a.checkpoint_id, a.state)
        cli.err.write(f"Checkpoint {a.checkpoint_id} reset to {a.state}.\n")
    return EXIT_OK


def _create(cli: Cli, a: argparse.Namespace) -> int:
    c = cli.client
    cp = c.create_checkpoint(a.provider_id, a.plan_id, kv_arg(a.extra_info, "--extra-info"))
    code = EXIT_OK
    if a.wait:
        code, final = cli.wait(lambda: c.show_checkpoint(a.provider_id, cp["id"]), DONE, FAILED, show_bytes=True,
                               ident=cp["id"])
        cp = final or cp
    cli.emit_one(output.readable_checkpoint(cp) if a.format == "table" else cp)
    return code


def _copy(cli: Cli, a: argparse.Namespace) -> int:
    c = cli.client
    started = c.copy_checkpoints(a.provider_id, a.plan_id, a.target_provider_id, a.checkpoint_id,
                                 a.retention_lock_days)
    ids = list(started.get("checkpoints") or [])
    if not ids:
        cli.err.write(f"Nothing to copy: provider {a.target_provider_id} holds every available checkpoint "
                      f"of plan {a.plan_id}.\n")
    code = EXIT_OK
    copies = [{"id": cid, "provider_id": a.target_provider_id, "status": "copying", "status_reason": None}
              for cid in ids]
    if a.wait:
        for i, cid in enumerate(ids):  # followed in turn (the service may run them side by side)
            cli.err.write(f"{cid} ({i + 1}/{len(ids)})\n")
            result, final = cli.wait(functools.partial(c.show_checkpoint, a.target_provider_id, cid), DONE,
                                     FAILED, show_bytes=True, ident=cid)
            if final is not None:
                copies[i].update(status=final.get("status"), status_reason=final.get("status_reason"))
            code = max(code, result)
    cli.emit_list(["id", "provider_id", "status", "status_reason"], copies)
    return code


def _delete(cli: Cli, a: argparse.Namespace) -> int:
    c = cli.client
    c.delete_checkpoint(a.provider_id, a.checkpoint_id)
    if a.wait:
        def fetch() -> dict[str, Any] | None:
            try:
                return c.show_checkpoint(a.provider_id, a.checkpoint_id)
            except ClientError as err:
                if err.status == 404:
                    return None
                raise

        code, _final = cli.wait(fetch, {"deleted", "error-deleting", "error"}, FAILED, show_bytes=False,
                                ident=a.checkpoint_id)
        if code != EXIT_OK:
            cli.err.write(f"Checkpoint {a.checkpoint_id} was not deleted.\n")
            return code
    cli.err.write(f"Checkpoint {a.checkpoint_id} {'deleted' if a.wait else 'is being deleted'}.\n")
    return EXIT_OK


FILE_COLUMNS = ["type", "mode", "uid", "gid", "size", "mtime", "name", "target"]


def _where(a: argparse.Namespace) -> tuple[str | None, str]:
    if len(a.where) > 2:
        raise ClientError(0, f"expected [RESOURCE] PATH, got {len(a.where)} arguments")
    return (a.where[0], a.where[1]) if len(a.where) == 2 else (None, a.where[0])


def _ls(cli: Cli, a: argparse.Namespace) -> int:
    resource, path = _where(a)
    listing = cli.client.list_checkpoint_files(a.provider_id, a.checkpoint_id, path, resource, a.partition)
    cli.emit_list(FILE_COLUMNS, listing["files"])
    return EXIT_OK


def _stat(cli: Cli, a: argparse.Namespace) -> int:
    resource, path = _where(a)
    found = cli.client.stat_checkpoint_file(a.provider_id, a.checkpoint_id, path, resource, a.partition)
    cli.emit_one({**found["file"], "filesystem": found["filesystem"]})
    return EXIT_OK


def _cat(cli: Cli, a: argparse.Namespace) -> int:
    resource, path = _where(a)
    out = getattr(cli.out, "buffer", None)
    if out is None:  # a text stream without bytes underneath (tests): decode as the file's text
        def sink(data: bytes) -> None:
            cli.out.write(data.decode("utf-8", "replace"))
    else:
        cli.out.flush()
        sink = out.write
    cli.client.download_checkpoint_file(a.provider_id, a.checkpoint_id, path, sink, resource, a.partition)
    if out is not None:
        out.flush()
    return EXIT_OK


def _get(cli: Cli, a: argparse.Namespace) -> int:
    import os
    import posixpath

    resource, path = _where(a)
    target = a.output or posixpath.basename(path.rstrip("/")) or "file"
    partial = f"{target}.part"
    try:
        with open(partial, "wb") as f:
            size = cli.client.download_checkpoint_file(a.provider_id, a.checkpoint_id, path, f.write, resource,
                                                       a.partition)
        os.replace(partial, target)
    finally:
        if os.path.exists(partial):
            os.unlink(partial)
    cli.err.write(f"{path}: {size} bytes written to {target}\n")
    return EXIT_OK


def _volume(cli: Cli, a: argparse.Namespace) -> int:
    layout = cli.client.show_checkpoint_volume(a.provider_id, a.checkpoint_id, a.resource)
    cli.emit_list(["number", "offset", "size", "type", "name", "filesystem"], layout["partitions"]) \
        if layout["partitions"] else cli.emit_one(layout)
    return EXIT_OK


def _diff(cli: Cli, a: argparse.Namespace) -> int:
    found = cli.client.diff_checkpoints(a.provider_id, a.checkpoint_id, a.other_checkpoint_id, a.resource,
                                        a.path, a.partition)
    if a.format != "table":
        cli.emit_one(found)
        return EXIT_OK
    ranges = found["changed_ranges"]
    cli.out.write(f"{found['resource']}: {found['changed_bytes']} bytes changed in {len(ranges)} ranges "
                  f"from {found['from']} to {found['to']}\n")
    for offset, length in ranges[:50]:
        cli.out.write(f"  bytes {offset}-{offset + length - 1} ({length})\n")
    if len(ranges) > 50:
        cli.out.write(f"  ... {len(ranges) - 50} more (-f json lists them all)\n")
    files = found.get("files")
    if files is not None:
        for mark, key in (("+", "added"), ("-", "removed"), ("M", "modified")):
            for entry in files[key]:
                extra = f" ({', '.join(entry['changed'])})" if key == "modified" else ""
                cli.out.write(f"{mark} {entry['path']}{extra}\n")
    return EXIT_OK


FILE_ACTIONS = {"ls": _ls, "stat": _stat, "cat": _cat, "get": _get, "volume": _volume, "diff": _diff}
