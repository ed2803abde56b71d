"""Soak: hook writers, prunes, scrapes, an exporter restart and a restored backup, for minutes.

On a database seeded with history (`agentmon seed`, some of it older than the retention) it
runs for --minutes (default 30; --seconds for a quick run), all real `agentmon` processes:

* 8 writers (--writers), each running `agentmon hook` once per event, one after the other, on
  Claude Code-shaped sessions (bench_hook's mix: SessionStart, UserPromptSubmit, Pre/Post tool
  pairs with duration_ms and a few failures, Task/Agent invocations with their subagent's tools
  and SubagentStop, Stop, SessionEnd), as fast as they can unless --pause;
* `agentmon prune --older-than 7d` every --prune-every seconds: the first with --reclaim (so
  later prunes give pages back) removes the seeded history past the retention; the later ones
  add `--max-size` (default: the data in use after the first), so each removes about what the
  writers added since, oldest first, of any age;
* `agentmon serve`, scraped over HTTP every 5 s; once (at 30 % of the run) stopped with
  SIGTERM and started again on the same checkpoint;
* a verified backup (`agentmon.schema.backup.take_backup`, what `agentmon migrate` writes) at
  55 % and, at 70 %, that backup restored the way playbooks/rollback.yml --tags restore does:
  exporter stopped, `playbooks/rollback_tasks/files/agentmon_restore.py` (live content set aside,
  backup copied in under one lock), exporter started again. The writers are held between two
  events for the backup and for the restore (with a refresh of the exporter before and after
  it), so every event is clearly before or after each, and start new sessions after the
  restore.

Prints one row per tenth of the run (--slices): events written, file size, exporter RSS, scrape
p99 and the hook's p99 per event type; the operations; then the invariants, and exits 1 if one
fails:

* writers vs rows: finished invocations and tool uses (SQL rows plus prune aggregates) in the
  backup = after seeding + the Post events written before the backup (each finishes one row);
  at the end = in the backup + the Post events written after the restore. What was written
  between backup and restore is lost by design: the exported totals must drop by exactly
  those Post events across the restore;
* exported vs SQL: at the end, agentmon_invocations_total and agentmon_tool_uses_total per
  status = SQL rows plus prune aggregates per status;
* no hook printed a problem, and the prunes removed rows;
* no counter sample (a series that disappears counts as 0) decreases between consecutive
  scrapes of one exporter process, nor a data counter (invocations, tool uses, durations,
  tokens, ...) across the restart (the checkpoint keeps them). Across the restore the data
  counters go down (a counter reset, as docs/metrics.md says: the exporter rebuilds) and the
  exporter's own counters (rows read, rebuilds, process CPU) start again at every start: those
  decreases are printed, not failed.

Writes an SVG of file size and exporter RSS over time (--svg) and JSON (--json).

    ../.venv/bin/python bench/bench_soak.py [--minutes 30 | --seconds 90] [--svg FILE]
"""

from __future__ import annotations

import argparse
import compileall
import http.client
import json
import math
import os
import random
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path
from typing import Any

from bench_hook import event_mix
from bench_serve import free_port, percentile, rss_mb, wait_for_port
from prometheus_client.parser import text_string_to_metric_families

import agentmon
from agentmon.schema.backup import take_backup
from agentmon.schema.db import schema_version
from agentmon.schema.statuses import FINAL

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
AGENTMON = str(Path(sys.executable).parent / "agentmon")
RESTORE = REPO / "playbooks" / "rollback_tasks" / "files" / "agentmon_restore.py"
AGENT_TOOLS = ("Task", "Agent")
# column header -> event kind (PreToolUse/PostToolUse of Task/Agent are the invocations)
KINDS = {"Start": "SessionStart", "Prompt": "UserPromptSubmit", "Pre": "PreToolUse",
         "Post": "PostToolUse", "Fail": "PostToolUseFailure", "AgPre": "AgentPre",
         "AgPost": "AgentPost", "SubStop": "SubagentStop", "Stop": "Stop", "End": "SessionEnd"}
TOOL_FINISH = ("PostToolUse", "PostToolUseFailure")
# counters of the data (kept in the checkpoint) vs of the exporter process (start at 0)
PROCESS_COUNTERS = ("agentmon_rows_read", "agentmon_refresh_errors", "agentmon_state_rebuilds",
                    "agentmon_label_values_folded", "process_", "python_")


