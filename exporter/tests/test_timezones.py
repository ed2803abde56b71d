"""One rule for naive timestamps: the host's local time (``TZ`` honoured), in the hook and in
the collector's SQL alike, tested in zones with daylight-saving time.

The original hooks wrote ``datetime.now().isoformat()``: local wall-clock time without an
offset. Across the last Sunday of October in Berlin, 01:30 (CEST, +02:00) to 03:30 (CET,
+01:00) is three hours, not two.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from collector_db import add_invocation, add_tool_use, make_db, samples, value, writer

from agentmon.collector.collector import ExporterCollector
from agentmon.hook import values as hook_values

ZONEINFO = Path("/usr/share/zoneinfo")  # tzdata, Priority: required on Debian; .ci/run checks


@pytest.fixture
def zone(request: pytest.FixtureRequest) -> Iterator[str]:
    name = getattr(request, "param", "Europe/Berlin")
    assert (ZONEINFO / name).is_file(), f"tzdata lacks {name}"
    before = os.environ.get("TZ")
    os.environ["TZ"] = name
    time.tzset()  # SQLite's localtime_r() and Python's time.localtime() both follow it
    try:
        yield name
    finally:
        if before is None:
            del os.environ["TZ"]
        else:
            os.environ["TZ"] = before
        time.tzset()


@pytest.mark.parametrize("refresh", ["cold", "incremental"])
def test_a_naive_duration_across_the_autumn_change_is_three_hours(
        tmp_path: Path, zone: str, refresh: str) -> None:
    """Reproduction: the collector compared naive times as written (7200 s, an hour short)."""
    db = make_db(tmp_path / "agent_workflow.db")
    collector = ExporterCollector(db)
    if refresh == "incremental":
        collector.refresh()
    conn = writer(db)
    add_invocation(conn, start="2025-10-26T01:30:00", end="2025-10-26T03:30:00")
    # started by the original hook (naive), finished by agentmon's (UTC offset)
    add_tool_use(conn, start="2025-10-26T01:30:00", end="2025-10-26T02:30:00+00:00")
    # spring: 01:30 CET to 03:30 CEST is one hour
    add_invocation(conn, agent="coder", start="2025-03-30T01:30:00", end="2025-03-30T03:30:00")
    conn.close()
    collector.refresh()
    snap = samples(collector)
    assert value(snap, "agentmon_invocation_duration_seconds_sum", agent="planner") == 10800
    assert value(snap, "agentmon_tool_use_duration_seconds_sum", tool="Bash") == 10800
    assert value(snap, "agentmon_invocation_duration_seconds_sum", agent="coder") == 3600


def _minutes_around_changes() -> Iterator[str]:
    for day in (datetime(2025, 3, 30), datetime(2025, 10, 26), datetime(2025, 3, 9),
                datetime(2025, 11, 2)):
        for minute in range(0, 24 * 60, 3):
            yield (day + timedelta(minutes=minute, seconds=5, milliseconds=250)).isoformat()


@pytest.mark.parametrize("zone", ["Europe/Berlin", "America/New_York", "Australia/Lord_Howe"],
                         indirect=True)
def test_hook_and_sql_read_every_naive_time_alike(zone: str) -> None:
    """Also the wall times a change skips or repeats (where Python's fold=0 and SQLite differ)."""
    conn = sqlite3.connect(":memory:")
    for text in _minutes_around_changes():
        sql = conn.execute("SELECT strftime('%Y-%m-%dT%H:%M:%f', ?, 'utc')", (text,)).fetchone()
        ours = hook_values.parse_time(text)
        assert ours is not None
        assert ours.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] == sql[0], text
    conn.close()


def test_the_repeated_hour_reads_alike_in_hook_and_collector(tmp_path: Path, zone: str) -> None:
    """Reproduction for the hook side: 02:30 happens twice in Berlin on 2025-10-26; Python's
    default (fold=0) took the first, SQLite's 'utc' modifier the second: an hour apart."""
    finish = datetime(2025, 10, 26, 2, 0, tzinfo=UTC)
    assert hook_values.seconds_between("2025-10-26T02:30:00", finish) == 1800
    db = make_db(tmp_path / "agent_workflow.db")
    conn = writer(db)
    add_invocation(conn, start="2025-10-26T02:30:00", end=finish.isoformat())
    conn.close()
    collector = ExporterCollector(db)
    collector.refresh()
    assert value(samples(collector), "agentmon_invocation_duration_seconds_sum",
                 agent="planner") == 1800


def test_times_with_an_offset_ignore_tz(zone: str) -> None:
    """The 'utc' modifier must leave a time with an offset alone (SQLite >= 3.x does)."""
    conn = sqlite3.connect(":memory:")
    for text in ("2025-10-26T02:30:00+00:00", "2025-10-26T02:30:00Z", "2025-10-26T02:30:00+05:30"):
        assert conn.execute("SELECT julianday(?, 'utc') = julianday(?)", (text, text)
                            ).fetchone()[0] == 1, text
    conn.close()
    assert hook_values.parse_time("2025-10-26T02:30:00+05:30") == datetime(
        2025, 10, 26, 2, 30, tzinfo=UTC) - timedelta(hours=5, minutes=30)
