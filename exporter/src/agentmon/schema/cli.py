"""``agentmon migrate``: the command line over ``agentmon.schema.migrate``."""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys

from agentmon.schema import backup as backups
from agentmon.schema import migrations
from agentmon.schema.migrate import MigrateError, migrate


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="agentmon migrate",
        description="Bring the database schema to a version (default: the latest). Before the "
        "first step a verified online backup is written. Running it again is a no-op; a lower "
        "--to runs the down steps, which never drop a table or column holding user rows.",
    )
    parser.add_argument("--db", required=True, help="path to agent_workflow.db")
    parser.add_argument("--to", type=int, default=None, metavar="N",
                        help=f"target schema version, 0..{migrations.LATEST} "
                        f"(default {migrations.LATEST})")
    parser.add_argument("--dry-run", action="store_true", help="print the plan, change nothing")
    parser.add_argument("--backup-dir", default=None, metavar="DIR",
                        help="where backups go (default: backups/ beside the database)")
    parser.add_argument("--keep-backups", type=int, default=5, metavar="N",
                        help="keep the newest N backups of this database (default 5)")
    parser.add_argument("--json", action="store_true",
                        help="print the result as one JSON object (for automation)")
    return parser


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    try:
        result = migrate(args.db, args.to, dry_run=args.dry_run, backup_dir=args.backup_dir,
                         keep_backups=args.keep_backups)
    except backups.BackupError as exc:
        print(f"agentmon migrate: error: {exc}; nothing was migrated", file=sys.stderr)
        return 1
    except (ValueError, MigrateError, sqlite3.Error, OSError) as exc:
        print(f"agentmon migrate: error: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps({**result.__dict__, "changed": result.changed}, sort_keys=True))
        return 0
    verb = "would run" if result.dry_run else "ran"
    if not result.steps:
        print(f"{result.db}: at schema version {result.from_version}, nothing to do")
    else:
        for step in result.steps:
            print(f"{verb} {step}")
        if result.backup:
            print(f"backup: {result.backup} (integrity_check ok)")
        print(f"{result.db}: schema version {result.from_version} -> {result.to_version}")
    return 0
