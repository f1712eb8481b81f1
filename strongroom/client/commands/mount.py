"""``strongroom mount MOUNTPOINT``: the project's checkpoints as a read-only file system, one raw file per volume.

Layout (doc/file-restore.md, "Mount")::

    MOUNTPOINT/<plan name>/<created_at>_<checkpoint id>/<volume name>.raw

``<plan name>`` is the plan's name, or ``<name>_<plan id>`` when two plans shown share a name (or the plan id
alone when the name cannot be a file name); ``<created_at>`` is the checkpoint's creation time in UTC,
``2026-12-04T19:45:38Z``, so a plain ``ls`` lists a plan's checkpoints oldest first; ``<volume name>`` is the
name the plan gives the volume, or its id (``<name>_<volume id>`` when two volumes of a plan share a name).
Only available checkpoints are shown, as they were when the command started.

Every byte comes through the API with the CLI's own credentials (``GET .../checkpoints/{id}/resources/{key}/data``
with ``Range``): a user on a laptop needs nothing but the API.  Runs in the foreground until Ctrl-C (exit 130)
or SIGTERM (exit 0), and unmounts on the way out.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import errno
import os
import signal
import threading
from typing import TYPE_CHECKING, Any

from strongroom.client.client import Client
from strongroom.client.commands.base import EXIT_FAILED, EXIT_OK, Cli, UsageError

if TYPE_CHECKING:
    from strongroom.client.commands.base import SubParsers

#: The volume resource type: the only one a checkpoint holds data of.
VOLUME_TYPE = "OS::Cinder::Volume"
EXIT_INTERRUPTED = 130


def register(groups: SubParsers) -> None:
    p = groups.add_parser("mount", help="Mount the project's checkpoints read-only (FUSE): one raw file per volume.",
                          description="Mount the project's available checkpoints read-only at MOUNTPOINT, "
                                      "MOUNTPOINT/<plan>/<created_at>_<checkpoint id>/<volume>.raw, in the "
                                      "foreground until Ctrl-C.  `mount -o loop,ro FILE DIR` then shows a "
                                      "volume's file system.")
    p.set_defaults(handler=run)
    p.add_argument("mountpoint", help="An existing empty directory.")
    p.add_argument("--provider", dest="provider_id", metavar="PROVIDER_ID",
                   help="Only this provider's checkpoints (default: every provider's).")
    p.add_argument("--plan", metavar="PLAN", help="Only this plan's checkpoints (its id or its name).")
    p.add_argument("--readahead-mib", type=int, default=4, metavar="MIB",
                   help="Bytes fetched per read of a volume (default 4 MiB, the default chunk size).")
    p.add_argument("--allow-other", action="store_true",
                   help="Let other users (root included) read the mount (needs user_allow_other in "
                        "/etc/fuse.conf unless run as root).")


class ApiVolume:
    """A protected volume of a checkpoint, read through the API's data route in byte ranges."""

    def __init__(self, client: Client, provider_id: str, checkpoint_id: str, resource_key: str) -> None:
        self.client = client
        self.provider_id = provider_id
        self.checkpoint_id = checkpoint_id
        self.resource_key = resource_key
        self._size: int | None = None
        self._lock = threading.Lock()

    @property
    def size(self) -> int:
        with self._lock:
            if self._size is None:
                _, self._size = self.client.read_resource_data(self.provider_id, self.checkpoint_id,
                                                               self.resource_key, 0, 1)
            return self._size

    def read(self, offset: int, length: int) -> bytes:
        """``length`` bytes from ``offset`` (fewer only at the end): a range answered short is asked again
        from where it stopped."""
        parts: list[bytes] = []
        while length > 0:
            data, size = self.client.read_resource_data(self.provider_id, self.checkpoint_id,
                                                        self.resource_key, offset, length)
            self._size = size
            if not data:
                break
            parts.append(data)
            offset += len(data)
            length -= len(data)
        return b"".join(parts)


def _file_name(text: str, fallback: str) -> str:
    """``text`` as one path segment: no slash, NUL or leading/trailing blanks; ``fallback`` when empty."""
    for candidate in (text, fallback):
        name = candidate.replace("/", "_").replace("\0", "").strip()
        if name not in ("", ".", ".."):
            return name
    return "_"