# ---------------------------------------------------------------- events


def session_templates() -> list[list[dict[str, Any]]]:
    """Whole sessions of bench_hook's mix (SessionStart .. SessionEnd)."""
    sessions: list[list[dict[str, Any]]] = []
    current: list[dict[str, Any]] = []
    for event in event_mix(2000):
        current.append(event)
        if event["hook_event_name"] == "SessionEnd":
            sessions.append(current)
            current = []
    return sessions


def kind(event: dict[str, Any]) -> str:
    name = str(event["hook_event_name"])
    if event.get("tool_name") in AGENT_TOOLS:
        return "AgentPre" if name == "PreToolUse" else "AgentPost"
    return name


def session_events(template: list[dict[str, Any]], sid: str,
                   rng: random.Random) -> Iterator[tuple[str, bytes]]:
    """One session of the template under a new id; tool calls report their duration_ms."""
    for event in template:
        event = {**event, "session_id": sid}
        if "tool_use_id" in event:
            event["tool_use_id"] = f"{sid}-{event['tool_use_id']}"
        if event["hook_event_name"] in TOOL_FINISH and event["tool_name"] not in AGENT_TOOLS:
            event["duration_ms"] = round(rng.lognormvariate(5, 1.5))
        yield kind(event), json.dumps(event).encode()


# ---------------------------------------------------------------- writers


@dataclass
class HookRun:
    t: float  # seconds since the start, when the process ended
    kind: str
    ms: float
    epoch: int  # 0 before the backup, 1 between backup and restore, 2 after the restore
    problem: str = ""


class Gate:
    """Holds the writers between two events while the controller does something."""

    def __init__(self, writers: int) -> None:
        self.cond = threading.Condition()
        self.writers = writers
        self.paused = False
        self.waiting = 0
        self.epoch = 0
        self.generation = 0  # bumped when the writers must start new sessions

    def enter(self) -> tuple[int, int]:
        with self.cond:
            if self.paused:
                self.waiting += 1
                self.cond.notify_all()
                while self.paused:
                    self.cond.wait()
                self.waiting -= 1
            return self.epoch, self.generation

    def leave(self) -> None:
        """A writer that stops for good."""
        with self.cond:
            self.writers -= 1
            self.cond.notify_all()

    def hold(self) -> None:
        with self.cond:
            self.paused = True
            while self.waiting < self.writers:
                self.cond.wait()

    def release(self, new_epoch: bool = False, new_sessions: bool = False) -> None:
        with self.cond:
            self.epoch += new_epoch
            self.generation += new_sessions
            self.paused = False
            self.cond.notify_all()


class Writers:
    def __init__(self, n: int, db: Path, work: Path, t0: float, pause: float) -> None:
        self.env = {**os.environ, "AGENTMON_DB": str(db),
                    "XDG_STATE_HOME": str(work / "state")}  # its own spool, never the user's
        self.templates = session_templates()
        self.t0, self.pause = t0, pause
        self.gate = Gate(n)
        self.stop = threading.Event()
        self.runs: list[HookRun] = []
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self._run, args=(k,), daemon=True)
                        for k in range(n)]

    def start(self) -> None:
        for thread in self.threads:
            thread.start()

    def finish(self) -> None:
        self.stop.set()
        self.gate.release()
        for thread in self.threads:
            thread.join()

    def _run(self, k: int) -> None:
        rng = random.Random(k)
        number, generation = 0, 0
        events: Iterator[tuple[str, bytes]] = iter(())
        try:
            while not self.stop.is_set():
                epoch, gen = self.gate.enter()
                if self.stop.is_set():
                    break
                item = next(events, None) if gen == generation else None
                if item is None:
                    generation = gen
                    template = self.templates[number % len(self.templates)]
                    events = session_events(template, f"soak-w{k}-s{number}", rng)
                    number += 1
                    continue
                self._hook(*item, epoch)
                if self.pause:
                    self.stop.wait(self.pause)
        finally:
            self.gate.leave()

    def _hook(self, what: str, payload: bytes, epoch: int) -> None:
        start = time.perf_counter()
        try:
            proc = subprocess.run([AGENTMON, "hook"], input=payload, capture_output=True,
                                  env=self.env, timeout=120, check=False)
            problem = proc.stderr.decode(errors="replace").strip()
            if proc.returncode:
                problem = f"rc={proc.returncode} {problem}"
        except subprocess.TimeoutExpired:
            problem = "timed out after 120 s"
        ms = (time.perf_counter() - start) * 1000
        run = HookRun(time.monotonic() - self.t0, what, ms, epoch, problem[:300])
        with self.lock:
            self.runs.append(run)


