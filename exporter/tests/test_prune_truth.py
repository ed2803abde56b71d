"""Truth across pruning: every exported number equals SQL plus what agentmon prune removed.

The truth machine of test_truth (events in any order, deletes, replaces, restores of backups,
exporter restarts, refreshes with writes between batches) with one more rule: a prune at a
cutoff inside the generated history, in batches of 1, 3 or 500 rows. The expected values are
the independent recount of test_truth plus the ``agentmon_pruned`` aggregates read back here
(by their documented meaning: counts per raw label values, and the bucket bound ``le``).
Counters never go down across a prune: each prune is checked against the scrape before it.
"""

from __future__ import annotations

import math
import sqlite3
from datetime import timedelta
from pathlib import Path

import hypothesis.strategies as st
from collector_db import samples
from hypothesis import event
from hypothesis.stateful import rule
from test_truth import (
    BASE,
    INV_BUCKETS,
    TOOL_BUCKETS,
    TRUTH_SETTINGS,
    TruthMachine,
    assert_matches,
    recount,
    truth_label,
)

from agentmon.prune.core import Pruner, cutoff_julian

COUNTERS = ("agentmon_invocations_total", "agentmon_tool_uses_total",
            "agentmon_invocation_duration_seconds", "agentmon_tool_use_duration_seconds")


def pruned(conn: sqlite3.Connection) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """What the prune's bookkeeping says was removed, as exposition samples."""
    out: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}

    def add(name: str, value: float, **labels: str) -> None:
        key = (name, tuple(sorted(labels.items())))
        out[key] = out.get(key, 0) + value

    for table, agent, key2, status, le, rows, total in conn.execute(
            "SELECT tbl, agent_name, key2, status, le, rows, total FROM agentmon_pruned"):
        if table == "sessions":
            add("agentmon_sessions", rows, status=status)
            continue
        if table == "agent_invocations":
            add("agentmon_invocations_total", rows, agent=truth_label(agent),
                phase=truth_label(key2, "none"), status=status)
            name, labels, buckets = ("agentmon_invocation_duration_seconds",
                                     {"agent": truth_label(agent)}, INV_BUCKETS)
        else:
            add("agentmon_tool_uses_total", rows, agent=truth_label(agent),
                tool=truth_label(key2), status=status)
            name, labels, buckets = ("agentmon_tool_use_duration_seconds",
                                     {"tool": truth_label(key2)}, TOOL_BUCKETS)
        if le is None:
            continue
        add(f"{name}_count", rows, **labels)
        add(f"{name}_sum", total, **labels)
        for bound in (*buckets, math.inf):
            tag = "+Inf" if bound == math.inf else repr(float(bound))
            add(f"{name}_bucket", rows if le <= bound else 0, **labels, le=tag)
    return out


def expected(db: Path, conn: sqlite3.Connection) -> dict:
    out = recount(db, conn)
    for key, v in pruned(conn).items():
        out[key] = out.get(key, 0) + v
    return out


class PruneTruthMachine(TruthMachine):
    @rule(minutes=st.integers(-10, 200), batch=st.sampled_from([1, 3, 500]),
          refresh_first=st.booleans())
    def prune(self, minutes: int, batch: int, refresh_first: bool) -> None:
        if refresh_first:
            self.collector.refresh()
        before = samples(self.collector)
        now = (BASE + timedelta(minutes=minutes)).astimezone().timestamp()
        result = Pruner(self.conn, cutoff_julian(0, now), batch=batch).run()
        event("pruned rows" if sum(result.removed.values()) else "pruned nothing")
        self.collector.refresh()
        assert self.collector.db_up
        after = samples(self.collector)
        if refresh_first and before[("agentmon_state_rebuilds_total", ())] \
                == after[("agentmon_state_rebuilds_total", ())]:
            # no rebuild: the prune itself must not move a counter down
            for key, v in before.items():
                if key[0].startswith(COUNTERS):
                    assert after.get(key, 0) >= v, key
        assert_matches(after, expected(self.db, self.reader), self.cap)

    @rule()
    def refresh(self) -> None:
        self.collector.refresh()
        assert self.collector.db_up
        assert_matches(samples(self.collector), expected(self.db, self.reader), self.cap)


PruneTruthMachine.TestCase.settings = TRUTH_SETTINGS
TestPruneTruth = PruneTruthMachine.TestCase