def _created(value: Any) -> str:
    try:
        when = _dt.datetime.fromisoformat(str(value))
    except ValueError:
        return _file_name(str(value), "unknown")
    if when.tzinfo is None:
        when = when.replace(tzinfo=_dt.UTC)
    return when.astimezone(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _unique(items: list[tuple[str, str]]) -> dict[str, str]:
    """``(id, name)`` pairs to ``{id: segment}``: the name, or ``name_id`` where names collide."""
    counts: dict[str, int] = {}
    for _, name in items:
        counts[name] = counts.get(name, 0) + 1
    return {ident: (name if counts[name] == 1 or name == ident else f"{name}_{_file_name(ident, '_')}")
            for ident, name in items}


def build_tree(client: Client, checkpoints: list[dict[str, Any]]) -> dict[str, Any]:
    """The mount's tree from checkpoint records (each with its ``protection_plan``): see the module docstring."""
    plans: dict[str, str] = {}
    for cp in checkpoints:
        plan = cp.get("protection_plan") or {}
        plans.setdefault(str(plan.get("id")), _file_name(str(plan.get("name") or ""), str(plan.get("id"))))
    plan_dirs = _unique(list(plans.items()))
    tree: dict[str, Any] = {}
    for cp in checkpoints:
        plan = cp.get("protection_plan") or {}
        provider_id = str(plan.get("provider_id"))
        volumes = [r for r in plan.get("resources") or [] if r.get("type") == VOLUME_TYPE]
        names = _unique([(str(r["id"]), _file_name(str(r.get("name") or ""), str(r["id"]))) for r in volumes])
        files = {f"{names[str(r['id'])]}.raw": ApiVolume(client, provider_id, str(cp["id"]),
                                                         f"{r['type']}#{r['id']}") for r in volumes}
        plan_dir = tree.setdefault(plan_dirs[str(plan.get("id"))], {})
        plan_dir[f"{_created(cp.get('created_at'))}_{cp['id']}"] = files
    return tree


def _checkpoints(cli: Cli, a: argparse.Namespace) -> list[dict[str, Any]]:
    c = cli.client
    providers = [a.provider_id] if a.provider_id else [str(p["id"]) for p in c.list_providers()]
    plan_ids: set[str] | None = None
    if a.plan:
        matching = [p for p in c.list_plans(follow=True) if a.plan in (p.get("id"), p.get("name"))
                    and (not a.provider_id or p.get("provider_id") == a.provider_id)]
        if not matching:
            raise UsageError(f"--plan {a.plan}: no plan of this project has that id or name")
        plan_ids = {str(p["id"]) for p in matching}
    out: list[dict[str, Any]] = []
    for provider_id in providers:
        for cp in c.list_checkpoints(provider_id, follow=True, status="available"):
            plan_id = str((cp.get("protection_plan") or {}).get("id"))
            if cp.get("status") == "available" and (plan_ids is None or plan_id in plan_ids):
                cp.setdefault("protection_plan", {}).setdefault("provider_id", provider_id)
                out.append(cp)
    return out


def run(cli: Cli, a: argparse.Namespace) -> int:
    if not os.path.isdir(a.mountpoint):
        raise UsageError(f"mountpoint {a.mountpoint}: not a directory")
    if a.readahead_mib <= 0:
        raise UsageError("--readahead-mib must be positive")
    try:
        import pyfuse3  # noqa: F401 - only to say what is missing before listing anything

        from strongroom.client import mountfs
    except ImportError:
        cli.err.write("strongroom: error: mount needs pyfuse3 (pip install 'strongroom[mount]'; building it "
                      "needs libfuse3-dev and pkg-config, running it fuse3)\n")
        return EXIT_FAILED
    checkpoints = _checkpoints(cli, a)
    tree = build_tree(cli.client, checkpoints)

    def mounted() -> None:
        cli.err.write(f"Mounted {len(checkpoints)} checkpoint(s) of {len(tree)} plan(s) at {a.mountpoint} "
                      "(read-only); Ctrl-C to unmount.\n")
        cli.err.flush()

    def failed(exc: BaseException) -> None:
        cli.err.write(f"strongroom: read failed (EIO): {exc}\n")
        cli.err.flush()

    try:
        received = mountfs.serve(tree, a.mountpoint, block=a.readahead_mib * 1024 * 1024,
                                 allow_other=a.allow_other, on_mounted=mounted, on_error=failed)
    except KeyboardInterrupt:  # Ctrl-C before the signal watcher was listening
        received = signal.SIGINT
    except RuntimeError as exc:  # pyfuse3.init: the kernel refused the mount
        cli.err.write(f"strongroom: error: cannot mount at {a.mountpoint}: {exc}\n")
        return EXIT_FAILED
    except OSError as exc:
        if exc.errno in (errno.ENOENT, errno.EACCES, errno.EPERM):
            cli.err.write(f"strongroom: error: cannot mount at {a.mountpoint}: {exc.strerror}\n")
            return EXIT_FAILED
        raise
    cli.err.write(f"Unmounted {a.mountpoint}.\n")
    return EXIT_INTERRUPTED if received == signal.SIGINT else EXIT_OK

