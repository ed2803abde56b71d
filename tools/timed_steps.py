#!/usr/bin/env python3
"""Run make test's steps, some side by side, and end with a table of each step's time and CPU.

    timed_steps.py [--jobs N] [--log-dir DIR] [--containers NAME=GLOB]... STEP...
                   [--lane STEP...]...

A STEP is NAME=COMMAND (run by bash). Steps before the first --then/--lane run one after the
other and stop the run when one fails (check-tools, the prerequisites). After that, each --lane
starts a lane: its steps run one after the other (all of them, whatever the earlier ones gave),
and up to --jobs lanes run at once, in the order given (put the longest first). Every step's
output goes to DIR/NAME.log (a "/" in NAME becomes "-"); a lane's output is also printed,
prefixed with the step's name, as lines come.
At the end: the failed steps' summaries (the lines of their logs that say what failed), then the
table, so that a CI log cut in the middle still shows both. Exits 1 when any step failed.

The table gives each step's wall time, result and the CPU time it cost:
- "ctl CPU": the step's whole process tree on this machine. Each step runs in a cgroup of its
  own in a cgroup v1 `cpuacct` hierarchy when one is mounted without the `cpu` controller and
  writable (so daemonized children such as SSH's ControlMaster count, and scheduling is not
  changed); otherwise the rusage of the tree the step waited for (os.wait4), which misses
  daemonized processes. The line under the table says which.
- "host CPU": the test host containers whose names match the step's --containers GLOBs, from
  their cgroups (v1 cpuacct.usage or v2 cpu.stat), sampled every --sample-seconds while they
  live (Molecule destroys them at the end: the CPU of their last moments is not counted);
  "-" where nothing is measured (no GLOB, no podman, or cgroups this tool does not know),
  "none" when no container of that name ran during the step.
- the total line, then the machine's CPU busy time over the run (/proc/stat) against what its
  CPUs offered, and what of it no step accounts for (other processes, podman's own, the kernel).
DIR/steps.json holds the same figures in seconds.
"""

from __future__ import annotations

import argparse
import contextlib
import fnmatch
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

# The lines of a log that say what failed (pytest, ansible, Molecule, make).
FAILED = re.compile(r"(FAILED|ERROR) |(^| )E   |fatal: |failed=[1-9]|Error: |\*\*\* \[")

CGROUP_ROOT = Path("/sys/fs/cgroup")
# Where podman puts a container's cgroup (cgroupfs or systemd manager; v1 cpuacct or v2), and
# the file that holds its CPU time: glob under CGROUP_ROOT, the file's name.
CONTAINER_CGROUPS = (
    ("cpuacct/libpod_parent/libpod-*", "cpuacct.usage"),
    ("cpuacct/machine.slice/libpod-*.scope", "cpuacct.usage"),
    ("libpod_parent/libpod-*", "cpu.stat"),
    ("machine.slice/libpod-*.scope", "cpu.stat"),
)
CONTAINER_ID = re.compile(r"libpod-([0-9a-f]{64})(?:\.scope)?$")


def cgroup_cpu(folder: Path, name: str) -> float | None:
    """Seconds of CPU a cgroup used, from v1 cpuacct.usage (ns) or v2 cpu.stat (usage_usec)."""
    try:
        text = (folder / name).read_text()
    except OSError:
        return None
    if name == "cpuacct.usage":
        return int(text) / 1e9
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        if key == "usage_usec":
            return int(value) / 1e6
    return None


@dataclass
class Step:
    name: str
    command: str
    result: str = "not run"
    seconds: float = 0.0
    log: Path | None = None
    rusage_cpu: float | None = None  # the waited-for tree (os.wait4)
    cgroup_cpu: float | None = None  # the step's cgroup, daemonized processes included
    containers: list[str] = field(default_factory=list)  # GLOBs of its test hosts
    # container id -> [name, CPU seconds when the step began or 0.0, latest CPU seconds]
    hosts: dict[str, list] = field(default_factory=dict)
    hosts_measured: bool = False

    @property
    def controller_cpu(self) -> float | None:
        return self.cgroup_cpu if self.cgroup_cpu is not None else self.rusage_cpu

    @property
    def host_cpu(self) -> float | None:
        if not self.containers or not self.hosts_measured:
            return None
        return sum(latest - first for _, first, latest in self.hosts.values())


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


