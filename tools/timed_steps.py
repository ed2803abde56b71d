#!/usr/bin/env python3
"""Run make test's steps, some side by side, and end with a table of each step's wall time.

    timed_steps.py [--jobs N] [--log-dir DIR] STEP... [--then STEP...] [--lane STEP...]...

A STEP is NAME=COMMAND (run by bash). Steps before the first --then/--lane run one after the
other and stop the run when one fails (check-tools, the prerequisites). After that, each --lane
starts a lane: its steps run one after the other (all of them, whatever the earlier ones gave),
and up to --jobs lanes run at once, in the order given (put the longest first). Every step's
output goes to DIR/NAME.log (a "/" in NAME becomes "-"); a lane's output is also printed,
prefixed with the step's name, as lines come.
At the end: the failed steps' summaries (the lines of their logs that say what failed), then the
table, so that a CI log cut in the middle still shows both. Exits 1 when any step failed.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

# The lines of a log that say what failed (pytest, ansible, Molecule, make).
FAILED = re.compile(r"(FAILED|ERROR) |(^| )E   |fatal: |failed=[1-9]|Error: |\*\*\* \[")


@dataclass
class Step:
    name: str
    command: str
    result: str = "not run"
    seconds: float = 0.0
    log: Path | None = None


@dataclass
class Plan:
    first: list[Step] = field(default_factory=list)
    lanes: list[list[Step]] = field(default_factory=list)


def parse(tokens: list[str]) -> Plan:
    plan = Plan()
    current = plan.first
    for token in tokens:
        if token in ("--then", "--lane"):
            plan.lanes.append([])
            current = plan.lanes[-1]
            continue
        name, sep, command = token.partition("=")
        if not sep or not name or not command:
            raise SystemExit(f"timed_steps: error: not NAME=COMMAND: {token!r}")
        current.append(Step(name, command))
    plan.lanes = [lane for lane in plan.lanes if lane]
    return plan


_print_lock = threading.Lock()


def run(step: Step, log_dir: Path, echo_prefix: bool) -> bool:
    step.log = log_dir / (step.name.replace("/", "-") + ".log")
    started = time.monotonic()
    with step.log.open("w") as log, subprocess.Popen(  # noqa: S602 - the Makefile's commands
            step.command, shell=True, executable="/bin/bash", stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True, errors="replace", bufsize=1) as proc:
        for line in proc.stdout or ():
            log.write(line)
            with _print_lock:
                sys.stdout.write(f"[{step.name}] {line}" if echo_prefix else line)
                sys.stdout.flush()
        code = proc.wait()
    step.seconds = time.monotonic() - started
    step.result = "ok" if code == 0 else f"FAILED (exit {code})"
    return code == 0


def run_lanes(lanes: list[list[Step]], jobs: int, log_dir: Path) -> None:
    pending = list(lanes)
    lock = threading.Lock()

    def worker() -> None:
        while True:
            with lock:
                if not pending:
                    return
                lane = pending.pop(0)
            for step in lane:
                run(step, log_dir, echo_prefix=True)  # a failure does not stop the lane

    threads = [threading.Thread(target=worker) for _ in range(max(1, min(jobs, len(lanes))))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def clock(seconds: float) -> str:
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes}:{rest:02d}"


def report(steps: list[Step], total: float) -> str:
    lines = []
    for step in steps:
        if step.result.startswith("FAILED") and step.log is not None:
            failed = [line.rstrip() for line in step.log.read_text(errors="replace").splitlines()
                      if FAILED.search(line) and "RETRYING" not in line]
            lines.append(f"--- {step.name}: what failed (whole log: {step.log}) ---")
            lines.extend(failed[-25:] or ["(no failure line found: see the log's end)"])
    width = max([len(s.name) for s in steps] + [5])
    lines.append(f"{'step':<{width}}  {'wall':>6}  result")
    lines.extend(f"{s.name:<{width}}  {clock(s.seconds) if s.log else '-':>6}  {s.result}"
                 for s in steps)
    lines.append(f"{'total':<{width}}  {clock(total):>6}  "
                 + ("ok" if all(s.result == "ok" for s in steps) else "FAILED"))
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None,
                                     usage="%(prog)s [--jobs N] [--log-dir DIR] STEP... "
                                           "[--lane STEP...]...")
    parser.add_argument("--jobs", type=int, default=2, help="lanes at once (2)")
    parser.add_argument("--log-dir", type=Path, default=Path("build/steps"))
    args, tokens = parser.parse_known_args()
    plan = parse(tokens)
    args.log_dir.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    ok = True
    for step in plan.first:
        if not run(step, args.log_dir, echo_prefix=False):
            ok = False
            break
    if ok:
        run_lanes(plan.lanes, args.jobs, args.log_dir)
    steps = plan.first + [step for lane in plan.lanes for step in lane]
    print("\n" + report(steps, time.monotonic() - started), flush=True)
    return 0 if all(s.result == "ok" for s in steps) else 1


if __name__ == "__main__":
    raise SystemExit(main())
