"""The exposition of a fixed database, byte for byte, and `promtool check metrics` on it.

Regenerate the golden file after an intended change with AGENTMON_UPDATE_GOLDEN=1.
"""

from __future__ import annotations

import math
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from collector_db import (
    add_invocation,
    add_session,
    add_tool_use,
    add_usage,
    exposition,
    make_db,
    samples,
    writer,
)

from agentmon.collector.collector import ExporterCollector

GOLDEN = Path(__file__).parent / "golden" / "exposition.prom"
VOLATILE = re.compile(
    r"^(agentmon_last_refresh_(?:duration|timestamp)_seconds"
    r"|agentmon_db_file_size_bytes|agentmon_db_filesystem_(?:avail|size)_bytes) \S+$",
    re.MULTILINE)
BUILD = re.compile(r'^agentmon_build_info\{python_version="[^"]*",version="[^"]*"\}',
                   re.MULTILINE)


def fixed_database(path: Path) -> Path:
    """Deterministic rows covering every metric, the label rules and the duration rule."""
    make_db(path)
    conn = writer(path)
    for i in range(12):
        add_invocation(conn, agent=("planner", "coder", "reviewer")[i % 3],
                       phase=("plan", "build", None)[i % 3],
                       status="error" if i % 5 == 0 else "completed",
                       duration=(0.5, 12.0, 95.0, 4000.0)[i % 4], session=f"s{i % 2}")
    add_invocation(conn, agent="coder", phase="build", duration=None,
                   start="2025-01-01T10:00:00", end="2025-01-01T10:20:00")
    add_invocation(conn, agent="coder", phase="build", duration=None, start="garbage", end=None)
    add_invocation(conn, agent="planner", phase="plan", status="running", session="s1")
    add_invocation(conn, agent="bad agent/../x", phase="plan", duration=1.0)
    tools = ("Bash", "Read", "Edit", "mcp__github__create_issue")
    for i in range(20):
        add_tool_use(conn, agent=("planner", "coder")[i % 2], tool=tools[i % 4],
                     status="error" if i % 7 == 0 else "completed",
                     duration=(0.003, 0.04, 0.3, 2.0, 45.0)[i % 5])
    add_tool_use(conn, agent="coder", tool="Bash", status="running", session="s0")
    add_tool_use(conn, agent="coder", tool=None, duration=None,
                 start="2025-01-01T10:00:00.000+00:00", end="2025-01-01T10:00:00.250Z")
    add_usage(conn, counts=(1200, 300, 50000, 2000, 0, 0), key="m1")
    add_usage(conn, model="claude-opus-4-1", counts=(10, 20, 30, 40, 0, 0), key="m2")
    add_usage(conn, agent="coder", counts=(5, 6, 7, 8, 120, 30), key="a1")
    add_usage(conn, kind="api_error", agent=None, model=None, label="rate_limit")
    add_usage(conn, kind="permission_denied", agent=None, model=None, label="Bash")
    add_usage(conn, kind="something_newer", label="x")  # a kind this agentmon does not know
    add_session(conn, "s0")
    add_session(conn, "s1")
    add_session(conn, "s2", "completed")
    conn.close()
    return path


def normalised(text: str) -> str:
    text = VOLATILE.sub(r"\1 <volatile>", text)
    return BUILD.sub('agentmon_build_info{python_version="<py>",version="<version>"}', text)


@pytest.fixture
def scraped(tmp_path: Path) -> str:
    collector = ExporterCollector(fixed_database(tmp_path / "agent_workflow.db"), label_cap=10)
    collector.refresh()
    return exposition(collector)


def test_exposition_matches_golden_file(scraped: str) -> None:
    text = normalised(scraped)
    if os.environ.get("AGENTMON_UPDATE_GOLDEN"):
        GOLDEN.write_text(text)
    assert text == GOLDEN.read_text()


def test_incremental_and_cold_start_expose_the_same(tmp_path: Path) -> None:
    path = make_db(tmp_path / "incremental.db")
    collector = ExporterCollector(path, label_cap=10)
    collector.refresh()
    source = fixed_database(tmp_path / "source.db")
    conn = writer(path)
    conn.execute("ATTACH DATABASE ? AS src", (str(source),))
    for table in ("agent_invocations", "agent_tool_uses", "sessions", "agent_usage"):
        conn.execute(f"INSERT INTO {table} SELECT * FROM src.{table}")  # noqa: S608
    conn.close()
    collector.refresh()
    cold = ExporterCollector(source, label_cap=10)
    cold.refresh()
    got, want = samples(collector), samples(cold)
    skip = ("agentmon_rows_read", "agentmon_state_rebuilds", "agentmon_last_refresh",
            "agentmon_db_file")
    assert got.keys() == want.keys()
    for key, v in want.items():
        if not key[0].startswith(skip):  # sums may differ in the last bits: addition order
            assert math.isclose(got[key], v, rel_tol=1e-12), key


def test_promtool_check_metrics_is_clean(scraped: str) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        if os.environ.get("CI"):
            pytest.fail("promtool not found (Debian package prometheus); CI must have it")
        pytest.skip("promtool not installed")
    result = subprocess.run([promtool, "check", "metrics"], input=scraped, text=True,
                            capture_output=True, check=False, timeout=60)
    assert (result.returncode, result.stdout + result.stderr) == (0, "")
