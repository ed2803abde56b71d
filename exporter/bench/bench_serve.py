"""Benchmark `agentmon serve` against the original exporter's approach and query-exporter.

For each database size (seeded by `agentmon seed`, 3 tool uses per invocation) it measures,
side by side in one run on the same file:

* agentmon: cold-start build time (no checkpoint), refresh wall time and CPU for 1,000 new +
  100 updated rows, authenticated scrape latency p50/p99 over 2,000 requests against a real
  `agentmon serve` process, and that process's RSS;
* baseline: one collection cycle as the review describes the original exporter (full-history
  reads plus per-session queries, 250+ queries);
* query-exporter (from PyPI) with four equivalent aggregate queries: per-cycle query time and
  CPU, scrape latency, RSS;
* with ``--before REF``: the scrape latency of this tree's `agentmon serve` and of a git
  revision's, both running on the same file at once, one scrape of each every 10 ms in random
  order over 30 s (``--side-by-side-scrapes``), so the machine's noise and serve's refreshes
  fall on both alike, without and with Prometheus' Accept header.

Prints a table, writes JSON (--json) and an SVG plot of refresh cost against size (--svg).
Not part of `make test`: figures on a shared 2-core machine are noisy, so compare ratios
measured in the same run.
"""

from __future__ import annotations

import argparse
import base64
import http.client
import json
import os
import random
import resource
import shutil
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, closing, contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import bcrypt
from prometheus_client import CollectorRegistry, Counter, Histogram

from agentmon.collector.collector import ExporterCollector
from agentmon.schema.db import connect_writer

HERE = Path(__file__).resolve().parent
SRC = HERE.parent / "src"
REPO = HERE.parent.parent
# Prometheus 2.42's scrape Accept header (Debian 12): OpenMetrics first, then the text format
PROMETHEUS_ACCEPT = ("application/openmetrics-text;version=1.0.0,application/openmetrics-text;"
                     "version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1")
BIN = Path(sys.executable).parent
AGENTMON = str(BIN / "agentmon")
QUERY_EXPORTER = str(BIN / "query-exporter")
USER, PASSWORD = "prometheus", "bench-password"


# ---------------------------------------------------------------- helpers


def free_port() -> int:
    with closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before listening")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"port {port} not listening after {timeout}s")


def rss_mb(pid: int, field: str = "VmRSS") -> float:
    """Resident memory now (VmRSS) or at its peak (VmHWM) of a process, in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def proc_cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks  # utime + stime


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def scrape_latencies(port: int, n: int, headers: dict[str, str]) -> list[float]:
    """n GETs of /metrics over one keep-alive connection (as Prometheus scrapes); ms each."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    out = []
    try:
        for _ in range(n):
            start = time.perf_counter()
            conn.request("GET", "/metrics", headers=headers)
            resp = conn.getresponse()
            body = resp.read()
            out.append((time.perf_counter() - start) * 1000)
            if resp.status != 200 or not body:
                raise RuntimeError(f"scrape answered {resp.status}")
    finally:
        conn.close()
    return out


@contextmanager
def running(cmd: list[str], port: int, env: dict[str, str] | None = None,
            log: Path | None = None) -> Iterator[subprocess.Popen[bytes]]:
    out = open(log, "wb") if log else subprocess.DEVNULL  # noqa: SIM115
    proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
    try:
        wait_for_port(port, proc)
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if log:
            out.close()  # type: ignore[union-attr]


# ---------------------------------------------------------------- data


def seeded_db(cache: Path, invocations: int, schema: str = "agentmon") -> Path:
    """A seeded database for this size, made once and reused from the cache folder.

    ``schema="original"`` writes the same history in the original project's schema (no
    agentmon indexes): what the peers would run on in a user's existing database.
    """
    cache.mkdir(parents=True, exist_ok=True)
    path = cache / f"seed-{schema}-{invocations}.db"
    if not path.exists():
        tmp = path.with_suffix(".tmp.db")
        for p in tmp.parent.glob(tmp.name + "*"):
            p.unlink()
        print(f"seeding {invocations:,} invocations ...", file=sys.stderr, flush=True)
        subprocess.run([AGENTMON, "seed", "--db", str(tmp), "--invocations", str(invocations),
                        "--tools-per-invocation", "3", "--seed", "1", "--schema", schema],
                       check=True)
        with closing(sqlite3.connect(tmp)) as conn:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        tmp.rename(path)
        for suffix in ("-wal", "-shm"):
            Path(str(tmp) + suffix).unlink(missing_ok=True)
    return path


