"""``agentmon seed``: the command line over ``agentmon.seed.load.seed``."""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import sys
import time
from datetime import UTC, datetime
from typing import IO

from agentmon.seed.load import seed
from agentmon.seed.options import SeedError, SeedOptions


def parse_end(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not an ISO-8601 time: {text!r}") from exc
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def default_jobs() -> int:
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, min(4, usable or 1))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="agentmon seed",
        description="Write realistic synthetic history (sessions, subagent invocations, tool "
        "calls) into a new database, for demos and benchmarks. The same --seed and --end give "
        "the same rows.",
        epilog="example: agentmon seed --db /tmp/demo.db --invocations 1000000",
    )
    parser.add_argument("--db", required=True,
                        help="database file to create (or extend, with --append)")
    parser.add_argument("--invocations", required=True, type=int, metavar="N",
                        help="number of subagent invocations to write")
    parser.add_argument("--tools-per-invocation", type=int, default=3, metavar="K",
                        help="average tool calls per invocation; the total is exactly N*K "
                        "(default 3)")
    parser.add_argument("--days", type=float, default=90.0, metavar="D",
                        help="spread the history over the D days before --end (default 90)")
    parser.add_argument("--end", type=parse_end, default=None, metavar="TIME",
                        help="ISO-8601 time the history ends at, where the newest rows are still "
                        "running (default: now; naive times are UTC)")
    parser.add_argument("--seed", type=int, default=1, metavar="S",
                        help="random seed (default 1)")
    parser.add_argument("--error-rate", type=float, default=0.05, metavar="P",
                        help="share of invocations and tool calls that fail (default 0.05)")
    parser.add_argument("--schema", choices=("agentmon", "original"), default="agentmon",
                        help="agentmon: latest schema with change tracking (default); original: "
                        "the original project's tables at user_version 0, local-time timestamps")
    parser.add_argument("--sessions-columns", type=int, choices=(4, 6), default=6,
                        help="with --schema original: sessions as the agent hook (4) or the "
                        "session hook (6) created it (default 6)")
    parser.add_argument("--jobs", type=int, default=default_jobs(), metavar="J",
                        help="worker processes generating rows (default: usable CPUs, at most "
                        f"4; here {default_jobs()}); the rows do not depend on it")
    parser.add_argument("--append", action="store_true",
                        help="add to a database that already holds rows (otherwise refused)")
    parser.add_argument("--usage", action="store_true",
                        help="also write usage facts derived from the rows (tokens and lines"
                        " per completed invocation, a main-thread message per session, some API"
                        " errors and permission denials)")
    parser.add_argument("--json", action="store_true",
                        help="print the result as one JSON object on stdout")
    return parser


class ProgressBar:
    def __init__(self, stream: IO[str]) -> None:
        self.stream = stream
        self.last = 0.0

    def __call__(self, done: int, total: int, elapsed: float) -> None:
        now = time.monotonic()
        if now - self.last < 0.1 and done < total:
            return
        self.last = now
        share = min(1.0, done / total) if total else 1.0
        bar = "#" * int(share * 30)
        rate = done / elapsed if elapsed > 0 else 0.0
        eta = (total - done) / rate if rate > 0 else 0.0
        self.stream.write(f"\r[{bar:<30}] {share:4.0%} {done:,}/{total:,} rows "
                          f"{rate:,.0f} rows/s ETA {eta:.0f}s ")
        self.stream.flush()

    def close(self) -> None:
        if self.last:
            self.stream.write("\r" + " " * 90 + "\r")
            self.stream.flush()


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    opts = SeedOptions(
        invocations=args.invocations, tools_per_invocation=args.tools_per_invocation,
        days=args.days, seed=args.seed, end=args.end, schema=args.schema,
        error_rate=args.error_rate, sessions_columns=args.sessions_columns, append=args.append,
        jobs=args.jobs, usage=args.usage)
    bar = ProgressBar(sys.stderr) if sys.stderr.isatty() else None
    try:
        result = seed(args.db, opts, bar)
    except (SeedError, sqlite3.Error, OSError) as exc:
        if bar:
            bar.close()
        print(f"agentmon seed: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\nagentmon seed: interrupted, nothing written", file=sys.stderr)
        return 130
    if bar:
        bar.close()
    print(f"agentmon seed: {result.rows:,} rows ({result.sessions:,} sessions, "
          f"{result.invocations:,} invocations, {result.tool_uses:,} tool uses, "
          f"{result.running:,} still running) in {result.seconds:.1f} s, "
          f"{result.rows_per_second:,.0f} rows/s -> {result.db}", file=sys.stderr)
    if args.json:
        print(json.dumps(result.as_dict(), sort_keys=True))
    return 0
