"""tools/timed_steps.py: lanes side by side, a log per step, failures and the table last, and
the CPU each step cost (its process tree, its test host containers) beside the machine's."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

TOOLS = Path(__file__).resolve().parents[1]
SCRIPT = TOOLS / "timed_steps.py"
REPO = TOOLS.parent


def steps(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(SCRIPT), "--log-dir", str(tmp_path / "logs"),
                           *args], capture_output=True, text=True, timeout=300, check=False)


ROW = re.compile(r"(\S+) +(\S+) +(\S+) +(\S+) +(.+)")


def table(out: str) -> dict[str, str]:
    """Each step's result, from the table at the end."""
    rows = out[out.rindex("\nstep "):out.rindex("\nmachine: ")].splitlines()[2:]
    return {match[1]: match[5] for row in rows if (match := ROW.fullmatch(row))}


def figures(tmp_path: Path) -> dict:
    return json.loads((tmp_path / "logs" / "steps.json").read_text())


def by_name(tmp_path: Path) -> dict[str, dict]:
    return {step["name"]: step for step in figures(tmp_path)["steps"]}


def burn(seconds: float) -> str:
    """Python that uses this much CPU time (not wall time) and ends."""
    return (f"import time\nend = time.process_time() + {seconds}\n"
            "while time.process_time() < end:\n    pass\n")


def test_lanes_run_side_by_side_and_the_table_comes_last(tmp_path: Path) -> None:
    # Each lane waits for a file the other one writes: both can only end if they run at once.
    a, b = tmp_path / "a", tmp_path / "b"
    wait = "for i in $(seq 600); do [ -e {0} ] && exit 0; sleep 0.1; done; exit 1"
    result = steps(tmp_path, "first=echo one", "--jobs", "2",
                   "--lane", f"left=touch {a}; {wait.format(b)}",
                   "--lane", f"right=touch {b}; {wait.format(a)}", "after=echo two")
    assert result.returncode == 0, result.stdout + result.stderr
    assert table(result.stdout) == {"first": "ok", "left": "ok", "right": "ok", "after": "ok",
                                    "total": "ok"}
    assert result.stdout.rstrip().splitlines()[-1].startswith("ctl CPU: ")
    assert "[right] " not in result.stdout  # "right" printed nothing
    assert (tmp_path / "logs" / "first.log").read_text() == "one\n"
    assert (tmp_path / "logs" / "after.log").read_text() == "two\n"


def test_a_failed_step_is_summarised_before_the_table_and_fails_the_run(tmp_path: Path) -> None:
    result = steps(tmp_path, "setup=true", "--lane",
                   "molecule/x=echo noise; echo 'fatal: [host]: FAILED! => boom'; exit 3",
                   "later=echo later", "--lane", "other=true")
    assert result.returncode == 1
    assert table(result.stdout) == {"setup": "ok", "molecule/x": "FAILED (exit 3)",
                                    "later": "ok", "other": "ok", "total": "FAILED"}
    summary = result.stdout[result.stdout.index("--- molecule/x: what failed"):]
    assert "fatal: [host]: FAILED! => boom" in summary
    assert "noise" not in summary
    assert (tmp_path / "logs" / "molecule-x.log").exists()
    assert by_name(tmp_path)["molecule/x"]["result"] == "FAILED (exit 3)"


def test_a_failed_first_step_stops_the_run(tmp_path: Path) -> None:
    result = steps(tmp_path, "check-tools=echo 'Error: podman is missing'; exit 1", "--lane",
                   "lint=echo linted")
    assert result.returncode == 1
    assert table(result.stdout) == {"check-tools": "FAILED (exit 1)", "lint": "not run",
                                    "total": "FAILED"}
    assert "linted" not in result.stdout


def test_a_step_must_be_name_equals_command(tmp_path: Path) -> None:
    result = steps(tmp_path, "no-command")
    assert result.returncode != 0
    assert "not NAME=COMMAND: 'no-command'" in result.stderr


def test_containers_must_name_a_step(tmp_path: Path) -> None:
    result = steps(tmp_path, "--containers", "molecule/y=agentmon-*", "--lane", "molecule/x=true")
    assert result.returncode != 0
    assert "--containers 'molecule/y=agentmon-*': not NAME=GLOB of a step" in result.stderr