def working_copy(src: Path, folder: Path) -> Path:
    dst = folder / src.name
    for p in folder.glob(src.name + "*"):
        p.unlink()
    shutil.copyfile(src, dst)
    return dst


class Writer:
    """Writes one benchmark cycle: 1,000 new rows and 100 updates of earlier running rows."""

    def __init__(self, db: Path) -> None:
        self.conn = connect_writer(db)
        self.rng = random.Random(7)
        self.pending: list[int] = []
        self.session = "bench-session"
        self.conn.execute(
            "INSERT INTO sessions (session_id, start_time, status) VALUES (?, ?, 'active') "
            "ON CONFLICT (session_id) DO NOTHING", (self.session, now()))

    def cycle(self) -> None:
        c = self.conn
        c.execute("BEGIN IMMEDIATE")
        for inv_id in self.pending:  # 100 updates: running invocations finish
            c.execute(
                "UPDATE agent_invocations SET status = ?, end_time = ?, duration_seconds = ? "
                "WHERE id = ?",
                (self.rng.choice(["completed"] * 19 + ["error"]), now(),
                 self.rng.lognormvariate(3, 1), inv_id))
        self.pending = []
        for _ in range(100):  # 100 new running invocations
            cur = c.execute(
                "INSERT INTO agent_invocations (timestamp, session_id, event_type, phase, "
                "agent_name, start_time, status) VALUES (?, ?, 'PreToolUse', 'implementation', "
                "?, ?, 'running')",
                (now(), self.session, self.rng.choice(["developer", "tester", "reviewer"]),
                 now()))
            self.pending.append(int(cur.lastrowid or 0))
        c.executemany(  # 900 finished tool uses
            "INSERT INTO agent_tool_uses (timestamp, session_id, agent_name, tool_name, "
            "duration_seconds, status, start_time, end_time) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [(now(), self.session, "developer", self.rng.choice(["Read", "Edit", "Bash"]),
              self.rng.lognormvariate(-1, 1), "completed", now(), now()) for _ in range(900)])
        c.execute("COMMIT")

    def close(self) -> None:
        self.conn.close()


def now() -> str:
    return datetime.now(UTC).isoformat()


# ---------------------------------------------------------------- agentmon


def bench_agentmon(db: Path, work: Path, cycles: int, scrapes: int) -> dict[str, Any]:
    checkpoint = work / "agentmon.checkpoint"
    checkpoint.unlink(missing_ok=True)
    cpu0, t0 = time.process_time(), time.perf_counter()
    collector = ExporterCollector(db, checkpoint_path=checkpoint)
    collector.refresh()
    cold_s, cold_cpu = time.perf_counter() - t0, time.process_time() - cpu0

    writer = Writer(db)
    walls, cpus = [], []
    try:
        for _ in range(cycles):
            writer.cycle()
            cpu0, t0 = time.process_time(), time.perf_counter()
            collector.refresh()
            walls.append((time.perf_counter() - t0) * 1000)
            cpus.append((time.process_time() - cpu0) * 1000)
    finally:
        writer.close()
    collector.save_checkpoint()

    # A real server process: authenticated scrapes and its RSS.
    salt = bcrypt.gensalt(rounds=10)
    config = work / "web-config.yml"
    config.write_text(
        f"basic_auth_users:\n  {USER}: {bcrypt.hashpw(PASSWORD.encode(), salt).decode()}\n")
    config.chmod(0o600)
    port = free_port()
    token = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    # No checkpoint: the serve process does its own cold start, so its peak RSS includes it.
    cmd = [AGENTMON, "serve", "--db", str(db), "--web.listen-address", f"127.0.0.1:{port}",
           "--web.config.file", str(config), "--checkpoint.file", str(work / "serve.ckpt")]
    with running(cmd, port, log=work / "agentmon-serve.log") as proc:
        lat = scrape_latencies(port, scrapes, {"Authorization": f"Basic {token}"})
        rss, peak = rss_mb(proc.pid), rss_mb(proc.pid, "VmHWM")
    return {
        "cold_start_s": cold_s, "cold_start_cpu_s": cold_cpu,
        "refresh_ms_p50": statistics.median(walls), "refresh_ms_max": max(walls),
        "refresh_cpu_ms": statistics.median(cpus),
        "scrape_ms_p50": percentile(lat, 0.5), "scrape_ms_p99": percentile(lat, 0.99),
        "rss_mb": rss, "rss_peak_mb": peak,
    }


