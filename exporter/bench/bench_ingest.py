"""Throughput and latency of `agentmon ingest` with many clients at once (not a test).

Starts the service as its own process on a migrated database, then sends bench_hook's event mix
through its socket from C client threads at once (the hook's own client code, one connection per
event, as many hook processes would), for each C in --clients. With --holders H, H more
connections are opened first and never finish their request (a user holding connections open),
up to the per-uid cap less what the clients need: the clients' numbers should not move.
Prints events/s and the per-event wall time (connect to answer) p50/p99, and checks that every
event was stored.

    ../.venv/bin/python bench/bench_ingest.py [-n 2000] [--clients 1 4 16] [--holders 8]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from bench_hook import event_mix

from agentmon.ingest import client, protocol
from agentmon.schema.migrate import migrate


def start(script: str, db: Path, sock: Path) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen([script, "ingest", "--db", str(db), "--socket", str(sock),
                             "--request-timeout-ms", "600000", "--log.level", "warning"])
    deadline = time.monotonic() + 60
    while True:
        try:
            client.exchange(str(sock), protocol.header("ping"), timeout=5)
            return proc
        except client.Unreachable:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("agentmon ingest did not start") from None
            time.sleep(0.05)


def run(sock: Path, requests: list[bytes], clients: int) -> tuple[float, list[float]]:
    """(seconds for all, per-request wall times) with ``clients`` threads sharing the list."""
    times: list[float] = []
    lock = threading.Lock()
    todo = iter(requests)
    failures: list[str] = []

    def worker() -> None:
        while True:
            with lock:
                data = next(todo, None)
            if data is None:
                return
            start = time.perf_counter()
            ok, _retry, why = client.exchange(str(sock), protocol.header(
                "event", deadline_ns=time.monotonic_ns() + 15 * 10**9) + data, timeout=60)
            elapsed = time.perf_counter() - start
            with lock:
                times.append(elapsed)
                if not ok:
                    failures.append(why or "not stored")

    threads = [threading.Thread(target=worker) for _ in range(clients)]
    began = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failures:
        raise SystemExit(f"{len(failures)} events not stored: {failures[0]}")
    return time.perf_counter() - began, times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", type=int, default=2000, help="events per round, default 2000")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--holders", type=int, default=0,
                        help="connections held open with an unfinished request meanwhile")
    args = parser.parse_args()
    script = str(Path(sys.executable).with_name("agentmon"))
    print(f"agentmon ingest, {args.n} events per round, load average {os.getloadavg()[0]:.2f}"
          f" on {os.cpu_count()} CPUs; {args.holders} connection(s) held open meanwhile")
    print(f"{'clients':>8} {'events/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}")
    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as tmp:
        db = Path(tmp) / "agent_workflow.db"
        migrate(db)
        sock = Path(tmp) / "ingest.sock"
        proc = start(script, db, sock)
        held = []
        try:
            for _ in range(args.holders):
                holder = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                holder.connect(str(sock))
                holder.sendall(b'{"v":1,"kind":"event"')  # and never the rest
                held.append(holder)
            total = 0
            sessions: set[str] = set()
            for round_no, clients in enumerate(args.clients):
                mix = [{**e, "session_id": f"r{round_no}-{e['session_id']}"}
                       for e in event_mix(args.n)]
                sessions.update(e["session_id"] for e in mix)
                requests = [json.dumps(e).encode() for e in mix]
                seconds, times = run(sock, requests, clients)
                total += len(requests)
                ordered = sorted(times)
                p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
                print(f"{clients:>8} {len(requests) / seconds:>9.0f}"
                      f" {statistics.median(times) * 1000:>8.1f} {p99 * 1000:>8.1f}"
                      f" {ordered[-1] * 1000:>8.1f}")
        finally:
            for holder in held:
                holder.close()
            proc.terminate()
            proc.wait(60)
        conn = sqlite3.connect(db)
        (stored,) = conn.execute("SELECT count(*) FROM sessions").fetchone()
        conn.close()
        print(f"{total} events sent and stored; {stored} of {len(sessions)} sessions in the"
              " database")
        if stored != len(sessions):
            raise SystemExit("sessions missing")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