def test_a_steps_cpu_counts_its_whole_process_tree_and_the_machine_is_accounted(
        tmp_path: Path) -> None:
    # A grandchild burns 0.5 s of CPU; a daemonized process (setsid, parent gone, reparented
    # away from the step's shell) burns 0.5 s more and says when it is done.
    done = tmp_path / "daemon-done"
    daemon = ("import os, sys\n"
              "if os.fork():\n    sys.exit(0)\n"
              "os.setsid()\n"
              "if os.fork():\n    os._exit(0)\n"
              "null = os.open(os.devnull, os.O_RDWR)\n"
              "for fd in (0, 1, 2):\n    os.dup2(null, fd)\n"
              + burn(0.5) + f"open({str(done)!r}, 'w').close()\n")
    (tmp_path / "daemon.py").write_text(daemon)
    (tmp_path / "burn.py").write_text(burn(0.5))
    wait = f"for i in $(seq 3000); do [ -e {done} ] && exit 0; sleep 0.1; done; exit 1"
    result = steps(tmp_path, "--lane",
                   f"work={sys.executable} {tmp_path / 'daemon.py'}; "
                   f"{sys.executable} {tmp_path / 'burn.py'}; {wait}",
                   "idle=true")
    assert result.returncode == 0, result.stdout + result.stderr
    summary = figures(tmp_path)
    work, idle = (by_name(tmp_path)[name] for name in ("work", "idle"))
    assert work["rusage_cpu_seconds"] >= 0.5
    if summary["controller_cpu_method"].startswith("each step's own cpuacct cgroup"):
        assert work["controller_cpu_seconds"] == work["cgroup_cpu_seconds"] >= 1.0
    else:  # no cgroup of its own: the rusage misses the daemon, and the table says so
        assert work["controller_cpu_seconds"] == work["rusage_cpu_seconds"]
    assert idle["controller_cpu_seconds"] < work["controller_cpu_seconds"]
    assert work["host_cpu_seconds"] is None  # no --containers: not measured
    machine = summary["machine"]
    assert machine["cpus"] >= 1
    tick = 0.02  # /proc/stat counts in ticks of 0.01 s
    assert work["controller_cpu_seconds"] - tick <= machine["busy_seconds"]
    assert machine["busy_seconds"] <= machine["offered_seconds"] + tick
    # The table's last lines: the machine's time against what its CPUs offered, and the method.
    lines = result.stdout.rstrip().splitlines()
    assert re.fullmatch(r"total +\d+:\d\d +\d+:\d\d +0:00 +ok", lines[-3])
    assert re.match(rf"machine: {machine['cpus']} CPUs busy \d+:\d\d of \d+:\d\d offered "
                    r"\(\d+%\); steps \d+:\d\d, the rest \d+:\d\d", lines[-2])
    assert lines[-1] == f"ctl CPU: {summary['controller_cpu_method']}"
    # Nothing of this run's cgroups is left behind (other runs, such as the make test this
    # test may run under, have their own).
    if summary["step_cgroups"] is not None:
        assert not Path(summary["step_cgroups"]).exists()


def load_module():
    if "timed_steps" not in sys.modules:
        spec = importlib.util.spec_from_file_location("timed_steps", SCRIPT)
        assert spec is not None
        assert spec.loader is not None
        sys.modules["timed_steps"] = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(sys.modules["timed_steps"])
    return sys.modules["timed_steps"]


def test_container_cpu_is_read_from_v1_and_v2_cgroups(tmp_path: Path) -> None:
    module = load_module()
    one, two = "a" * 64, "b" * 64
    v1 = tmp_path / "cpuacct" / "libpod_parent" / f"libpod-{one}"
    v2 = tmp_path / "machine.slice" / f"libpod-{two}.scope"
    for folder in (v1, v2, tmp_path / "cpuacct" / "libpod_parent" / "conmon"):
        folder.mkdir(parents=True)
    (v1 / "cpuacct.usage").write_text("2500000000\n")
    (v2 / "cpu.stat").write_text("usage_usec 1750000\nuser_usec 1000000\nsystem_usec 750000\n")
    (tmp_path / "cpuacct" / "libpod_parent" / "conmon" / "cpuacct.usage").write_text("9\n")
    sampler = module.HostSampler(1.0, enabled=False, root=tmp_path)
    assert sampler.usages() == {one: 2.5, two: 1.75}
    assert module.cgroup_cpu(tmp_path, "cpu.stat") is None


def podman_image() -> str | None:
    if shutil.which("podman") is None or os.geteuid() != 0:
        return None
    ref = subprocess.run([str(REPO / "molecule/image/build.sh"), "--ref"], capture_output=True,
                         text=True, check=True).stdout.strip()
    exists = subprocess.run([shutil.which("podman") or "podman", "image", "exists", ref],
                            check=False,
                            env=podman_env()).returncode == 0
    return ref if exists else None


def podman_env() -> dict[str, str]:
    return {**os.environ,
            "CONTAINERS_CONF": os.environ.get("CONTAINERS_CONF",
                                              str(REPO / ".ci/containers.conf"))}


def test_a_steps_test_host_containers_count_and_no_others(tmp_path: Path) -> None:
    image = podman_image()
    if image is None:
        pytest.skip("needs root, podman and the test host image (make image)")
    if not any(Path("/sys/fs/cgroup").glob(pattern.split("/")[0])
               for pattern, _ in load_module().CONTAINER_CGROUPS):
        pytest.skip("podman's container cgroups are not where timed_steps looks")
    prefix = f"agentmon-tsteps-{os.getpid()}"
    (tmp_path / "one.py").write_text(burn(1.0))
    (tmp_path / "two.py").write_text(burn(2.0))

    def run(name: str, script: str) -> str:
        return (f"podman run --rm --network none --name {name} -v {tmp_path}:/scripts:ro "
                f"{image} python3 /scripts/{script}")

    # Two lanes at once: one runs a test host, the other a decoy whose name it does not match.
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--log-dir", str(tmp_path / "logs"),
         "--sample-seconds", "0.2", "--jobs", "2",
         "--containers", f"hosts={prefix}-host-*", "--containers", f"decoy={prefix}-other-*",
         "--lane", f"hosts={run(prefix + '-host-1', 'one.py')}",
         "--lane", f"decoy={run(prefix + '-decoy', 'two.py')}"],
        capture_output=True, text=True, timeout=600, check=False, env=podman_env())
    assert result.returncode == 0, result.stdout + result.stderr
    hosts, decoy = (by_name(tmp_path)[name] for name in ("hosts", "decoy"))
    assert list(hosts["hosts"]) == [f"{prefix}-host-1"]
    # 1 s of CPU, less what it used after the last sample (0.2 s at most on one CPU), never
    # the decoy's 2 s.
    assert 0.75 <= hosts["host_cpu_seconds"] < 1.9
    rows = {line.split()[0]: line.split() for line in result.stdout.splitlines()
            if line.startswith(("hosts ", "decoy "))}
    assert rows["hosts"][3:] == ["0:01", "ok"]
    # The decoy's step saw containers but none of its name: "none", not "0:00".
    assert decoy["hosts"] == {}
    assert rows["decoy"][3:] == ["none", "ok"]
