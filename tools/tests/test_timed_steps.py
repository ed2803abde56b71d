"""tools/timed_steps.py: lanes side by side, a log per step, failures and the table last."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "timed_steps.py"


def steps(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(SCRIPT), "--log-dir", str(tmp_path / "logs"),
                           *args], capture_output=True, text=True, timeout=120, check=False)


def table(out: str) -> dict[str, str]:
    rows = out[out.rindex("\nstep "):].splitlines()[2:]
    return {row.split()[0]: row.split(None, 2)[2] for row in rows}


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
    assert result.stdout.rstrip().splitlines()[-1].startswith("total ")
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
