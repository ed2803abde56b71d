"""Benchmark `agentmon seed`: rows, seconds and rows/s for 100k and 1M invocations (x3 tool uses).

Each size runs the real command (`agentmon seed --json`, a new file in a temporary folder, so
process start, migration, load, index builds and the final WAL switch are all counted) and
reports wall time, CPU time of the command and its workers, and the machine's load average
before the run: on a shared machine a high load explains slow wall times. Rows are sessions +
invocations + tool uses. Targets: >= 200,000 rows/s, and 1M invocations in under 30 s.

    python bench/bench_seed.py [--sizes 100000 1000000] [--jobs J] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

AGENTMON = str(Path(sys.executable).parent / "agentmon")


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run(size: int, tools: int, jobs: int | None, folder: Path) -> dict:
    db = folder / f"seed-{size}.db"
    cmd = [AGENTMON, "seed", "--db", str(db), "--invocations", str(size),
           "--tools-per-invocation", str(tools), "--seed", "1", "--json"]
    if jobs:
        cmd += ["--jobs", str(jobs)]
    load = os.getloadavg()[0]
    cpu = children_cpu()
    started = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, check=True)
    wall = time.perf_counter() - started
    result = json.loads(proc.stdout)
    size_mb = db.stat().st_size / 1e6
    for path in folder.iterdir():
        path.unlink()
    return {
        "invocations": size, "tools_per_invocation": tools, "rows": result["rows"],
        "seconds": round(wall, 2), "rows_per_s": round(result["rows"] / wall),
        "seed_seconds": round(result["seconds"], 2), "cpu_seconds": round(children_cpu() - cpu, 2),
        "jobs": result["jobs"], "phases": result["phases"], "load_avg_before": round(load, 2),
        "db_mb": round(size_mb), "running_rows": result["running"],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--tools-per-invocation", type=int, default=3)
    parser.add_argument("--jobs", type=int, default=None, help="default: the command's own")
    parser.add_argument("--dir", type=Path, default=None, help="scratch folder (default: tmp)")
    parser.add_argument("--json", type=Path, default=None, metavar="FILE",
                        help="also write the results as JSON")
    args = parser.parse_args()
    results = []
    with tempfile.TemporaryDirectory(dir=args.dir, prefix="bench-seed-") as scratch:
        for size in args.sizes:
            results.append(run(size, args.tools_per_invocation, args.jobs, Path(scratch)))
    header = (f"{'invocations':>11} {'rows':>10} {'seconds':>8} {'rows/s':>9} {'cpu s':>7} "
              f"{'jobs':>4} {'load':>5} {'load s':>7} {'index s':>7} {'MB':>6}")
    print(header)
    print("-" * len(header))
    for r in results:
        print(f"{r['invocations']:>11,} {r['rows']:>10,} {r['seconds']:>8.2f} "
              f"{r['rows_per_s']:>9,} {r['cpu_seconds']:>7.1f} {r['jobs']:>4} "
              f"{r['load_avg_before']:>5.2f} {r['phases'].get('load_s', 0):>7.2f} "
              f"{r['phases'].get('index_s', 0):>7.2f} {r['db_mb']:>6,}")
    if args.json:
        args.json.write_text(json.dumps({"results": results, "cpus": os.cpu_count()}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
