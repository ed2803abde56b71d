"""ExporterCollector: incremental reads, label bounds, checkpoint, durations, thread safety."""

from __future__ import annotations

import json
import stat
import threading
from pathlib import Path

import pytest
from collector_db import (
    add_invocation,
    add_session,
    add_tool_use,
    by_name,
    exposition,
    make_db,
    samples,
    value,
    writer,
)
from prometheus_client import CollectorRegistry

from agentmon.collector.collector import ExporterCollector
from agentmon.collector.labels import LabelFolder
from agentmon.collector.state import Histogram, State, usable_duration


def total(collector: ExporterCollector, name: str) -> float:
    return sum(by_name(samples(collector), name).values())


def test_reads_only_new_and_changed_rows(db: Path) -> None:
    conn = writer(db)
    add_invocation(conn, duration=3.0)
    running = add_invocation(conn, status="running")
    add_tool_use(conn, status="running")
    collector = ExporterCollector(db)
    collector.refresh()
    snap = samples(collector)
    assert value(snap, "agentmon_invocations_running", agent="planner", phase="plan") == 1
    assert value(snap, "agentmon_sessions_active") == 1
    read = value(snap, "agentmon_rows_read_total", table="agent_invocations")
    conn.execute("UPDATE agent_invocations SET status = 'error', duration_seconds = 7"
                 " WHERE id = ?", (running,))
    collector.refresh()
    snap = samples(collector)
    assert value(snap, "agentmon_invocations_total", agent="planner", phase="plan",
                 status="error") == 1
    assert value(snap, "agentmon_invocations_running", agent="planner", phase="plan") == 0
    assert value(snap, "agentmon_invocation_duration_seconds_sum", agent="planner") == 10
    assert value(snap, "agentmon_rows_read_total", table="agent_invocations") == read + 1
    collector.refresh()  # nothing new: nothing read
    assert value(samples(collector), "agentmon_rows_read_total",
                 table="agent_invocations") == read + 1


def test_backlog_is_read_in_batches_without_losing_rows(db: Path) -> None:
    conn = writer(db)
    collector = ExporterCollector(db, batch_size=7)
    collector.refresh()
    for i in range(50):
        add_tool_use(conn, tool=f"t{i % 3}", duration=0.01)
    collector.refresh()
    assert total(collector, "agentmon_tool_uses_total") == 50
    assert total(collector, "agentmon_tool_use_duration_seconds_count") == 50


def test_label_cap_folds_into_other_first_come_and_survives_restart(db: Path,
                                                                      tmp_path: Path) -> None:
    conn = writer(db)
    ckpt = tmp_path / "state.json"
    collector = ExporterCollector(db, checkpoint_path=ckpt, label_cap=2)
    collector.refresh()
    for agent in ("zeta", "alpha", "beta", "gamma"):
        add_invocation(conn, agent=agent, duration=1.0)
    collector.refresh()
    collector.save_checkpoint()
    agents = {dict(k)["agent"] for k in by_name(samples(collector), "agentmon_invocations_total")}
    assert agents == {"zeta", "alpha", "other"}
    restarted = ExporterCollector(db, checkpoint_path=ckpt, label_cap=2)
    add_invocation(conn, agent="beta")
    add_invocation(conn, agent="alpha")
    restarted.refresh()
    snap = samples(restarted)
    assert value(snap, "agentmon_invocations_total", agent="other", phase="plan",
                 status="completed") == 3
    assert value(snap, "agentmon_invocations_total", agent="alpha", phase="plan",
                 status="completed") == 2
    assert value(snap, "agentmon_label_values_folded_total", label="agent") == 3
    assert value(snap, "agentmon_state_rebuilds_total") == 0


def test_bad_and_missing_label_values(db: Path) -> None:
    conn = writer(db)
    add_invocation(conn, agent=None, phase=None)
    add_invocation(conn, agent="/home/user/secret path", phase="")
    add_tool_use(conn, agent="x\0y", tool=None)
    add_tool_use(conn, agent=b"blob", tool="mcp__github__create_issue")
    collector = ExporterCollector(db)
    collector.refresh()
    snap = samples(collector)
    assert value(snap, "agentmon_invocations_total", agent="unknown", phase="none",
                 status="completed") == 1
    assert value(snap, "agentmon_invocations_total", agent="invalid", phase="none",
                 status="completed") == 1
    assert value(snap, "agentmon_tool_uses_total", agent="invalid", tool="unknown",
                 status="completed") == 1
    assert value(snap, "agentmon_tool_uses_total", agent="invalid",
                 tool="mcp__github__create_issue", status="completed") == 1
    assert value(snap, "agentmon_label_values_folded_total", label="agent") == 3