def finished_by_epoch(runs: list[HookRun]) -> dict[int, dict[str, int]]:
    """Post events written per epoch: each finishes exactly one row."""
    out = {e: {"agent_invocations": 0, "agent_tool_uses": 0} for e in (0, 1, 2)}
    for run in runs:
        if run.problem:
            continue
        if run.kind == "AgentPost":
            out[run.epoch]["agent_invocations"] += 1
        elif run.kind in TOOL_FINISH:
            out[run.epoch]["agent_tool_uses"] += 1
    return out


# ---------------------------------------------------------------- exporter and scrapes


class Exporter:
    """`agentmon serve` on one port and checkpoint, stopped and started by the controller."""

    def __init__(self, db: Path, work: Path, interval: float) -> None:
        self.port = free_port()
        self.log = work / "serve.log"
        self.cmd = [AGENTMON, "serve", "--db", str(db), "--web.listen-address",
                    f"127.0.0.1:{self.port}", "--checkpoint.file", str(work / "serve.ckpt"),
                    "--refresh.interval", str(interval)]
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self.exit_codes: list[int] = []

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(self.cmd, stdout=out, stderr=subprocess.STDOUT)
        wait_for_port(self.port, self.proc)
        self.starts += 1

    def stop(self) -> None:
        if self.proc is None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.exit_codes.append(self.proc.wait(timeout=60))
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.exit_codes.append(self.proc.wait())
        self.proc = None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None


def metrics(port: int) -> tuple[float, dict[str, float], dict[str, str]]:
    """(ms, value per sample, metric type per sample) of one scrape on a new connection."""
    start = time.perf_counter()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("GET", "/metrics")
        resp = conn.getresponse()
        body = resp.read().decode()
    finally:
        conn.close()
    ms = (time.perf_counter() - start) * 1000
    if resp.status != 200:
        raise OSError(f"scrape answered {resp.status}")
    values: dict[str, float] = {}
    types: dict[str, str] = {}
    for family in text_string_to_metric_families(body):
        for s in family.samples:
            key = s.name + "{" + ",".join(f"{k}={v}" for k, v in sorted(s.labels.items())) + "}"
            values[key] = s.value
            types[key] = family.type
    return ms, values, types


@dataclass
class Scrape:
    t: float
    ok: bool
    ms: float = 0.0
    pid: int | None = None
    restores: int = 0  # restores done before this scrape
    rss_mb: float = float("nan")
    file_bytes: int = 0
    values: dict[str, float] = field(default_factory=dict)


def file_bytes(db: Path) -> int:
    total = 0
    for name in (db, Path(f"{db}-wal")):
        if name.exists():
            total += name.stat().st_size
    return total


class Scraper:
    def __init__(self, exporter: Exporter, db: Path, t0: float, every: float) -> None:
        self.exporter, self.db, self.t0, self.every = exporter, db, t0, every
        self.scrapes: list[Scrape] = []
        self.types: dict[str, str] = {}
        self.restores = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.stop.wait(self.every - (time.monotonic() - self.t0) % self.every):
            self.scrape()

    def scrape(self) -> Scrape:
        pid, restores = self.exporter.pid, self.restores
        sample = Scrape(time.monotonic() - self.t0, False, pid=pid, restores=restores,
                        file_bytes=file_bytes(self.db))
        try:
            sample.ms, sample.values, types = metrics(self.exporter.port)
            self.types.update(types)
            sample.ok = pid is not None and pid == self.exporter.pid
            if sample.ok and pid is not None:
                sample.rss_mb = rss_mb(pid)
        except (OSError, http.client.HTTPException, ValueError):
            pass
        self.scrapes.append(sample)
        return sample


# ---------------------------------------------------------------- database


def seed(db: Path, invocations: int) -> None:
    subprocess.run([AGENTMON, "seed", "--db", str(db), "--invocations", str(invocations),
                    "--days", "30", "--seed", "1"], check=True, stdout=subprocess.DEVNULL)
    with closing(sqlite3.connect(db)) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")