class StepCgroups:
    """A cpuacct cgroup per step, under this process's own, when cpuacct is mounted alone."""

    def __init__(self, root: Path = CGROUP_ROOT) -> None:
        self.base: Path | None = None
        self.home: Path | None = None
        try:
            mounts = Path("/proc/mounts").read_text().splitlines()
            own = Path("/proc/self/cgroup").read_text().splitlines()
        except OSError:
            return
        mount = next((Path(fields[1]) for fields in map(str.split, mounts)
                      if len(fields) > 3 and fields[2] == "cgroup"
                      and "cpuacct" in fields[3].split(",")
                      and "cpu" not in fields[3].split(",")
                      and Path(fields[1]).is_relative_to(root)), None)
        path = next((line.split(":", 2)[2] for line in own
                     if "cpuacct" in line.split(":", 2)[1].split(",")), None)
        if mount is None or path is None:
            return
        home = mount / path.lstrip("/")
        base = home / f"agentmon-steps.{os.getpid()}"
        try:
            base.mkdir()
        except OSError:
            return
        self.home, self.base = home, base

    def create(self, index: int) -> Path | None:
        if self.base is None:
            return None
        group = self.base / str(index)
        try:
            group.mkdir()
        except OSError:
            return None
        return group

    def release(self, group: Path) -> None:
        """Move what still runs in the group (a lingering ControlMaster) home, drop the group."""
        if self.home is None:
            return
        try:
            for pid in (group / "cgroup.procs").read_text().split():
                (self.home / "cgroup.procs").write_text(pid)
            group.rmdir()
        except OSError:
            pass  # a process that exits meanwhile; the folder stays, empty, until close

    def close(self) -> None:
        if self.base is None:
            return
        for group in self.base.iterdir():
            if group.is_dir():
                self.release(group)
        with contextlib.suppress(OSError):
            self.base.rmdir()


class HostSampler:
    """Samples the CPU of containers whose names match some step's GLOBs, while they live."""

    def __init__(self, interval: float, enabled: bool, root: Path = CGROUP_ROOT) -> None:
        self.interval = interval
        self.root = root
        self.names: dict[str, str] = {}  # container id -> podman name
        self.active: list[Step] = []
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.thread: threading.Thread | None = None
        self.available = enabled and self.podman_ps() is not None

    @staticmethod
    def podman_ps() -> dict[str, str] | None:
        try:
            out = subprocess.run(  # noqa: S603 - fixed arguments
                [shutil.which("podman") or "podman", "ps", "--all", "--no-trunc", "--format",
                 "{{.ID}} {{.Names}}"],
                capture_output=True, text=True, timeout=60, check=True).stdout
        except (OSError, subprocess.SubprocessError):
            return None
        return dict(line.split(" ", 1) for line in out.splitlines() if " " in line)

    def usages(self) -> dict[str, float]:
        found: dict[str, float] = {}
        for pattern, name in CONTAINER_CGROUPS:
            for folder in self.root.glob(pattern):
                match = CONTAINER_ID.search(folder.name)
                cpu = cgroup_cpu(folder, name) if match else None
                if match and cpu is not None:
                    found[match.group(1)] = cpu
        return found

    def sample(self, begin: Step | None = None) -> None:
        """One sample: every active step's containers get their latest CPU time."""
        usages = self.usages() if self.available else {}
        if any(cid not in self.names for cid in usages):
            self.names.update(self.podman_ps() or {})  # a failed call: resolved next time
        with self.lock:
            if begin is not None:
                self.active.append(begin)
            for step in self.active:
                # Some container's cgroup was read: this layout is known, so no match is "none".
                step.hosts_measured = step.hosts_measured or bool(usages)
            for cid, cpu in usages.items():
                name = self.names.get(cid)
                for step in self.active if name is not None else ():
                    if not any(fnmatch.fnmatchcase(name, glob) for glob in step.containers):
                        continue
                    if cid in step.hosts:  # samples may come in out of order: CPU only grows
                        step.hosts[cid][2] = max(step.hosts[cid][2], cpu)
                    else:  # running before the step began: only what it used since counts
                        step.hosts[cid] = [name, cpu if step is begin else 0.0, cpu]

    def end(self, step: Step) -> None:
        self.sample()
        with self.lock:
            self.active.remove(step)

    def start(self) -> None:
        def loop() -> None:
            while not self.stop.wait(self.interval):
                self.sample()

        if self.available:
            self.thread = threading.Thread(target=loop, daemon=True)
            self.thread.start()

    def close(self) -> None:
        self.stop.set()
        if self.thread is not None:
            self.thread.join()