def scrape_side_by_side(db: Path, work: Path, before: Path, scrapes: int,
                        interval: float = 0.01) -> dict[str, Any]:
    """Scrape latency of this tree's server and of ``before`` (a revision's exporter/src), both
    serving the same file at once, each over its own keep-alive connection: one scrape of each
    every ``interval`` s (in random order), ``scrapes`` of each, so the scrapes spread over
    several refresh intervals (serve's default is 5 s) and meet the refreshes as often as a
    scrape at a random moment would, on both servers alike. For each kind of request (no
    Accept header, Prometheus') a new pair of processes."""
    config = work / "web-config-sbs.yml"
    config.write_text(f"basic_auth_users:\n  {USER}: "
                      f"{bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=10)).decode()}\n")
    config.chmod(0o600)
    token = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    kinds = {"text": {"Authorization": f"Basic {token}"},
             "prometheus": {"Authorization": f"Basic {token}", "Accept": PROMETHEUS_ACCEPT}}
    servers = {"before": before, "after": SRC}
    lat: dict[str, dict[str, list[float]]] = {n: {k: [] for k in kinds} for n in servers}
    types: dict[str, dict[str, str]] = {n: {} for n in servers}
    for kind, headers in kinds.items():  # new processes per kind: each asked only that way
        with ExitStack() as stack:
            ports = {}
            for name, src in servers.items():
                port = free_port()
                cmd = [sys.executable, "-m", "agentmon.cli", "serve", "--db", str(db),
                       "--web.listen-address", f"127.0.0.1:{port}", "--web.config.file",
                       str(config), "--checkpoint.file", str(work / f"sbs-{name}-{kind}.ckpt")]
                stack.enter_context(running(cmd, port, log=work / f"sbs-{name}.log",
                                            env={**os.environ, "PYTHONPATH": str(src)}))
                ports[name] = port

            def answer_types(kind: str = kind, headers: dict[str, str] = headers,
                             ports: dict[str, int] = ports) -> None:
                for name, port in ports.items():
                    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                    with closing(conn):
                        conn.request("GET", "/metrics", headers=headers)
                        resp = conn.getresponse()
                        resp.read()
                        types[name][kind] = resp.getheader("Content-Type", "")

            answer_types()  # pays the bcrypt checks, and asks for OpenMetrics once
            time.sleep(6)  # serve's default refresh interval is 5 s: OpenMetrics is rendered
            conns = {name: stack.enter_context(closing(
                http.client.HTTPConnection("127.0.0.1", port, timeout=30)))
                for name, port in ports.items()}
            order = list(conns)
            next_at = time.monotonic()
            for _ in range(scrapes):
                random.shuffle(order)
                for name in order:
                    lat[name][kind].append(timed_scrape(conns[name], headers))
                next_at += interval
                time.sleep(max(0.0, next_at - time.monotonic()))
            answer_types()  # what the scrapes were answered with
    return {name: {kind: {"p50": percentile(v, 0.5), "p99": percentile(v, 0.99),
                          "p999": percentile(v, 0.999), "n": len(v),
                          "content_type": types[name][kind]}
                   for kind, v in by_kind.items()} for name, by_kind in lat.items()}