def used_bytes(db: Path) -> int:
    with closing(sqlite3.connect(db)) as conn:
        pages, free, size = (conn.execute(f"PRAGMA {p}").fetchone()[0]
                             for p in ("page_count", "freelist_count", "page_size"))
    return int((pages - free) * size)


def finished_rows(db: Path) -> dict[str, dict[str, int]]:
    """Finished invocations and tool uses per status: rows in the tables + prune aggregates."""
    out: dict[str, dict[str, int]] = {}
    marks = ", ".join("?" * len(FINAL))
    with closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
        for table in ("agent_invocations", "agent_tool_uses"):
            counts = dict.fromkeys(FINAL, 0)
            for status, n in conn.execute(
                    f"SELECT status, count(*) FROM {table} WHERE status IN ({marks})"  # noqa: S608
                    " GROUP BY status", FINAL):
                counts[status] += n
            for status, n in conn.execute(
                    "SELECT status, sum(rows) FROM agentmon_pruned WHERE tbl = ?"
                    " GROUP BY status", (table,)):
                counts[status] = counts.get(status, 0) + int(n)
            out[table] = counts
    return out


def exported_finished(values: dict[str, float]) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    for table, name in (("agent_invocations", "agentmon_invocations_total"),
                        ("agent_tool_uses", "agentmon_tool_uses_total")):
        counts = dict.fromkeys(FINAL, 0)
        for key, value in values.items():
            if key.startswith(name + "{"):
                status = re.search(r"status=([^,}]*)", key)
                if status:
                    counts[status.group(1)] = counts.get(status.group(1), 0) + int(value)
        out[table] = counts
    return out


def plus(a: dict[str, dict[str, int]], b: dict[str, int]) -> dict[str, int]:
    """Totals per table of ``a`` (per status) plus ``b``."""
    return {t: sum(a[t].values()) + b.get(t, 0) for t in a}


def totals(a: dict[str, dict[str, int]]) -> dict[str, int]:
    return {t: sum(v.values()) for t, v in a.items()}


# ---------------------------------------------------------------- controller


@dataclass
class Mark:
    t: float
    what: str
    seconds: float
    detail: str = ""
    removed: int = 0


