"""Prune at scale: `agentmon prune` on a big seeded history, and the exporter's refresh meanwhile.

Seeds --rows invocations (default 10,000,000, 3 tool uses each, over 90 days: `agentmon seed`),
starts a real `agentmon serve` on the file (--refresh.interval 1) and, once its cold start is
done, measures side by side in one run:

* no prune: the exporter's refreshes for --idle seconds;
* `agentmon prune --older-than 60d --reclaim` (the oldest third; then the one-off VACUUM that
  switches the file to incremental vacuum);
* `agentmon prune --older-than 30d` (the next third; the file now shrinks by incremental
  vacuum steps).

Per column: rows removed and left, the prune's own seconds (its result line) and the process's
wall time (with the VACUUM), file size before and after, the prune process's peak RSS, and the
exporter while it ran: each refresh's `agentmon_last_refresh_duration_seconds` (scraped every
0.25 s, each refresh once), scrape latency, RSS, state rebuilds. Nothing writes meanwhile, so
every pruned row had been counted: the exported counters must not change and the exporter must
not rebuild (docs/commands.md, "Retention"); exits 1 otherwise.

    ../.venv/bin/python bench/bench_prune.py [--rows 10000000] [--older-than 60d 30d]

Disk: the seeded file is about 2.2 GB per million invocations, and --reclaim needs about twice
the data left free beside it and in the temporary folder. --cache DIR keeps the seeded file for
the next run (bench_serve's cache: `make bench BENCH_ARGS=--huge` seeds the same 10M history).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import resource
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import closing
from pathlib import Path
from typing import Any

from bench_serve import free_port, percentile, rss_mb, running, seeded_db, working_copy
from bench_soak import file_bytes, metrics

BIN = Path(sys.executable).parent
AGENTMON = str(BIN / "agentmon")
# the exported numbers of the pruned tables: counters, histogram buckets, counts and sums
COUNTED = ("agentmon_invocations_total{", "agentmon_tool_uses_total{",
           "agentmon_invocation_duration_seconds_", "agentmon_tool_use_duration_seconds_")


def seed(work: Path, invocations: int, cache: Path | None) -> Path:
    if cache is not None:
        return working_copy(seeded_db(cache, invocations), work)
    db = work / "agent_workflow.db"
    print(f"seeding {invocations:,} invocations ...", file=sys.stderr, flush=True)
    subprocess.run([AGENTMON, "seed", "--db", str(db), "--invocations", str(invocations),
                    "--tools-per-invocation", "3", "--seed", "1"], check=True,
                   stdout=subprocess.DEVNULL)
    with closing(sqlite3.connect(db)) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return db


def children_cpu() -> float:
    """CPU seconds of the ended child processes (the prune, once it has been waited for)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def row_count(db: Path) -> int:
    with closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
        return sum(int(conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0])  # noqa: S608
                   for t in ("agent_invocations", "agent_tool_uses", "sessions"))


def counted(values: dict[str, float]) -> dict[str, float]:
    """The exported numbers a prune must leave as they are."""
    return {k: v for k, v in values.items() if k.startswith(COUNTED)}


class Watch:
    """Scrapes the exporter every 0.25 s; keeps each refresh (by its timestamp) once."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.refreshes: dict[float, float] = {}  # refresh timestamp -> its duration (s)
        self.scrape_ms: list[float] = []
        self.last: dict[str, float] = {}

    def poll(self) -> dict[str, float]:
        ms, values, _ = metrics(self.port)
        self.scrape_ms.append(ms)
        stamp = values.get("agentmon_last_refresh_timestamp_seconds{}", 0.0)
        if stamp:
            self.refreshes[stamp] = values.get("agentmon_last_refresh_duration_seconds{}", 0.0)
        self.last = values
        return values

    def refreshed_after(self, moment: float, timeout: float = 3600) -> dict[str, float]:
        """Poll until a refresh that ended after ``moment`` (wall time); its values."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            values = self.poll()
            if values.get("agentmon_last_refresh_timestamp_seconds{}", 0.0) > moment:
                return values
            time.sleep(0.25)
        raise SystemExit(f"no refresh after {moment} within {timeout} s")

    def between(self, start: float, end: float) -> list[float]:
        return [d for t, d in self.refreshes.items() if start <= t <= end]


