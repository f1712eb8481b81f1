"""``strongroom-manage``: operator commands.

    strongroom-manage [--config-file FILE]... db sync
    strongroom-manage [--config-file FILE]... db version
    strongroom-manage [--config-file FILE]... db export FILE
    strongroom-manage [--config-file FILE]... db import FILE [--force | --merge]
    strongroom-manage [--config-file FILE]... bank gc [--provider ID] [--dry-run]
    strongroom-manage [--config-file FILE]... bank leases [--provider ID]
    strongroom-manage [--config-file FILE]... keys rotate [--provider ID] [--keep-old]
    strongroom-manage [--config-file FILE]... keys show [--provider ID]
    strongroom-manage [--config-file FILE]... catalogue rebuild --provider ID [--dry-run] [--verbose]

Each category adds its sub-commands in one
``_add_<category>_commands`` function; a command is a handler
``(conf, args) -> exit code``.  Errors print one line naming what was wrong.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from oslo_config import cfg

from strongroom import exceptions
from strongroom.cmd import transfer_files

if TYPE_CHECKING:
    from strongroom.db.api import Database

Handler = Callable[[cfg.ConfigOpts, argparse.Namespace], int]

PROG = "strongroom-manage"


# -- db ----------------------------------------------------------------------


def _database(conf: cfg.ConfigOpts) -> Database:
    from strongroom import config
    from strongroom.db.api import Database

    return Database(config.database_url(conf))


def db_sync(conf: cfg.ConfigOpts, args: argparse.Namespace) -> int:
    from strongroom import config
    from strongroom.db import drivers, migration

    drivers.check_dbapi(config.database_url(conf))  # every driver the sync needs, before touching anything
    database = _database(conf)
    try:
        database.sync()
        revision = database.version()
        if conf.database.taskflow_persistence:
            from strongroom.protection.flows import FlowPersistence

            flows = FlowPersistence(config.database_url(conf))  # taskflow's own tables, for resumable jobs
            flows.close()
    finally:
        database.dispose()
    head = migration.head()
    suffix = " (head)" if revision == head else f" (head is {head})"
    print(f"Database {database.url_for_display} is at revision {revision}{suffix}.")
    return 0


def db_version(conf: cfg.ConfigOpts, args: argparse.Namespace) -> int:
    database = _database(conf)
    try:
        revision = database.version()
    finally:
        database.dispose()
    if revision is None:
        print("none")
        print(f"{PROG}: {database.url_for_display} has no schema yet; run '{PROG} db sync'.", file=sys.stderr)
    else:
        print(revision)
    return 0


def db_export(conf: cfg.ConfigOpts, args: argparse.Namespace) -> int:
    from strongroom.db import transfer

    database = _database(conf)
    try:
        running = {k: v for k, v in transfer.in_flight(database).items() if v} if database.version() else {}
        if running:
            what = ", ".join(f"{k}: {v}" for k, v in running.items())
            print(f"{PROG}: warning: operations still running ({what}); their progress is not exported "
                  f"(stop the services for a consistent copy)", file=sys.stderr)
        with transfer_files.writer(args.file) as out:
            summary = transfer.export(database, out)
    finally:
        database.dispose()
    report = sys.stderr if args.file == "-" else sys.stdout
    print(f"Exported {summary.describe()} at schema revision {summary.revision} from "
          f"{database.url_for_display} to {args.file}.", file=report)
    return 0


def db_import(conf: cfg.ConfigOpts, args: argparse.Namespace) -> int:
    from strongroom.db import transfer

    mode = transfer.Mode.FORCE if args.force else transfer.Mode.MERGE if args.merge else transfer.Mode.EMPTY
    database = _database(conf)
    try:
        with transfer_files.reader(args.file) as lines:
            summary = transfer.import_(database, lines, mode=mode, name=args.file)
    finally:
        database.dispose()
    print(f"Imported {summary.describe()} from {args.file} (schema revision {summary.revision}) into "
          f"{database.url_for_display}.")
    if summary.describe_skipped():
        print(f"Kept {summary.describe_skipped()} already present.")
    return 0


def _add_db_commands(categories: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    db = categories.add_parser("db", help="metadata store schema")
    commands = db.add_subparsers(dest="command", metavar="COMMAND", required=True)
    sync = commands.add_parser("sync", help="create or upgrade the schema to the newest revision")
    sync.set_defaults(handler=db_sync)
    version = commands.add_parser("version", help="print the schema revision of the database")
    version.set_defaults(handler=db_version)
    export = commands.add_parser("export", help="write every row of the metadata store to FILE (JSON lines; "
                                                "'-' for stdout, FILE.gz compressed)")
    export.add_argument("file", metavar="FILE")
    export.set_defaults(handler=db_export)
    imp = commands.add_parser("import", help="copy an export into the metadata store (its schema is synced "
                                             "first; one transaction)")
    imp.add_argument("file", metavar="FILE", help="an export ('-' for stdin)")
    how = imp.add_mutually_exclusive_group()
    how.add_argument("--force", action="store_true", help="delete the store's rows first and replace them")
    how.add_argument("--merge", action="store_true",
                     help="keep the store's rows and add the file's rows it lacks")
    imp.set_defaults(handler=db_import)


# -- bank ----------------------------------------------------------------------


def _providers(conf: cfg.ConfigOpts, provider_id: str | None) -> tuple[Any, list[Any]]:
    from strongroom import config, keys
    from strongroom.protection.providers import ProviderRegistry
    from strongroom.service import resolve_providers_dir

    registry = ProviderRegistry.load(resolve_providers_dir(conf), conf.state_dir, bank_retry=config.bank_retry(conf),
                                     kek=keys.kek_source(conf))
    return registry, [registry.get(provider_id)] if provider_id else registry.providers()


def _each_bank(conf: cfg.ConfigOpts, provider_id: str | None, step: Callable[[Any], None]) -> int:
    """``step(provider)`` for each provider's bank (or one's); a step's error is one line naming the bank, and
    the next bank is still done.  Returns the exit code: 1 if any step failed."""
    registry, providers = _providers(conf, provider_id)
    failed = 0
    try:
        for provider in providers:
            try:
                step(provider)
            except (exceptions.StrongroomError, ValueError) as err:
                print(f"{provider.bank_description}: {err}", file=sys.stderr)
                failed += 1
    finally:
        registry.close()
    return 1 if failed else 0


def bank_gc(conf: cfg.ConfigOpts, args: argparse.Namespace) -> int:
    """One garbage collection pass, as this command's own lease holder."""
    import socket
    import uuid

    from strongroom import config
    from strongroom.clock import Clock
    from strongroom.db.api import Database
    from strongroom.protection.catalogue import Catalogues
    from strongroom.protection.collection import collect
    from strongroom.protection.leases import BankLeases

    registry, providers = _providers(conf, args.provider)
    database = Database(config.database_url(conf)) if not args.no_catalogue else None
    host = conf.host or socket.gethostname()
    owner = f"manage-{host}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    leases = BankLeases(registry, owner, clock=Clock(), host=host)
    catalogues = Catalogues(database, Clock(), host=host)
    failed = 0
    try:
        for provider in providers:
            try:
                fence = leases.fence(provider)
                report = collect(catalogues.of(provider), provider, fence.keeper.lease,
                                 chunk_grace=args.grace if args.grace is not None
                                 else conf.protection.gc_chunk_grace_period, dry_run=args.dry_run)
            except exceptions.StrongroomError as err:
                print(f"{provider.bank_description}: {err}", file=sys.stderr)
                failed += 1
                continue
            print(report.summary())
            verb = "would reclaim" if args.dry_run else "reclaimed"
            for item in report.reclaimed:
                print(f"  {verb} checkpoint {item.checkpoint_id} ({item.previous_status or 'no index'}, "
                      f"owner {item.owner_id}, project {item.project_id or '?'}): {item.objects} object(s)")
            for snapshot in report.snapshots:
                print(f"  {verb} block snapshot {snapshot} of an interrupted protect")
            for sweep in report.sweeps:
                if sweep.skipped:
                    print(f"  project {sweep.project_id}: sweep skipped: {sweep.skipped}")
                elif sweep.unreferenced:
                    count = (sweep.unreferenced - sweep.kept_young - sweep.kept_locked if args.dry_run
                             else sweep.removed)
                    locked = f", {sweep.kept_locked} kept (locked in the bank)" if sweep.kept_locked else ""
                    print(f"  project {sweep.project_id}: {count} of {sweep.chunks_seen} chunk(s) unreferenced "
                          f"{'to remove' if args.dry_run else 'removed'}, {sweep.kept_young} kept (younger than "
                          f"the grace period){locked}")
            for error in report.errors:
                print(f"  error: {error}", file=sys.stderr)
            failed += bool(report.errors)
    finally:
        leases.stop(release=True)
        registry.close()
        if database is not None:
            database.dispose()
    return 1 if failed else 0


