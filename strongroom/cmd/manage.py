"""``strongroom-manage``: operator commands.

    strongroom-manage [--config-file FILE]... db sync
    strongroom-manage [--config-file FILE]... db version
    strongroom-manage [--config-file FILE]... db export FILE
    strongroom-manage [--config-file FILE]... db import FILE [--force | --merge]

Each category (``db`` now; ``bank`` later) adds its sub-commands in one
``_add_<category>_commands`` function; a command is a handler
``(conf, args) -> exit code``.  Errors print one line naming what was wrong.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

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
    from strongroom.db import migration

    database = _database(conf)
    try:
        database.sync()
        revision = database.version()
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


# -- program -------------------------------------------------------------------

CATEGORIES: list[Callable[[argparse._SubParsersAction], None]] = [  # type: ignore[type-arg]
    _add_db_commands,
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
    """The configuration named by ``--config-file``/``--config-dir`` (or oslo.config's defaults)."""
    from strongroom import config

    oslo_args: list[str] = []
    for path in args.config_file:
        oslo_args += ["--config-file", path]
    for path in args.config_dir:
        oslo_args += ["--config-dir", path]
    defaults = None if args.config_file else cfg.find_config_files(project="strongroom")
    try:
        return config.new_conf(oslo_args, default_config_files=defaults)
    except (cfg.Error, OSError) as err:
        raise exceptions.ConfigError(reason=str(err)) from err


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