_print_lock = threading.Lock()


@dataclass
class Runner:
    log_dir: Path
    cgroups: StepCgroups
    sampler: HostSampler
    count: int = 0

    def run(self, step: Step, echo_prefix: bool) -> bool:
        step.log = self.log_dir / (step.name.replace("/", "-") + ".log")
        with _print_lock:
            self.count += 1
            group = self.cgroups.create(self.count)
        argv = ["/bin/bash", "-c", step.command]
        if group is not None:  # the shell joins the cgroup, then becomes the step's command
            argv = ["/bin/bash", "-c", 'echo $$ > "$0"; exec /bin/bash -c "$1"',
                    str(group / "cgroup.procs"), step.command]
        self.sampler.sample(begin=step)
        started = time.monotonic()
        with step.log.open("w") as log, subprocess.Popen(  # noqa: S603 - the Makefile's commands
                argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                errors="replace", bufsize=1) as proc:
            for line in proc.stdout or ():
                log.write(line)
                with _print_lock:
                    sys.stdout.write(f"[{step.name}] {line}" if echo_prefix else line)
                    sys.stdout.flush()
            _, status, usage = os.wait4(proc.pid, 0)
            proc.returncode = code = os.waitstatus_to_exitcode(status)
        step.seconds = time.monotonic() - started
        step.rusage_cpu = usage.ru_utime + usage.ru_stime
        self.sampler.end(step)
        if group is not None:
            step.cgroup_cpu = cgroup_cpu(group, "cpuacct.usage")
            if step.cgroup_cpu is not None and step.cgroup_cpu < step.rusage_cpu / 2:
                step.cgroup_cpu = None  # the shell could not join it: the rusage is all we have
            self.cgroups.release(group)
        step.result = "ok" if code == 0 else f"FAILED (exit {code})"
        return code == 0

    def run_lanes(self, lanes: list[list[Step]], jobs: int) -> None:
        pending = list(lanes)
        lock = threading.Lock()

        def worker() -> None:
            while True:
                with lock:
                    if not pending:
                        return
                    lane = pending.pop(0)
                for step in lane:
                    self.run(step, echo_prefix=True)  # a failure does not stop the lane

        threads = [threading.Thread(target=worker)
                   for _ in range(max(1, min(jobs, len(lanes))))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()


def cpu_times() -> tuple[float, float, int] | None:
    """The machine's busy and total CPU seconds since boot (/proc/stat), and its CPU count."""
    try:
        lines = Path("/proc/stat").read_text().splitlines()
    except OSError:
        return None
    # user nice system idle iowait irq softirq steal (guest time is inside user already)
    ticks = [int(value) for value in lines[0].split()[1:9]]
    hertz = os.sysconf("SC_CLK_TCK")
    cpus = sum(1 for line in lines if re.match(r"cpu\d+ ", line))
    return (sum(ticks) - ticks[3] - ticks[4]) / hertz, sum(ticks) / hertz, cpus


def clock(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes}:{rest:02d}"


def host_cell(step: Step) -> str:
    if not step.containers or step.log is None or step.host_cpu is None:
        return "-"
    return clock(step.host_cpu) if step.hosts else "none"


def report(steps: list[Step], total: float, machine: dict | None = None,
           method: str = "") -> str:
    lines = []
    for step in steps:
        if step.result.startswith("FAILED") and step.log is not None:
            failed = [line.rstrip() for line in step.log.read_text(errors="replace").splitlines()
                      if FAILED.search(line) and "RETRYING" not in line]
            lines.append(f"--- {step.name}: what failed (whole log: {step.log}) ---")
            lines.extend(failed[-25:] or ["(no failure line found: see the log's end)"])
    width = max([len(s.name) for s in steps] + [5])
    lines.append(f"{'step':<{width}}  {'wall':>6}  {'ctl CPU':>7}  {'host CPU':>8}  result")
    lines.extend(f"{s.name:<{width}}  {clock(s.seconds) if s.log else '-':>6}  "
                 f"{clock(s.controller_cpu) if s.log else '-':>7}  {host_cell(s):>8}  {s.result}"
                 for s in steps)
    controller = sum(s.controller_cpu or 0.0 for s in steps)
    hosts = sum(s.host_cpu or 0.0 for s in steps)
    lines.append(f"{'total':<{width}}  {clock(total):>6}  {clock(controller):>7}  "
                 f"{clock(hosts):>8}  "
                 + ("ok" if all(s.result == "ok" for s in steps) else "FAILED"))
    if machine is not None:
        busy, offered = machine["busy_seconds"], machine["offered_seconds"]
        lines.append(f"machine: {machine['cpus']} CPUs busy {clock(busy)} of {clock(offered)} "
                     f"offered ({busy / offered:.0%}); steps {clock(controller + hosts)}, the "
                     f"rest {clock(max(0.0, busy - controller - hosts))} (other processes, "
                     "podman, kernel)")
    if method:
        lines.append(f"ctl CPU: {method}")
    return "\n".join(lines)


def host_names(step: Step) -> dict[str, float]:
    """Each container's CPU by name (with its id when a name came back, as a re-created host)."""
    names = [name for name, _, _ in step.hosts.values()]
    return {name if names.count(name) == 1 else f"{name}@{cid[:12]}": latest - first
            for cid, (name, first, latest) in step.hosts.items()}


def summary(steps: list[Step], total: float, machine: dict | None, method: str,
            cgroups: StepCgroups) -> dict:
    return {
        "wall_seconds": total, "controller_cpu_method": method, "machine": machine,
        "step_cgroups": None if cgroups.base is None else str(cgroups.base),
        "steps": [{"name": s.name, "result": s.result, "wall_seconds": s.seconds,
                   "controller_cpu_seconds": s.controller_cpu, "rusage_cpu_seconds": s.rusage_cpu,
                   "cgroup_cpu_seconds": s.cgroup_cpu, "host_cpu_seconds": s.host_cpu,
                   "hosts": host_names(s)}
                  for s in steps],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None,
                                     usage="%(prog)s [--jobs N] [--log-dir DIR] "
                                           "[--containers NAME=GLOB]... STEP... "
                                           "[--lane STEP...]...")
    parser.add_argument("--jobs", type=int, default=2, help="lanes at once (2)")
    parser.add_argument("--log-dir", type=Path, default=Path("build/steps"))
    parser.add_argument("--containers", action="append", default=[], metavar="NAME=GLOB",
                        help="test host containers (podman names) whose CPU counts for step NAME")
    parser.add_argument("--sample-seconds", type=float, default=1.0,
                        help="how often the containers' CPU is read (1)")
    args, tokens = parser.parse_known_args()
    plan = parse(tokens)
    steps = plan.first + [step for lane in plan.lanes for step in lane]
    by_name = {step.name: step for step in steps}
    for spec in args.containers:
        name, _, glob = spec.partition("=")
        if name not in by_name or not glob:
            parser.error(f"--containers {spec!r}: not NAME=GLOB of a step")
        by_name[name].containers.append(glob)
    args.log_dir.mkdir(parents=True, exist_ok=True)
    cgroups = StepCgroups()
    method = ("each step's own cpuacct cgroup (daemonized processes included)"
              if cgroups.base is not None else
              "rusage of the process tree each step waited for (daemonized processes missed)")
    sampler = HostSampler(args.sample_seconds, enabled=bool(args.containers))
    runner = Runner(args.log_dir, cgroups, sampler)
    before = cpu_times()
    started = time.monotonic()
    sampler.start()
    try:
        ok = True
        for step in plan.first:
            if not runner.run(step, echo_prefix=False):
                ok = False
                break
        if ok:
            runner.run_lanes(plan.lanes, args.jobs)
    finally:
        sampler.close()
        cgroups.close()
    total = time.monotonic() - started
    after = cpu_times()
    machine = None
    if before is not None and after is not None and after[1] > before[1]:
        machine = {"cpus": after[2], "busy_seconds": after[0] - before[0],
                   "offered_seconds": after[1] - before[1]}
    (args.log_dir / "steps.json").write_text(
        json.dumps(summary(steps, total, machine, method, cgroups), indent=1) + "\n")
    print("\n" + report(steps, total, machine, method), flush=True)
    return 0 if all(s.result == "ok" for s in steps) else 1


if __name__ == "__main__":
    raise SystemExit(main())