def test_no_session_id_prompt_path_or_cwd_in_exposition(db: Path, tmp_path: Path) -> None:
    conn = writer(db)
    add_session(conn, "session-d2f1c0de")
    add_invocation(conn, session="session-d2f1c0de", status="running")
    add_tool_use(conn, session="session-d2f1c0de")
    ckpt = tmp_path / "state.json"
    collector = ExporterCollector(db, checkpoint_path=ckpt)
    collector.refresh()
    text = exposition(collector)
    for secret in ("session-d2f1c0de", "secret prompt", "/home/u", str(db), str(tmp_path)):
        assert secret not in text
        assert secret not in ckpt.read_text()


@pytest.mark.parametrize(("duration", "start", "end", "expected"), [
    (2.5, None, None, 2.5),
    (None, "2025-01-01T10:00:00", "2025-01-01T10:01:30.250", 90.25),
    (None, "2025-01-01T10:00:00+02:00", "2025-01-01T09:00:00Z", 3600.0),
    (None, "2025-01-01 10:00:00", "2025-01-01T10:00:01.5+00:00", 1.5),
    ("garbage", "2025-01-01T10:00:00", "2025-01-01T10:00:02", 2.0),
    (-3.0, None, None, None),
    (None, "2025-01-01T10:00:05", "2025-01-01T10:00:00", None),  # ends before it starts
    (None, "yesterday", "now", None),
    (None, "2025-01-01", "2025-01-02", None),  # dates without a time
    (None, 20000.5, 20001.5, None),  # numbers are not times
    (None, "2025-01-01T10:00:00", None, None),
    (5e9, None, None, None),
])
@pytest.mark.parametrize("path", ["cold", "incremental"])
def test_duration_rule_is_the_same_on_both_paths(db: Path, path: str, duration: object,
                                                 start: object, end: object,
                                                 expected: float | None) -> None:
    conn = writer(db)
    collector = ExporterCollector(db)
    if path == "incremental":
        collector.refresh()
    add_invocation(conn, duration=duration, start=start, end=end)
    collector.refresh()
    snap = samples(collector)
    assert total(collector, "agentmon_invocations_total") == 1  # counted either way
    assert value(snap, "agentmon_invocation_duration_seconds_count",
                 agent="planner") == (0 if expected is None else 1)
    assert value(snap, "agentmon_invocation_duration_seconds_sum",
                 agent="planner") == (expected or 0)


def test_bucket_boundaries_are_inclusive_on_both_paths(db: Path) -> None:
    conn = writer(db)
    for d in (0, 0.005, 0.0050001, 300.0, 300.5):
        add_tool_use(conn, duration=d)
    cold = ExporterCollector(db)
    cold.refresh()
    incremental = ExporterCollector(make_db(db.with_name("other.db")))
    incremental.refresh()
    other = writer(db.with_name("other.db"))
    for d in (0, 0.005, 0.0050001, 300.0, 300.5):
        add_tool_use(other, duration=d)
    incremental.refresh()
    for c in (cold, incremental):
        snap = samples(c)
        assert value(snap, "agentmon_tool_use_duration_seconds_bucket", tool="Bash",
                     le="0.005") == 2
        assert value(snap, "agentmon_tool_use_duration_seconds_bucket", tool="Bash",
                     le="300.0") == 4
        assert value(snap, "agentmon_tool_use_duration_seconds_bucket", tool="Bash",
                     le="+Inf") == 5


def test_sessions_by_status_follow_end_and_resume(db: Path) -> None:
    conn = writer(db)
    add_session(conn, "a")
    add_session(conn, "b", "completed")
    collector = ExporterCollector(db)
    collector.refresh()
    add_session(conn, "c")
    conn.execute("UPDATE sessions SET status = 'completed' WHERE session_id = 'a'")
    conn.execute("UPDATE sessions SET status = 'active' WHERE session_id = 'b'")
    collector.refresh()
    sessions = by_name(samples(collector), "agentmon_sessions")
    assert sessions == {(("status", "active"),): 2, (("status", "completed"),): 1}


def test_checkpoint_is_atomic_private_and_resumes_without_rebuild(db: Path,
                                                                  tmp_path: Path) -> None:
    conn = writer(db)
    add_invocation(conn, duration=1.0)
    ckpt = tmp_path / "state.json"
    collector = ExporterCollector(db, checkpoint_path=ckpt, checkpoint_interval=3600)
    collector.refresh()  # a rebuild is saved at once
    assert stat.S_IMODE(ckpt.stat().st_mode) == 0o600
    first = json.loads(ckpt.read_text())
    add_invocation(conn, duration=1.0)
    collector.refresh()  # not due yet
    assert json.loads(ckpt.read_text()) == first
    collector.save_checkpoint()
    assert json.loads(ckpt.read_text())["state"]["seq"] > first["state"]["seq"]
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".state")] == []
    restarted = ExporterCollector(db, checkpoint_path=ckpt)
    assert total(restarted, "agentmon_invocations_total") == 2  # served before any refresh
    assert value(samples(restarted), "agentmon_db_up") == 0
    add_invocation(conn, duration=1.0)
    restarted.refresh()
    snap = samples(restarted)
    assert total(restarted, "agentmon_invocations_total") == 3
    assert value(snap, "agentmon_state_rebuilds_total") == 0
    assert value(snap, "agentmon_rows_read_total", table="agent_invocations") == 1