def timed_scrape(conn: http.client.HTTPConnection, headers: dict[str, str]) -> float:
    """One GET of /metrics on a kept-alive connection; ms."""
    start = time.perf_counter()
    conn.request("GET", "/metrics", headers=headers)
    resp = conn.getresponse()
    body = resp.read()
    if resp.status != 200 or not body:
        raise RuntimeError(f"scrape answered {resp.status}")
    return (time.perf_counter() - start) * 1000


# ---------------------------------------------------------------- baseline (the original)


_BASELINE_REGISTRY = CollectorRegistry()
BASELINE_METRICS: dict[str, Any] = {
    "invocation_seconds": Histogram("baseline_invocation_seconds", "re-observed", ["agent"],
                                    registry=_BASELINE_REGISTRY),
    "tool_seconds": Histogram("baseline_tool_seconds", "re-observed", ["tool"],
                              registry=_BASELINE_REGISTRY),
    "errors": Counter("baseline_errors", "re-counted", ["agent"], registry=_BASELINE_REGISTRY),
}


def baseline_cycle(db: Path) -> tuple[float, float, int]:
    """One collection cycle the way the review describes the original exporter.

    It re-reads the whole history into memory, aggregates in Python, then runs per-session
    queries for the 50 latest sessions, 250+ statements in all, with time windows computed by
    wrapping the column in datetime(). Returns (wall s, CPU s, statements run).
    """
    statements = 0
    cpu0, t0 = time.process_time(), time.perf_counter()
    with closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
        def q(sql: str, args: tuple[Any, ...] = ()) -> list[Any]:
            nonlocal statements
            statements += 1
            return conn.execute(sql, args).fetchall()

        invocations = q("SELECT * FROM agent_invocations ORDER BY timestamp DESC")
        tool_uses = q("SELECT * FROM agent_tool_uses ORDER BY timestamp DESC")
        # Like the original, every cycle re-observes every row into histograms and re-counts
        # errors (which is also why its numbers grew without bound).
        for row in invocations:
            BASELINE_METRICS["invocation_seconds"].labels(row[5] or "").observe(row[13] or 0.0)
            if row[14] == "error":
                BASELINE_METRICS["errors"].labels(row[5] or "").inc()
        for row in tool_uses:
            BASELINE_METRICS["tool_seconds"].labels(row[5] or "").observe(row[8] or 0.0)
            if row[9] == "error":
                BASELINE_METRICS["errors"].labels(row[3] or "").inc()
        q("SELECT COUNT(*) FROM agent_invocations WHERE datetime(timestamp) > "
          "datetime('now', '-7 days')")
        q("SELECT agent_name, COUNT(*) FROM agent_invocations WHERE datetime(timestamp) > "
          "datetime('now', '-1 day') GROUP BY agent_name")
        q("SELECT status, COUNT(*) FROM sessions GROUP BY status")
        sessions = q("SELECT session_id FROM sessions ORDER BY start_time DESC LIMIT 50")
        for (sid,) in sessions:
            q("SELECT COUNT(*) FROM agent_invocations WHERE session_id = ?", (sid,))
            q("SELECT COUNT(DISTINCT agent_name) FROM agent_invocations WHERE session_id = ?",
              (sid,))
            q("SELECT COUNT(*) FROM agent_invocations WHERE session_id = ? AND "
              "status = 'completed'", (sid,))
            q("SELECT AVG(duration_seconds) FROM agent_invocations WHERE session_id = ?", (sid,))
            q("SELECT COUNT(*) FROM agent_tool_uses WHERE session_id = ?", (sid,))
    return time.perf_counter() - t0, time.process_time() - cpu0, statements


# ---------------------------------------------------------------- query-exporter