def bank_leases(conf: cfg.ConfigOpts, args: argparse.Namespace) -> int:
    """Every lease in each bank: owner, alive or expired, last renewal and expiry (bank's clock)."""
    from strongroom.bank_plugins.lease import BankLease

    def show(provider: Any) -> None:
        lease = BankLease(provider.bank.plugin, "manage", provider.lease_windows,
                          bank_name=provider.bank_description)
        infos = lease.list_leases()
        now = lease.bank_now()
        print(f"{provider.bank_description} (bank time {now:%Y-%m-%d %H:%M:%S}Z, windows "
              f"expire={provider.lease_windows.expire}s renew={provider.lease_windows.renew}s):")
        if not infos:
            print("  no leases")
        for info in sorted(infos, key=lambda i: i.owner_id):
            state = "alive" if info.alive else "expired"
            renewed = f"{info.renewed_at:%Y-%m-%d %H:%M:%S}Z" if info.renewed_at else "-"
            expires = f"{info.expires_at:%Y-%m-%d %H:%M:%S}Z" if info.expires_at else "-"
            where = f"{info.host} pid {info.pid}" if info.host else ""
            print(f"  {info.owner_id:<40} {state:<8} renewed {renewed}  expires {expires}  {where}".rstrip())

    return _each_bank(conf, args.provider, show)