def test_checkpoint_of_another_database_is_not_used(db: Path, tmp_path: Path) -> None:
    conn = writer(db)
    add_invocation(conn)
    ckpt = tmp_path / "state.json"
    ExporterCollector(db, checkpoint_path=ckpt).refresh()
    other = make_db(tmp_path / "other.db")
    collector = ExporterCollector(other, checkpoint_path=ckpt)
    collector.refresh()
    assert total(collector, "agentmon_invocations_total") == 0
    assert value(samples(collector), "agentmon_state_rebuilds_total") == 1


def test_collect_never_touches_sqlite(db: Path) -> None:
    conn = writer(db)
    add_invocation(conn)
    collector = ExporterCollector(db)
    collector.refresh()
    assert collector.save_checkpoint() is True  # no checkpoint path: nothing to do
    collector.close()
    db.unlink()
    assert total(collector, "agentmon_invocations_total") == 1


def test_register_does_not_collect(db: Path) -> None:
    collector = ExporterCollector(db)
    calls = []
    collector.collect = lambda: calls.append(1) or iter(())  # type: ignore[method-assign]
    CollectorRegistry().register(collector)
    assert collector.describe() == []
    assert calls == []


def test_scrapes_see_one_refresh_at_a_time(db: Path) -> None:
    """Each transaction writes one invocation and one tool use: every scrape must agree."""
    conn = writer(db)
    collector = ExporterCollector(db, batch_size=5)
    collector.refresh()
    stop = threading.Event()
    seen: list[tuple[float, float]] = []

    def scrape() -> None:
        while not stop.is_set():
            snap = samples(collector)
            seen.append((sum(by_name(snap, "agentmon_invocations_total").values()),
                         sum(by_name(snap, "agentmon_tool_uses_total").values())))

    readers = [threading.Thread(target=scrape) for _ in range(2)]
    for t in readers:
        t.start()
    for _ in range(40):
        conn.execute("BEGIN IMMEDIATE")
        for _ in range(3):
            add_invocation(conn)
            add_tool_use(conn)
        conn.execute("COMMIT")
        collector.refresh()
    stop.set()
    for t in readers:
        t.join(timeout=10)
    assert seen
    assert all(a == b for a, b in seen)
    assert total(collector, "agentmon_invocations_total") == 120


def test_build_info_and_self_metrics(db: Path) -> None:
    collector = ExporterCollector(db)
    collector.refresh()
    snap = samples(collector)
    (labels,) = by_name(snap, "agentmon_build_info")
    assert dict(labels).keys() == {"version", "python_version"}
    assert value(snap, "agentmon_last_refresh_timestamp_seconds") > 0
    assert value(snap, "agentmon_last_refresh_duration_seconds") > 0


def test_constructor_rejects_nonsense(db: Path) -> None:
    with pytest.raises(ValueError, match="label_cap"):
        ExporterCollector(db, label_cap=-1)
    with pytest.raises(ValueError, match="cap"):
        LabelFolder("agent", -1)


def test_state_json_round_trip_and_validation() -> None:
    state = State(5, "db", 9)
    state.finished_invocation("a", "p", "completed", 2.0)
    state.finished_tool_use("a", "Bash", "error", None)
    state.session_changed("s", "active", True)
    again = State.from_json(json.loads(json.dumps(state.to_json())), 5)
    assert again.to_json() == state.to_json()
    broken = state.to_json()
    for key, bad in (("buckets", []), ("marks", {"sessions": 1}), ("invocations", [[1, 2]]),
                     ("invocation_hist", {"a": [[-1], 0]}), ("tool_uses", [["a", "b", "c", -1]]),
                     ("labels", {}), ("seq", "x"), ("tool_use_hist", {"t": [[0] * 16, "x"]})):
        with pytest.raises(ValueError, match=r"\w"):
            State.from_json({**broken, key: bad}, 5)
    with pytest.raises(ValueError, match="not an object"):
        State.from_json([], 5)
    with pytest.raises(ValueError, match="kept"):
        LabelFolder.from_json("agent", 5, "unknown", {"kept": [1], "folded": 0})
    with pytest.raises(ValueError, match="folded"):
        LabelFolder.from_json("agent", 5, "unknown", {"kept": [], "folded": -1})
    with pytest.raises(ValueError, match="object"):
        LabelFolder.from_json("agent", 5, "unknown", [])
    with pytest.raises(ValueError, match="wrong number"):
        Histogram((1.0,), [1])


def test_usable_duration() -> None:
    assert usable_duration(True, 3) == 3.0  # a bool is not a duration
    assert usable_duration(None, None) is None
    assert usable_duration(0, 5) == 0.0
