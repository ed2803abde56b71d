"""Time of `migrate` (with its verified backup) from the original exporter's schema to the latest.

For each size an original-schema database is seeded (`agentmon seed --schema original`, 3 tool
uses per invocation) in a temporary folder, then upgraded in-process; the table shows rows,
seconds and rows/s, and stops if the upgrade did not keep every row (the unit test
test_migrations checks that on 80k rows).

    ../.venv/bin/python bench/bench_migrate.py [--sizes 200000 1000000] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import tempfile
import time
from pathlib import Path

from agentmon.schema import migrations
from agentmon.schema.migrate import migrate
from agentmon.seed.load import seed
from agentmon.seed.options import SeedOptions


def rows(db: Path) -> int:
    conn = sqlite3.connect(db)
    try:
        return sum(conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0]  # noqa: S608
                   for t in ("agent_invocations", "agent_tool_uses"))
    finally:
        conn.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[200_000, 1_000_000])
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args()
    results = []
    print(f"{'invocations':>12} {'rows':>12} {'seconds':>9} {'rows/s':>10}  (to schema "
          f"{migrations.LATEST}, backup included)")
    for size in args.sizes:
        with tempfile.TemporaryDirectory(prefix="bench-migrate-") as tmp:
            db = Path(tmp) / "original.db"
            seed(db, SeedOptions(invocations=size, schema="original", jobs=2))
            n = rows(db)
            start = time.perf_counter()
            migrate(db, backup_dir=Path(tmp) / "backups")
            seconds = time.perf_counter() - start
            if rows(db) != n:
                raise SystemExit(f"bench_migrate: {n} rows before the upgrade, {rows(db)} after")
        results.append({"invocations": size, "rows": n, "seconds": seconds})
        print(f"{size:>12,} {n:>12,} {seconds:>9.1f} {n / seconds:>10,.0f}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