def _add_bank_commands(categories: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    bank = categories.add_parser("bank", help="banks: garbage collection and leases")
    commands = bank.add_subparsers(dest="command", metavar="COMMAND", required=True)
    gc = commands.add_parser("gc", help="reclaim zombie checkpoints and sweep unreferenced chunks now")
    gc.add_argument("--provider", metavar="ID", help="only this provider's bank (default: every provider)")
    gc.add_argument("--dry-run", action="store_true", help="print what would be reclaimed; change nothing")
    gc.add_argument("--grace", type=float, metavar="SECONDS",
                    help="keep unreferenced chunks younger than this (default: [protection] gc_chunk_grace_period)")
    gc.add_argument("--no-catalogue", action="store_true",
                    help="do not update the metadata database (the bank alone is collected)")
    gc.set_defaults(handler=bank_gc)
    leases = commands.add_parser("leases", help="list the leases (owners, alive or expired, expiry) in each bank")
    leases.add_argument("--provider", metavar="ID", help="only this provider's bank")
    leases.set_defaults(handler=bank_leases)


# -- keys ----------------------------------------------------------------------


def keys_rotate(conf: cfg.ConfigOpts, args: argparse.Namespace) -> int:
    """Rewrap each bank's data keys under a new key-encryption key (no chunk is rewritten)."""

    def rotate(provider: Any) -> None:
        if provider.bank.keyring is not None:
            rotation = provider.bank.keyring.rotate(delete_old=not args.keep_old)
            kept = "; old key-encryption keys kept" if args.keep_old and rotation.rewrapped else ""
            print(rotation.describe() + kept)

    code = _each_bank(conf, args.provider, rotate)
    from strongroom import keys

    if not code and conf.key_manager.backend == keys.LOCAL_BACKEND:
        from strongroom.keys.local import key_file

        print(f"Back up {key_file(conf)} again now: it holds the new key-encryption key.")
    return code


def keys_show(conf: cfg.ConfigOpts, args: argparse.Namespace) -> int:
    """Each bank's current key-encryption key id and its projects' data key ids (never key material)."""
    import json

    from strongroom.bank_plugins.layout import BankLayout

    def show(provider: Any) -> None:
        bank = provider.bank
        try:
            current = json.loads(bank.get(BankLayout.CURRENT_KEK)).get("kek_id", "?")
        except exceptions.BankObjectNotFound:
            current = "none yet (created on the first encrypted protect)"
        print(f"{provider.bank_description}: encryption {provider.encryption}, key-encryption key {current}")
        for key in bank.iter(BankLayout.KEYS):
            parsed = BankLayout.parse_wrapped_key(key)
            if parsed is not None:
                wrapped = json.loads(bank.get(key))
                print(f"  project {parsed[0]}: data key {parsed[1]} wrapped by {wrapped.get('kek_id')}")

    return _each_bank(conf, args.provider, show)


def _add_keys_commands(categories: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    group = categories.add_parser("keys", help="encryption keys: rotation and listing")
    commands = group.add_subparsers(dest="command", metavar="COMMAND", required=True)
    rotate = commands.add_parser("rotate", help="rewrap every data key of each bank under a new key-encryption key")
    rotate.add_argument("--provider", metavar="ID", help="only this provider's bank (default: every provider)")
    rotate.add_argument("--keep-old", action="store_true",
                        help="keep the old key-encryption keys in the key manager (default: delete them)")
    rotate.set_defaults(handler=keys_rotate)
    show = commands.add_parser("show", help="list each bank's key-encryption key and data key ids")
    show.add_argument("--provider", metavar="ID", help="only this provider's bank")
    show.set_defaults(handler=keys_show)


# -- catalogue -------------------------------------------------------------------


def catalogue_rebuild(conf: cfg.ConfigOpts, args: argparse.Namespace) -> int:
    """Add to the database the checkpoints (and their plans) one provider's bank holds and it lacks."""
    import socket

    from strongroom import config
    from strongroom.bank_plugins.lease import BankLease
    from strongroom.clock import Clock
    from strongroom.db import migration
    from strongroom.db.api import Database
    from strongroom.protection.catalogue import Catalogues

    registry, providers = _providers(conf, args.provider)
    database = Database(config.database_url(conf))
    try:
        revision, head = database.version(), migration.head()
        if revision != head:
            raise exceptions.ConfigError(reason=f"{database.url_for_display} is at schema revision "
                                                f"{revision or 'none'}, not {head}: run '{PROG} db sync' first")
        provider = providers[0]
        lease = BankLease(provider.bank.plugin, "manage", provider.lease_windows,
                          bank_name=provider.bank_description)
        now = None if provider.bank.plugin.supports_expiry else lease.bank_now()
        catalogue = Catalogues(database, Clock(), host=socket.gethostname()).of(provider)
        report = catalogue.rebuild(lambda owner: lease.check_lease_existence(owner, now), dry_run=args.dry_run)
        report.bank = provider.bank_description
    finally:
        registry.close()
        database.dispose()
    for line in report.lines(verbose=args.verbose):
        print(line)
    for skipped in report.unreadable:
        print(f"{PROG}: checkpoint {skipped.checkpoint_id}: index unreadable: {skipped.detail}", file=sys.stderr)
    return 1 if report.unreadable else 0


def _add_catalogue_commands(categories: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    catalogue = categories.add_parser("catalogue", help="the checkpoint catalogue of the metadata database")
    commands = catalogue.add_subparsers(dest="command", metavar="COMMAND", required=True)
    rebuild = commands.add_parser(
        "rebuild", help="add the checkpoints of a provider's bank that the database lacks, with their plans "
                        "(recovery from the bank alone; idempotent)")
    rebuild.add_argument("--provider", metavar="ID", required=True, help="the provider whose bank is read")
    rebuild.add_argument("--dry-run", action="store_true", help="print what would be added; write nothing")
    rebuild.add_argument("--verbose", action="store_true", help="list the checkpoint and plan ids of each line")
    rebuild.set_defaults(handler=catalogue_rebuild)


# -- program -------------------------------------------------------------------

CATEGORIES: list[Callable[[argparse._SubParsersAction], None]] = [  # type: ignore[type-arg]
    _add_db_commands,
    _add_bank_commands,
    _add_keys_commands,
    _add_catalogue_commands,
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description="Strongroom operator commands.")
    parser.add_argument("--config-file", action="append", default=[], metavar="PATH",
                        help="configuration file (repeatable; default: /etc/strongroom/strongroom.conf "
                             "and the other oslo.config locations)")
    parser.add_argument("--config-dir", action="append", default=[], metavar="DIR",
                        help="directory of *.conf files read after the config files")
    categories = parser.add_subparsers(dest="category", metavar="CATEGORY", required=True)
    for add in CATEGORIES:
        add(categories)
    return parser


def load_conf(args: argparse.Namespace) -> cfg.ConfigOpts:
    """The configuration named by ``--config-file``/``--config-dir`` (or oslo.config's defaults).

    Its oslo.log options are read too: when it names where the lines go (``log_file``, ``log_dir``,
    ``use_journal``, ``use_syslog``), the command logs there as the services do; otherwise its warnings go to
    stderr, its output being what it prints."""
    from strongroom import config
    from strongroom.cmd import common

    oslo_args: list[str] = []
    for path in args.config_file:
        oslo_args += ["--config-file", path]
    for path in args.config_dir:
        oslo_args += ["--config-dir", path]
    defaults = None if args.config_file else cfg.find_config_files(project="strongroom")
    conf = config.register_opts(cfg.ConfigOpts())
    common.register_logging_opts(conf)
    try:
        conf(oslo_args, project="strongroom", prog=PROG, default_config_files=defaults or [])
    except (cfg.Error, OSError) as err:
        raise exceptions.ConfigError(reason=str(err)) from err
    if conf.log_file or conf.log_dir or conf.use_journal or conf.use_syslog:
        common.setup_logging(conf)
    return conf


def main(argv: Sequence[str] | None = None) -> int:
    from strongroom import backend

    backend.init()
    parser = build_parser()
    args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    handler: Handler = args.handler
    try:
        conf = load_conf(args)
        return handler(conf, args)
    except exceptions.StrongroomError as err:
        print(f"{PROG}: error: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