def idle(watch: Watch, seconds: float, serve_pid: int) -> dict[str, Any]:
    start = time.time()
    scrapes0 = len(watch.scrape_ms)
    rss = []
    while time.time() - start < seconds:
        watch.poll()
        rss.append(rss_mb(serve_pid))
        time.sleep(0.25)
    return summary(watch, start, time.time(), scrapes0, rss)


def summary(watch: Watch, start: float, end: float, scrapes0: int,
            rss: list[float]) -> dict[str, Any]:
    refreshes = [d * 1000 for d in watch.between(start, end)]
    scrapes = watch.scrape_ms[scrapes0:]
    return {
        "refreshes": len(refreshes),
        "refresh_ms_p50": statistics.median(refreshes) if refreshes else float("nan"),
        "refresh_ms_p99": percentile(refreshes, 0.99) if refreshes else float("nan"),
        "refresh_ms_max": max(refreshes, default=float("nan")),
        "scrape_ms_p99": percentile(scrapes, 0.99) if scrapes else float("nan"),
        "serve_rss_mb_max": max(rss, default=float("nan")),
        "rebuilds": watch.last.get("agentmon_state_rebuilds_total{}", float("nan")),
    }


def prune(db: Path, watch: Watch, serve_pid: int, args: list[str]) -> dict[str, Any]:
    """One `agentmon prune` run, the exporter scraped while it runs."""
    rows_before, size_before = row_count(db), file_bytes(db)
    before = counted(watch.poll())
    rebuilds_before = watch.last.get("agentmon_state_rebuilds_total{}", 0.0)
    start, t0, cpu0 = time.time(), time.perf_counter(), children_cpu()
    scrapes0 = len(watch.scrape_ms)
    proc = subprocess.Popen([AGENTMON, "prune", "--db", str(db), *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    rss: list[float] = []
    peak = 0.0
    while proc.poll() is None:
        watch.poll()
        rss.append(rss_mb(serve_pid))
        with contextlib.suppress(OSError):  # it may have ended since
            peak = max(peak, rss_mb(proc.pid, "VmHWM"))
        time.sleep(0.25)
    out, err = proc.communicate()
    wall, cpu = time.perf_counter() - t0, children_cpu() - cpu0
    end = time.time()
    if proc.returncode:
        raise SystemExit(f"agentmon prune failed: {err.strip()}")
    after = counted(watch.refreshed_after(end))
    line = out.strip()
    own = re.search(r" in ([\d.]+) s \(", line)
    result = summary(watch, start, end, scrapes0, rss)
    result.update({
        "args": args, "line": line, "wall_s": wall,
        "prune_s": float(own.group(1)) if own else float("nan"),
        "removed": sum(int(n) for n in re.findall(r"(\d+) (?:agent_\w+|sessions)", line)),
        "rows_before": rows_before, "rows_after": row_count(db),
        "size_before": size_before, "size_after": file_bytes(db),
        "prune_peak_rss_mb": peak, "prune_cpu_s": cpu,
        "counters_unchanged": before == after,
        "counter_changes": {k: (before.get(k), after.get(k)) for k in set(before) | set(after)
                            if before.get(k) != after.get(k)},
        "rebuilds_during": watch.last.get("agentmon_state_rebuilds_total{}", 0.0)
        - rebuilds_before,
    })
    return result


def ms(v: float) -> str:
    return "n/a" if v != v else f"{v:.1f} ms" if v < 100 else f"{v:,.0f} ms"


def table(base: dict[str, Any], runs: list[dict[str, Any]]) -> str:
    cols = [("no prune", base)] + [(f"`prune {' '.join(r['args'])}`", r) for r in runs]

    def cell(r: dict[str, Any], key: str) -> str:
        v = r.get(key)
        if v is None:
            return "-"
        if key in ("removed", "rows_after", "refreshes"):
            return f"{v:,}"
        if key.endswith("_s"):
            return f"{v:,.1f} s"
        if key.endswith("_mb") or key.endswith("_mb_max"):
            return f"{v:,.1f} MB"
        if key == "rebuilds_during":
            return f"{v:g}"
        return ms(v) if key.startswith(("refresh_ms", "scrape_ms")) else str(v)

    rows: list[tuple[str, Any]] = [
        ("rows removed (invocations + tool uses + sessions)", lambda r: cell(r, "removed")),
        ("rows left", lambda r: cell(r, "rows_after")),
        ("prune time (its result line)", lambda r: cell(r, "prune_s")),
        ("process wall time (with VACUUM / incremental vacuum)", lambda r: cell(r, "wall_s")),
        ("process CPU time", lambda r: cell(r, "prune_cpu_s")),
        ("rows removed per second", lambda r: f"{r['removed'] / r['prune_s']:,.0f}"
         if r.get("prune_s") else "-"),
        ("file size before -> after", lambda r: f"{r['size_before'] / 1e6:,.0f} -> "
         f"{r['size_after'] / 1e6:,.0f} MB" if "size_before" in r else "-"),
        ("prune peak RSS", lambda r: cell(r, "prune_peak_rss_mb")),
        ("exporter refreshes seen", lambda r: cell(r, "refreshes")),
        ("refresh p50 / p99 / max", lambda r: f"{ms(r['refresh_ms_p50'])} / "
         f"{ms(r['refresh_ms_p99'])} / {ms(r['refresh_ms_max'])}"),
        ("scrape p99", lambda r: cell(r, "scrape_ms_p99")),
        ("exporter RSS max", lambda r: cell(r, "serve_rss_mb_max")),
        ("state rebuilds during it", lambda r: cell(r, "rebuilds_during")),
        ("exported counters unchanged", lambda r: ("yes" if r["counters_unchanged"] else "NO")
         if "counters_unchanged" in r else "-"),
    ]
    out = ["| measure | " + " | ".join(name for name, _ in cols) + " |",
           "|---|" + "---:|" * len(cols)]
    out += [f"| {name} | " + " | ".join(get(r) for _, r in cols) + " |" for name, get in rows]
    return "\n".join(out)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", "--invocations", dest="invocations", type=int,
                        default=10_000_000,
                        help="invocations to seed, 3 tool uses each (default 10,000,000)")
    parser.add_argument("--older-than", nargs="+", default=["60d", "30d"],
                        help="one prune per retention, in this order; the first with --reclaim")
    parser.add_argument("--idle", type=float, default=30.0,
                        help="seconds of refreshes without a prune (30)")
    parser.add_argument("--cache", type=Path, default=None,
                        help="keep the seeded file here and reuse it (copied for each run)")
    parser.add_argument("--workdir", type=Path, default=None,
                        help="where the working database goes (default: a temporary folder)")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="agentmon-bench-prune-", dir=args.workdir))
    try:
        db = seed(work, args.invocations, args.cache)
        port = free_port()
        cmd = [AGENTMON, "serve", "--db", str(db), "--web.listen-address", f"127.0.0.1:{port}",
               "--checkpoint.file", str(work / "serve.ckpt"), "--refresh.interval", "1"]
        with running(cmd, port, log=work / "serve.log") as proc:
            watch = Watch(port)
            print("exporter cold start ...", file=sys.stderr, flush=True)
            watch.refreshed_after(0)
            base = idle(watch, args.idle, proc.pid)
            runs = []
            for i, age in enumerate(args.older_than):
                flags = ["--older-than", age] + (["--reclaim"] if i == 0 else [])
                print(f"agentmon prune {' '.join(flags)} ...", file=sys.stderr, flush=True)
                runs.append(prune(db, watch, proc.pid, flags))
        log = (work / "serve.log").read_text(errors="replace")
    finally:
        shutil.rmtree(work, ignore_errors=True)

    print(f"agentmon prune on {args.invocations:,} seeded invocations (3 tool uses each, 90"
          f" days); load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs\n")
    print(table(base, runs))
    for r in runs:
        print(f"\n{' '.join(r['args'])}: {r['line']}")
    for line in log.splitlines():
        if "built state" in line or "ERROR" in line:
            print(f"serve log: {line[:200]}")
    failed = [r for r in runs if not r["counters_unchanged"] or r["rebuilds_during"]]
    for r in failed:
        print(f"FAIL {' '.join(r['args'])}: counters changed {r['counter_changes']},"
              f" {r['rebuilds_during']:g} rebuilds")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"invocations": args.invocations, "idle": base,
                                         "prunes": runs}, indent=2, default=str) + "\n")
    print("\nok: no exported counter changed, no rebuild" if not failed else "\nFAILED")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