QE_QUERIES = {
    "invocations": ("SELECT agent_name AS agent, phase, status, COUNT(*) AS invocations "
                    "FROM agent_invocations WHERE status IN ('completed', 'error') "
                    "GROUP BY agent_name, phase, status",
                    ["invocations"]),
    "invocation_durations": ("SELECT agent_name AS agent, SUM(duration_seconds) AS "
                             "invocation_seconds_sum, COUNT(*) AS invocation_seconds_count "
                             "FROM agent_invocations WHERE status IN ('completed', 'error') "
                             "GROUP BY agent_name",
                             ["invocation_seconds_sum", "invocation_seconds_count"]),
    "tool_uses": ("SELECT agent_name AS agent, tool_name AS tool, status, COUNT(*) AS "
                  "tool_uses FROM agent_tool_uses WHERE status IN ('completed', 'error') "
                  "GROUP BY agent_name, tool_name, status",
                  ["tool_uses"]),
    "sessions": ("SELECT status, COUNT(*) AS sessions FROM sessions GROUP BY status",
                 ["sessions"]),
}
QE_LABELS = {"invocations": ["agent", "phase", "status"], "invocation_seconds_sum": ["agent"],
             "invocation_seconds_count": ["agent"], "tool_uses": ["agent", "tool", "status"],
             "sessions": ["status"]}


def query_exporter_config(db: Path, interval: int) -> str:
    lines = ["databases:", "  agents:", f"    dsn: sqlite:///{db}", "metrics:"]
    for metric, labels in QE_LABELS.items():
        lines += [f"  {metric}:", "    type: gauge", f"    description: {metric}",
                  f"    labels: [{', '.join(labels)}]"]
    lines.append("queries:")
    for name, (sql, metrics) in QE_QUERIES.items():
        lines += [f"  {name}:", f"    interval: {interval}", "    databases: [agents]",
                  f"    metrics: [{', '.join(metrics)}]", f"    sql: \"{sql}\""]
    return "\n".join(lines) + "\n"