class Soak:
    """The run: the processes, the plan of operations and what they did."""

    def __init__(self, args: argparse.Namespace, work: Path) -> None:
        self.args, self.work = args, work
        self.db = work / "agent_workflow.db"
        self.duration = args.seconds if args.seconds else args.minutes * 60
        self.prune_every = args.prune_every or min(180.0, max(10.0, self.duration / 6))
        self.max_size: int | None = args.max_size
        self.marks: list[Mark] = []
        self.backup: Path | None = None
        self.seeded: dict[str, dict[str, int]] = {}
        self.backup_rows: dict[str, dict[str, int]] = {}
        self.exported_around_restore: list[dict[str, int]] = []
        self.t0 = time.monotonic()
        self.exporter = Exporter(self.db, work, args.refresh_interval)
        self.writers = Writers(args.writers, self.db, work, self.t0, args.pause)
        self.scraper = Scraper(self.exporter, self.db, self.t0, args.scrape_every)

    def now(self) -> float:
        return time.monotonic() - self.t0

    def operate(self) -> None:
        """Writers and scrapes from now; the operations at their times; until the end."""
        self.t0 = self.writers.t0 = self.scraper.t0 = time.monotonic()
        self.exporter.start()
        self.writers.start()
        self.scraper.thread.start()
        actions = {"prune": self.prune, "restart": self.restart, "backup": self.take_backup,
                   "restore": self.restore}
        try:
            for at, action in schedule(self.duration, self.prune_every):
                time.sleep(max(0.0, at - self.now()))
                started = self.now()
                actions[action]()
                mark = self.marks[-1]
                mark.t = started
                print(f"  {started:7.1f} s  {mark.what}: {mark.detail} ({mark.seconds:.2f} s)",
                      file=sys.stderr, flush=True)
            time.sleep(max(0.0, self.duration - self.now()))
        finally:
            self.writers.finish()
            self.scraper.stop.set()
            self.scraper.thread.join()

    def prune(self) -> None:
        """The first prune goes by age and switches the file to incremental vacuum; unless
        --max-size is given, the data in use after it becomes the cap for the later ones, so
        each removes about what the writers added since (oldest first)."""
        first = not any(m.what.startswith("prune") for m in self.marks)
        cmd = [AGENTMON, "prune", "--db", str(self.db), "--older-than", self.args.older_than]
        cmd += ["--reclaim"] if first else []
        cmd += ["--max-size", str(self.max_size)] if self.max_size else []
        start = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        seconds = time.perf_counter() - start
        removed = sum(int(n) for n, _ in re.findall(r"(\d+) (agent_invocations|agent_tool_uses)",
                                                     proc.stdout))
        detail = proc.stdout.strip().split(": ", 1)[-1] if proc.returncode == 0 else \
            f"FAILED rc={proc.returncode}: {proc.stderr.strip()[:200]}"
        if self.max_size is None:
            self.max_size = used_bytes(self.db)
        self.marks.append(Mark(0, "prune --reclaim" if first else "prune", seconds, detail,
                               removed))

    def take_backup(self) -> None:
        self.writers.gate.hold()
        start = time.perf_counter()
        with closing(sqlite3.connect(self.db)) as conn:
            self.backup = take_backup(conn, self.db, self.work / "backups", schema_version(conn))
        seconds = time.perf_counter() - start
        self.writers.gate.release(new_epoch=True)
        self.backup_rows = finished_rows(self.backup)
        self.marks.append(Mark(0, "backup", seconds, self.backup.name))

    def restore(self) -> None:
        """As playbooks/rollback.yml --tags restore does it, with the writers held."""
        assert self.backup is not None
        self.writers.gate.hold()
        before = wait_for_refreshes(self.scraper, time.time(), count=1)
        start = time.perf_counter()
        self.exporter.stop()
        self.scraper.restores += 1
        proc = subprocess.run(
            [sys.executable, str(RESTORE), "--db", str(self.db), "--backup", str(self.backup),
             "--set-aside", str(self.work / "backups" / "set-aside.db")],
            capture_output=True, text=True, check=False)
        self.exporter.start()
        seconds = time.perf_counter() - start
        after = wait_for_refreshes(self.scraper, time.time(), count=1)
        self.writers.gate.release(new_epoch=True, new_sessions=True)
        self.exported_around_restore = [totals(exported_finished(x.values))
                                        for x in (before, after)]
        if proc.returncode == 0:
            only = json.loads(proc.stdout).get("rows_only_in_set_aside", {})
            detail = "rows only in the set-aside file: " + ", ".join(
                f"{n} {t}" for t, n in sorted(only.items()))
        else:
            detail = f"FAILED rc={proc.returncode}: {proc.stderr.strip()[:200]}"
        self.marks.append(Mark(0, "restore", seconds, detail))

    def restart(self) -> None:
        start = time.perf_counter()
        self.exporter.stop()
        self.exporter.start()
        self.marks.append(Mark(0, "restart", time.perf_counter() - start,
                               f"exit code {self.exporter.exit_codes[-1]}"))


def schedule(duration: float, prune_every: float) -> list[tuple[float, str]]:
    plan = [(duration * 0.30, "restart"), (duration * 0.55, "backup"),
            (duration * 0.70, "restore")]
    t = prune_every / 2
    while t < duration:
        plan.append((t, "prune"))
        t += prune_every
    return sorted(plan)


def wait_for_refreshes(scraper: Scraper, after: float, count: int = 2,
                       timeout: float = 120) -> Scrape:
    """Scrape until the exporter has refreshed ``count`` times after wall time ``after``."""
    seen: set[float] = set()
    deadline = time.monotonic() + timeout
    sample = scraper.scrape()
    while time.monotonic() < deadline:
        stamp = sample.values.get("agentmon_last_refresh_timestamp_seconds{}", 0.0)
        if stamp > after:
            seen.add(stamp)
            if len(seen) >= count:
                return sample
        time.sleep(0.5)
        sample = scraper.scrape()
    raise SystemExit("the exporter did not refresh after the writers stopped")


# ---------------------------------------------------------------- report


def counter_sample(key: str, types: dict[str, str]) -> bool:
    name = key.split("{")[0]
    if types.get(key) == "counter":
        return not name.endswith("_created")
    return types.get(key) == "histogram" and name.endswith(("_bucket", "_count", "_sum"))


