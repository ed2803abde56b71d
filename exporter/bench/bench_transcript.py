"""The Stop hook on a big main-thread transcript: first read, then incremental reads.

Writes a JSONL transcript shaped like Claude Code's (user lines carrying large tool results,
assistant messages streamed over two lines, some sidechain lines) of --mb megabytes, then runs
the real `agentmon hook` process with a Stop event pointing at it: once on the whole file (the
first read, up to the hook's per-event budget, then again until it is read to the end), then
after appending a turn (the incremental read from the stored offset). Prints wall time and peak
RSS of each hook process.

    ../.venv/bin/python bench/bench_transcript.py [--mb 100] [--runs 5]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from agentmon.hook.usage import DEFAULT_BUDGET
from agentmon.schema.migrate import migrate

AGENTMON = Path(sys.executable).parent / "agentmon"


def turn(n: int, pad: str) -> str:
    user = {"type": "user", "isSidechain": False, "message": {"role": "user", "content": [
        {"type": "tool_result", "tool_use_id": f"toolu_{n}", "content": pad}]}}
    usage = {"input_tokens": 12, "output_tokens": 300, "cache_read_input_tokens": 40_000,
             "cache_creation_input_tokens": 900}
    message = {"id": f"msg_{n:012d}", "model": "claude-opus-4-1-20250805", "role": "assistant",
               "content": [{"type": "text", "text": "Working on it."}], "usage": usage}
    assistant = {"type": "assistant", "isSidechain": n % 10 == 0, "requestId": f"req_{n:012d}",
                 "message": message}
    line = json.dumps(assistant) + "\n"
    return json.dumps(user) + "\n" + line + line


def stop(path: Path, db: Path) -> tuple[float, int]:
    event = {"hook_event_name": "Stop", "session_id": "bench", "transcript_path": str(path),
             "cwd": "/tmp", "stop_hook_active": False}
    started = time.perf_counter()
    proc = subprocess.run([str(AGENTMON), "hook", "--db", str(db)],
                          input=json.dumps(event).encode(), capture_output=True, check=False)
    elapsed = time.perf_counter() - started
    if proc.returncode or proc.stderr:
        raise SystemExit(f"hook failed: {proc.stderr.decode()}")
    return elapsed, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=100)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="agentmon-bench-transcript-"))
    try:
        pad = "x" * 20_000
        path = work / "session.jsonl"
        n = 0
        with path.open("w") as out:
            while out.tell() < args.mb * 1024 * 1024:
                out.write(turn(n, pad))
                n += 1
        size = path.stat().st_size
        print(f"transcript: {size / 1e6:.0f} MB, {n} turns; budget per event"
              f" {DEFAULT_BUDGET // (1024 * 1024)} MiB")
        print(f"{'case':<34}{'median s':>10}{'max s':>8}{'peak RSS MB':>13}")
        firsts, rss = [], 0
        for _ in range(args.runs):
            db = work / "first.db"
            for suffix in ("", "-wal", "-shm"):
                Path(f"{db}{suffix}").unlink(missing_ok=True)
            migrate(db)
            events = []
            while True:  # the first read goes on at the next Stops, one budget each
                elapsed, rss = stop(path, db)
                events.append(elapsed)
                with sqlite3.connect(db) as conn:
                    (offset,) = conn.execute("SELECT offset FROM agentmon_transcripts").fetchone()
                conn.close()
                if offset >= size:
                    break
            firsts.append(events)
        print(f"{'first read, Stop events needed':<34}{len(firsts[0]):>10}")
        print(f"{'first read, per Stop':<34}"
              f"{statistics.median(t for e in firsts for t in e):>10.3f}"
              f"{max(t for e in firsts for t in e):>8.3f}{rss / 1024:>13.0f}")
        incremental = []
        for _ in range(args.runs):
            with path.open("a") as out:
                out.write(turn(n, pad))
                n += 1
            elapsed, rss = stop(path, db)
            incremental.append(elapsed)
        print(f"{'incremental (one new turn)':<34}{statistics.median(incremental):>10.3f}"
              f"{max(incremental):>8.3f}{rss / 1024:>13.0f}")
        none = [stop(path, db)[0] for _ in range(args.runs)]
        print(f"{'nothing new':<34}{statistics.median(none):>10.3f}{max(none):>8.3f}")
        floor = []
        for _ in range(args.runs):
            started = time.perf_counter()
            subprocess.run([sys.executable, "-c", "pass"], check=True)
            floor.append(time.perf_counter() - started)
        print(f"{'python -c pass':<34}{statistics.median(floor):>10.3f}{max(floor):>8.3f}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONDONTWRITEBYTECODE", "1")
    sys.exit(main())