def qe_latency(port: int) -> tuple[float, float]:
    """(sum of seconds, successful query runs) from query-exporter's own metrics."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    conn.request("GET", "/metrics")
    text = conn.getresponse().read().decode()
    conn.close()
    total = count = 0.0
    for line in text.splitlines():
        if line.startswith("query_latency_sum{"):
            total += float(line.rsplit(" ", 1)[1])
        elif line.startswith("queries_total{") and 'status="success"' in line:
            count += float(line.rsplit(" ", 1)[1])
    return total, count


def bench_query_exporter(db: Path, work: Path, scrapes: int, cycles: int) -> dict[str, Any]:
    interval = 5
    config = work / "query-exporter.yaml"
    config.write_text(query_exporter_config(db, interval))
    port = free_port()
    cmd = [QUERY_EXPORTER, "--config", str(config), "-H", "127.0.0.1", "-p", str(port),
           "-L", "warning"]
    with running(cmd, port, log=work / "query-exporter.log") as proc:
        # Wait for the first full round of queries, then measure `cycles` more rounds.
        deadline = time.monotonic() + 600
        while qe_latency(port)[1] < len(QE_QUERIES) and time.monotonic() < deadline:
            time.sleep(0.2)
        s0, n0 = qe_latency(port)
        cpu0_proc = cpu0 = proc_cpu_seconds(proc.pid)
        # Leave it alone for whole intervals (polling would add scrape work to its CPU).
        time.sleep(cycles * interval)
        target = n0 + cycles * len(QE_QUERIES)
        while qe_latency(port)[1] < target and time.monotonic() < deadline:
            time.sleep(1)
        cpu1 = proc_cpu_seconds(proc.pid)
        s1, n1 = qe_latency(port)
        rounds = (n1 - n0) / len(QE_QUERIES)
        cpu_delta = cpu1 - cpu0
        lat = scrape_latencies(port, scrapes, {})
        rss = rss_mb(proc.pid)
    # The same four queries run in this process on plain SQLite: their CPU alone, without
    # query-exporter's own overhead (the fairest figure for the ratio against agentmon).
    with closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
        cpu0 = time.process_time()
        for sql, _ in QE_QUERIES.values():
            conn.execute(sql).fetchall()
        plain_cpu = time.process_time() - cpu0
    return {
        "raw": {"cpu0": cpu0_proc, "cpu1": cpu1, "n0": n0, "n1": n1, "s0": s0, "s1": s1},
        "plain_queries_cpu_s": plain_cpu,
        "cycle_query_s": (s1 - s0) / rounds if rounds > 0 else float("nan"),
        # CPU per round: the process does little else between rounds but serve our polling
        "cycle_cpu_s": cpu_delta / rounds if rounds > 0 else float("nan"),
        "scrape_ms_p50": percentile(lat, 0.5), "scrape_ms_p99": percentile(lat, 0.99),
        "rss_mb": rss,
    }


# ---------------------------------------------------------------- report


def fmt(v: float, unit: str) -> str:
    if v != v:  # NaN
        return "n/a"
    if unit == "ms":
        return f"{v:.2f} ms" if v < 100 else f"{v:,.0f} ms"
    if unit == "s":
        return f"{v:.2f} s"
    return f"{v:.1f} MB"


def side_by_side_table(results: list[dict[str, Any]], before: str) -> str:
    lines = [f"| scrape latency p50 / p99 / p99.9 (basic auth, keep-alive) | {before} | "
             "this tree | ratio this tree / before |", "|---|---:|---:|---:|"]
    for r in results:
        sbs = r["side_by_side"]
        for kind, label in (("text", "no Accept header"), ("prometheus", "Prometheus' Accept")):
            b, a = sbs["before"][kind], sbs["after"][kind]
            lines.append(
                f"| {r['invocations']:,} inv., {label} ({a['n']:,} each; answered "
                f"{b['content_type'].split(';')[0]} / {a['content_type'].split(';')[0]}) | "
                + " | ".join(" / ".join(fmt(x[q], "ms") for q in ("p50", "p99", "p999"))
                             for x in (b, a)) + " | "
                + " / ".join(f"{a[q] / b[q]:.2f}" for q in ("p50", "p99", "p999")) + " |")
    return "\n".join(lines)


def table(results: list[dict[str, Any]]) -> str:
    def ratio(r: dict[str, Any], num: tuple[str, str, float], den: tuple[str, str]) -> str:
        value = r[num[0]][num[1]] * num[2] / r[den[0]][den[1]]
        return f"{value:,.0f}x" if value >= 10 else f"{value:.1f}x"

    rows: list[tuple[str, Callable[[dict[str, Any]], str]]] = [
        ("agentmon cold start", lambda r: fmt(r["agentmon"]["cold_start_s"], "s")),
        ("agentmon refresh (1,000 new + 100 upd.)",
         lambda r: fmt(r["agentmon"]["refresh_ms_p50"], "ms")),
        ("agentmon refresh CPU", lambda r: fmt(r["agentmon"]["refresh_cpu_ms"], "ms")),
        ("agentmon scrape p50 / p99 (basic auth)",
         lambda r: f"{fmt(r['agentmon']['scrape_ms_p50'], 'ms')} / "
                   f"{fmt(r['agentmon']['scrape_ms_p99'], 'ms')}"),
        ("agentmon serve RSS / peak (own cold start)",
         lambda r: f"{fmt(r['agentmon']['rss_mb'], 'MB')} / "
                   f"{fmt(r['agentmon']['rss_peak_mb'], 'MB')}"),
        ("query-exporter CPU per cycle (process)",
         lambda r: fmt(r["query_exporter"]["cycle_cpu_s"] * 1000, "ms")),
        ("its 4 queries, CPU in plain SQLite",
         lambda r: fmt(r["query_exporter"]["plain_queries_cpu_s"] * 1000, "ms")),
        ("the same on the migrated file (our indexes)",
         lambda r: fmt(r["query_exporter_migrated"]["plain_queries_cpu_s"] * 1000, "ms")),
        ("query-exporter scrape p50 / p99 (no auth)",
         lambda r: f"{fmt(r['query_exporter']['scrape_ms_p50'], 'ms')} / "
                   f"{fmt(r['query_exporter']['scrape_ms_p99'], 'ms')}"),
        ("query-exporter RSS", lambda r: fmt(r["query_exporter"]["rss_mb"], "MB")),
        ("baseline cycle (original approach)",
         lambda r: f"{fmt(r['baseline']['cycle_s'] * 1000, 'ms')}"
                   f" ({r['baseline']['statements']} queries)"),
        ("baseline CPU per cycle", lambda r: fmt(r["baseline"]["cycle_cpu_s"] * 1000, "ms")),
        ("CPU ratio its queries / agentmon refresh",
         lambda r: ratio(r, ("query_exporter", "plain_queries_cpu_s", 1000),
                         ("agentmon", "refresh_cpu_ms"))),
        ("same, its queries on the migrated file",
         lambda r: ratio(r, ("query_exporter_migrated", "plain_queries_cpu_s", 1000),
                         ("agentmon", "refresh_cpu_ms"))),
        ("CPU ratio baseline / agentmon",
         lambda r: ratio(r, ("baseline", "cycle_cpu_s", 1000), ("agentmon", "refresh_cpu_ms"))),
        ("scrape p99 ratio query-exporter / agentmon",
         lambda r: ratio(r, ("query_exporter", "scrape_ms_p99", 1), ("agentmon", "scrape_ms_p99"))),
    ]
    head = ["| measure | " + " | ".join(f"{r['invocations']:,} inv." for r in results) + " |",
            "|---|" + "---:|" * len(results)]
    body = []
    for name, get in rows:
        cells = []
        for r in results:
            try:
                cells.append(get(r))
            except (KeyError, ZeroDivisionError, TypeError):
                cells.append("n/a")
        body.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(head + body)


def svg_plot(results: list[dict[str, Any]]) -> str:
    """Refresh cost (CPU ms per cycle, log scale) against database size, one line per tool."""
    import math

    def get(r: dict[str, Any], tool: str, key: str, scale: float) -> float:
        return float(r[tool][key]) * scale if tool in r else float("nan")

    series = {
        "agentmon": ("#1f77b4", [get(r, "agentmon", "refresh_cpu_ms", 1) for r in results]),
        "query-exporter": ("#ff7f0e", [get(r, "query_exporter", "plain_queries_cpu_s", 1000)
                                       for r in results]),
        "baseline (original)": ("#d62728", [get(r, "baseline", "cycle_cpu_s", 1000)
                                            for r in results]),
    }
    w, h, left, bottom, top, right = 600, 320, 70, 50, 20, 170
    xs = [math.log10(r["invocations"]) for r in results]
    all_v = [v for _, vals in series.values() for v in vals if v == v and v > 0]
    lo, hi = math.floor(math.log10(min(all_v))), math.ceil(math.log10(max(all_v)))
    x0, x1 = min(xs), max(xs) if max(xs) > min(xs) else min(xs) + 1

    def px(x: float) -> float:
        return left + (x - x0) / (x1 - x0) * (w - left - right)

    def py(v: float) -> float:
        return h - bottom - (math.log10(v) - lo) / max(hi - lo, 1) * (h - bottom - top)

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" '
           'font-family="sans-serif" font-size="11">',
           f'<rect width="{w}" height="{h}" fill="white"/>']
    for e in range(lo, hi + 1):
        y = py(10 ** e)
        out.append(f'<line x1="{left}" y1="{y:.1f}" x2="{w - right}" y2="{y:.1f}" '
                   'stroke="#ddd"/>')
        out.append(f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">'
                   f'{10 ** e:g} ms</text>')
    for r, x in zip(results, xs, strict=True):
        out.append(f'<text x="{px(x):.1f}" y="{h - bottom + 16}" text-anchor="middle">'
                   f'{r["invocations"]:,}</text>')
    out.append(f'<text x="{(left + w - right) / 2}" y="{h - 12}" text-anchor="middle">'
               'invocations in the database (3 tool uses each)</text>')
    out.append(f'<text x="14" y="{h / 2}" transform="rotate(-90 14 {h / 2})" '
               'text-anchor="middle">CPU per refresh cycle</text>')
    for i, (name, (color, vals)) in enumerate(series.items()):
        pts = " ".join(f"{px(x):.1f},{py(v):.1f}" for x, v in zip(xs, vals, strict=True)
                       if v == v and v > 0)
        out.append(f'<polyline points="{pts}" fill="none" stroke="{color}" stroke-width="2"/>')
        for pt in pts.split():
            cx, cy = pt.split(",")
            out.append(f'<circle cx="{cx}" cy="{cy}" r="3" fill="{color}"/>')
        ly = top + 14 + i * 18
        out.append(f'<line x1="{w - right + 12}" y1="{ly - 4}" x2="{w - right + 30}" '
                   f'y2="{ly - 4}" stroke="{color}" stroke-width="2"/>')
        out.append(f'<text x="{w - right + 34}" y="{ly}">{name}</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="100000,1000000",
                        help="comma-separated invocation counts (default 100000,1000000)")
    parser.add_argument("--huge", action="store_true", help="also run 10,000,000 invocations")
    parser.add_argument("--cycles", type=int, default=20, help="refresh cycles to time")
    parser.add_argument("--scrapes", type=int, default=2000, help="scrapes to time")
    parser.add_argument("--qe-cycles", type=int, default=2, help="query-exporter rounds to time")
    parser.add_argument("--no-baseline", action="store_true", help="skip the original's cycle")
    parser.add_argument("--peers-max", type=int, default=1_000_000,
                        help="largest size to run the peers on (the original's cycle holds the "
                        "whole history in memory: 10M would not fit; agentmon runs at every size)")
    parser.add_argument("--cache", type=Path, default=HERE / "results" / "cache",
                        help="where seeded databases are kept between runs")
    parser.add_argument("--json", type=Path, default=HERE / "results" / "bench_serve.json")
    parser.add_argument("--svg", type=Path, default=None, help="write the refresh-cost plot")
    parser.add_argument("--before", metavar="REF",
                        help="also measure the scrape latency of this git revision's server, "
                        "side by side with this tree's (e.g. main)")
    parser.add_argument("--side-by-side-scrapes", type=int, default=3000,
                        help="with --before: scrapes of each server per kind of request (3000)")
    parser.add_argument("--side-by-side-interval", type=float, default=0.01,
                        help="with --before: seconds between two scrapes of a server (0.01)")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",") if s]
    if args.huge:
        sizes.append(10_000_000)

    results = []
    before_tmp = ExitStack()
    before_src = None
    if args.before:
        from bench_attack import source_at
        folder = Path(before_tmp.enter_context(tempfile.TemporaryDirectory(prefix="before-")))
        before_src = source_at(args.before, folder)
    for n in sizes:
        seed = seeded_db(args.cache, n)
        with tempfile.TemporaryDirectory(prefix="agentmon-bench-") as tmp:
            work = Path(tmp)
            r: dict[str, Any] = {"invocations": n}
            if n <= args.peers_max:
                original = seeded_db(args.cache, n, "original")
                print(f"[{n:,}] query-exporter ...", file=sys.stderr, flush=True)
                # on the user's database as it is (original schema), then on the migrated file
                r["query_exporter"] = bench_query_exporter(
                    working_copy(original, work), work, args.scrapes, args.qe_cycles)
                r["query_exporter_migrated"] = bench_query_exporter(
                    working_copy(seed, work), work, args.scrapes, args.qe_cycles)
                if not args.no_baseline:
                    print(f"[{n:,}] baseline cycle ...", file=sys.stderr, flush=True)
                    wall, cpu, stmts = baseline_cycle(original)
                    r["baseline"] = {"cycle_s": wall, "cycle_cpu_s": cpu, "statements": stmts}
            print(f"[{n:,}] agentmon ...", file=sys.stderr, flush=True)
            r["agentmon"] = bench_agentmon(working_copy(seed, work), work, args.cycles,
                                           args.scrapes)
            if before_src is not None:
                print(f"[{n:,}] scrapes side by side with {args.before} ...", file=sys.stderr,
                      flush=True)
                r["side_by_side"] = scrape_side_by_side(
                    working_copy(seed, work), work, before_src, args.side_by_side_scrapes,
                    args.side_by_side_interval)
            results.append(r)
    before_tmp.close()

    print(table(results))
    if args.before:
        print()
        print(side_by_side_table(results, args.before))
    meta = {"date": now(), "python": sys.version.split()[0], "cpus": os.cpu_count(),
            "sqlite": sqlite3.sqlite_version,
            "max_rss_self_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"meta": meta, "results": results}, indent=2) + "\n")
    if args.svg:
        args.svg.write_text(svg_plot(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