def decreases(scrapes: list[Scrape], types: dict[str, str]) -> dict[str, tuple[float, str]]:
    """Largest decrease of a counter sample between consecutive scrapes, per kind of step
    (same process, across the restart, across the restore) and kind of counter: (amount,
    series). A series that disappears counts as a decrease to 0."""
    out: dict[str, tuple[float, str]] = {}
    for a, b in pairwise(sorted((s for s in scrapes if s.ok), key=lambda s: s.t)):
        step = ("restore" if b.restores != a.restores else
                "restart" if b.pid != a.pid else "same process")
        for key, old in a.values.items():
            if not counter_sample(key, types):
                continue
            drop = old - b.values.get(key, 0.0)
            if key.split("{")[0].endswith("_sum") and drop <= 1e-9 * max(1.0, abs(old)):
                drop = 0.0  # a float sum added up in another order (a rebuild)
            group = "process" if key.startswith(PROCESS_COUNTERS) else "data"
            best = out.setdefault(f"{step}, {group} counters", (0.0, ""))
            if drop > best[0]:
                out[f"{step}, {group} counters"] = (drop, key)
    return out


def p99(values: list[float]) -> str:
    return f"{percentile(values, 0.99):.0f}" if values else "-"


def slice_table(runs: list[HookRun], scrapes: list[Scrape], marks: list[Mark],
                duration: float, slices: int) -> str:
    head = ("| slice (s) | events | ev/s | file MB | RSS MB | scrape p99 ms | "
            + " | ".join(KINDS) + " | done |")
    lines = [head, "|---" * (len(KINDS) + 7) + "|"]
    width = duration / slices
    for i in range(slices):
        lo, hi = i * width, (i + 1) * width
        inside = [r for r in runs if lo <= r.t < hi or (i == slices - 1 and r.t >= hi)]
        scr = [s for s in scrapes if lo <= s.t < hi]
        good = [s for s in scr if s.ok]
        last = scr[-1] if scr else None
        cells = [f"{lo:.0f}-{hi:.0f}", f"{len(inside):,}", f"{len(inside) / width:.1f}",
                 f"{last.file_bytes / 1e6:.1f}" if last else "-",
                 f"{max(s.rss_mb for s in good):.1f}" if good else "-",
                 p99([s.ms for s in good]) + (f" ({len(scr) - len(good)} failed)"
                                              if len(scr) > len(good) else "")]
        cells += [p99([r.ms for r in inside if r.kind == k]) for k in KINDS.values()]
        done = [m for m in marks if lo <= m.t < hi]
        cells.append(", ".join(m.what + (f" -{m.removed:,}" if m.what.startswith("prune")
                                         else "") for m in done))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def svg_plot(scrapes: list[Scrape], marks: list[Mark], duration: float) -> str:
    """File size and exporter RSS over the run, one panel each; operations as vertical lines."""
    w, panel, left, right, top, gap = 640, 150, 60, 20, 24, 46
    h = top + 2 * panel + gap + 64
    good = [s for s in scrapes if s.ok]
    panels = [("database file + WAL (MB)", "#1f77b4", [(s.t, s.file_bytes / 1e6) for s in good]),
              ("agentmon serve RSS (MB)", "#2ca02c", [(s.t, s.rss_mb) for s in good])]
    colors = {"prune": "#999", "restart": "#ff7f0e", "backup": "#9467bd", "restore": "#d62728"}

    def px(t: float) -> float:
        return left + t / max(duration, 1) * (w - left - right)

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" '
           'font-family="sans-serif" font-size="11">',
           f'<rect width="{w}" height="{h}" fill="white"/>']
    for i, (title, color, points) in enumerate(panels):
        y0 = top + i * (panel + gap)
        vals = [v for _, v in points if v == v]
        hi = max(vals, default=1.0) * 1.1 or 1.0
        step = 10 ** math.floor(math.log10(hi / 2)) if hi > 0 else 1
        out.append(f'<text x="{left}" y="{y0 - 8}">{title}</text>')
        tick = 0.0
        while tick <= hi:
            y = y0 + panel - tick / hi * panel
            out.append(f'<line x1="{left}" y1="{y:.1f}" x2="{w - right}" y2="{y:.1f}" '
                       'stroke="#eee"/>')
            out.append(f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">{tick:g}</text>')
            tick += step * (2 if hi / step > 8 else 1)
        for m in marks:
            c = colors[m.what.split()[0]]
            out.append(f'<line x1="{px(m.t):.1f}" y1="{y0}" x2="{px(m.t):.1f}" '
                       f'y2="{y0 + panel}" stroke="{c}" stroke-dasharray="3,3"/>')
        pts = " ".join(f"{px(t):.1f},{y0 + panel - v / hi * panel:.1f}" for t, v in points
                       if v == v)
        out.append(f'<polyline points="{pts}" fill="none" stroke="{color}" stroke-width="1.5"/>')
    base = top + 2 * panel + gap  # the bottom of the second panel
    minutes = duration / 60
    step_min = 0.25 if minutes <= 2 else 1 if minutes <= 10 else 5
    m = 0.0
    while m <= minutes + 1e-9:
        out.append(f'<text x="{px(m * 60):.1f}" y="{base + 14}" text-anchor="middle">'
                   f'{m:g}</text>')
        m += step_min
    out.append(f'<text x="{(left + w - right) / 2}" y="{base + 28}" '
               'text-anchor="middle">minutes</text>')
    x = left
    for name, c in colors.items():
        out.append(f'<line x1="{x}" y1="{h - 12}" x2="{x + 18}" y2="{h - 12}" stroke="{c}" '
                   'stroke-dasharray="3,3" stroke-width="2"/>')
        out.append(f'<text x="{x + 22}" y="{h - 8}">{name}</text>')
        x += 90
    out.append("</svg>")
    return "\n".join(out) + "\n"


def check(name: str, ok: bool, detail: str, failures: list[str]) -> None:
    print(f"{'ok  ' if ok else 'FAIL'} {name}: {detail}")
    if not ok:
        failures.append(name)


# ---------------------------------------------------------------- main


def print_tables(soak: Soak, runs: list[HookRun], scrapes: list[Scrape]) -> None:
    duration = soak.duration
    print(f"\n{len(runs):,} hook events in {duration:.0f} s ({len(runs) / duration:.1f}/s),"
          f" {sum(s.ok for s in scrapes)} scrapes ({sum(not s.ok for s in scrapes)} failed,"
          " while the exporter was down); hook p99 per event type in ms\n")
    print(slice_table(runs, scrapes, soak.marks, duration, soak.args.slices))
    print("\n| at (s) | operation | seconds | result |\n|---:|---|---:|---|")
    for m in soak.marks:
        print(f"| {m.t:.1f} | {m.what} | {m.seconds:.2f} | {m.detail} |")
    print()


def check_rows(soak: Soak, runs: list[HookRun], end: dict[str, dict[str, int]],
               exported: dict[str, dict[str, int]], failures: list[str]) -> None:
    posts = finished_by_epoch(runs)
    problems = [r for r in runs if r.problem]
    check("hooks", not problems, f"{len(problems)} of {len(runs):,} printed a problem"
          + (f", first: {problems[0].kind}: {problems[0].problem}" if problems else ""), failures)
    prunes = [m for m in soak.marks if m.what.startswith("prune")]
    removed = sum(m.removed for m in prunes)
    check("prune removed rows", removed > 0 and all("FAILED" not in m.detail for m in prunes),
          f"{removed:,} invocations and tool uses in {len(prunes)} prunes", failures)
    backup = totals(soak.backup_rows) if soak.backup_rows else {}
    check("writers vs rows before the backup", backup == plus(soak.seeded, posts[0]),
          f"finished rows + pruned in the backup {backup} = after seeding"
          f" {totals(soak.seeded)} + Post events {posts[0]}", failures)
    want = plus(soak.backup_rows, posts[2]) if soak.backup_rows else {}
    check("writers vs rows after the restore", totals(end) == want,
          f"at the end {totals(end)} = in the backup + Post events after the restore"
          f" {posts[2]}", failures)
    if len(soak.exported_around_restore) == 2:
        before, after = soak.exported_around_restore
        rewound = {t: before[t] - after[t] for t in before}
        check("the restore rewinds the exported counters by what it lost", rewound == posts[1],
              f"exported before {before}, after {after}: down by {rewound} = Post events"
              f" between backup and restore {posts[1]}", failures)
    check("exported vs SQL", exported == end,
          f"exported per status {exported} {'=' if exported == end else '!='} SQL + pruned"
          f" {end}", failures)


def check_counters(soak: Soak, failures: list[str]) -> None:
    drops = decreases(soak.scraper.scrapes, soak.scraper.types)
    for name in sorted(drops):
        amount, series = drops[name]
        text = f"largest decrease {amount:g}" + (f" ({series})" if amount else "")
        if name.startswith("restore") or name == "restart, process counters":
            print(f"info {name}: {text}")
        else:
            check(f"counters never go down ({name})", amount == 0, text, failures)


def print_serve_log(exporter: Exporter, rebuilds: float) -> None:
    print(f"info exporter: {exporter.starts} starts, exit codes {exporter.exit_codes},"
          f" state rebuilds since its last start {rebuilds:g}")
    for line in exporter.log.read_text(errors="replace").splitlines():
        if "no authentication configured" in line:
            continue
        if "built state" in line or "WARNING" in line or "ERROR" in line:
            print(f"info serve log: {line[:200]}")


def run(args: argparse.Namespace, work: Path) -> int:
    soak = Soak(args, work)
    print(f"seeding {args.prefill:,} invocations over 30 days ...", file=sys.stderr, flush=True)
    seed(soak.db, args.prefill)
    soak.seeded = finished_rows(soak.db)
    print(f"soak: {soak.duration:.0f} s, {args.writers} writers, prune every"
          f" {soak.prune_every:.0f} s (--older-than {args.older_than}, --max-size"
          f" {args.max_size or 'the data in use after the first'}), scrape every"
          f" {args.scrape_every:g} s; load average {os.getloadavg()[0]:.2f} on"
          f" {os.cpu_count()} CPUs", flush=True)
    soak.operate()
    final = wait_for_refreshes(soak.scraper, time.time())
    soak.exporter.stop()
    end = finished_rows(soak.db)
    exported = exported_finished(final.values)

    runs = sorted(soak.writers.runs, key=lambda r: r.t)
    scrapes = [s for s in soak.scraper.scrapes if s.t <= soak.duration]
    print_tables(soak, runs, scrapes)
    failures: list[str] = []
    check_rows(soak, runs, end, exported, failures)
    check_counters(soak, failures)
    print_serve_log(soak.exporter, final.values.get("agentmon_state_rebuilds_total{}", math.nan))
    if args.json:
        result = {"duration_s": soak.duration, "writers": args.writers, "events": len(runs),
                  "marks": [m.__dict__ for m in soak.marks],
                  "posts_by_epoch": finished_by_epoch(runs), "seeded": soak.seeded,
                  "backup": soak.backup_rows, "end": end, "exported": exported,
                  "decreases": decreases(soak.scraper.scrapes, soak.scraper.types),
                  "failures": failures,
                  "scrapes": [{"t": s.t, "ok": s.ok, "ms": s.ms, "rss_mb": s.rss_mb,
                               "file_bytes": s.file_bytes} for s in scrapes]}
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2, default=str) + "\n")
    if args.svg:
        args.svg.write_text(svg_plot(scrapes, soak.marks, soak.duration))
    print(f"\n{'all invariants hold' if not failures else 'FAILED: ' + ', '.join(failures)}")
    return 1 if failures else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=30, help="length of the run (30)")
    parser.add_argument("--seconds", type=float, default=None, help="length in seconds instead")
    parser.add_argument("--writers", type=int, default=8, help="concurrent hook writers (8)")
    parser.add_argument("--pause", type=float, default=0.0,
                        help="seconds each writer waits between events (0: as fast as it can)")
    parser.add_argument("--prefill", type=int, default=20_000,
                        help="invocations seeded first, over 30 days (20000, 3 tool uses each)")
    parser.add_argument("--prune-every", type=float, default=None,
                        help="seconds between prunes (default: a sixth of the run, 10..180)")
    parser.add_argument("--older-than", default="7d", help="prune's retention (7d)")
    parser.add_argument("--max-size", type=int, default=None,
                        help="prune's --max-size in bytes (default: the data in use after the"
                        " first prune)")
    parser.add_argument("--scrape-every", type=float, default=5.0, help="seconds (5)")
    parser.add_argument("--refresh-interval", type=float, default=5.0,
                        help="the exporter's --refresh.interval (5)")
    parser.add_argument("--slices", type=int, default=10, help="rows of the table (10)")
    parser.add_argument("--svg", type=Path, default=REPO / "docs" / "bench-soak.svg",
                        help="plot of file size and RSS (default docs/bench-soak.svg)")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    args = parser.parse_args()
    # As an installed wheel would: hook processes must not compile agentmon's sources each run.
    compileall.compile_dir(os.path.dirname(agentmon.__file__), quiet=1)
    work = Path(tempfile.mkdtemp(prefix="agentmon-soak-"))
    try:
        return run(args, work)
    finally:
        if args.keep:
            print(f"work folder kept: {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
