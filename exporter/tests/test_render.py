"""The pure rendering step: a State and a Health in, metric families out. No SQLite here."""

from __future__ import annotations

import math

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import Metric

from agentmon.collector.render import REASONS, Health, render
from agentmon.collector.state import State


def by_sample(families: tuple[Metric, ...]) -> dict[tuple[str, tuple], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for f in families for s in f.samples}


def built_state() -> State:
    state = State(label_cap=1, db_id="db", seq=7)
    state.finished_invocation("planner", "plan", "completed", 3.0)
    state.finished_invocation("coder", None, "error", None)  # over the cap: other
    state.finished_tool_use("planner", "Bash", "completed", 0.02)
    state.session_changed("s1", "active", is_new=True)
    state.session_changed("s1", "completed", is_new=False)
    state.set_running([("planner", "plan", 2)], [("bad agent", "Read", 1)], 1)
    return state


def test_counters_histograms_and_gauges_come_from_the_state_alone() -> None:
    got = by_sample(render(built_state(), Health(up=True, last_success=5.0, rebuilds=2)))
    assert got[("agentmon_invocations_total",
                (("agent", "planner"), ("phase", "plan"), ("status", "completed")))] == 1
    assert got[("agentmon_invocations_total",
                (("agent", "other"), ("phase", "none"), ("status", "error")))] == 1
    assert got[("agentmon_invocation_duration_seconds_bucket",
                (("agent", "planner"), ("le", "1.0")))] == 0
    assert got[("agentmon_invocation_duration_seconds_bucket",
                (("agent", "planner"), ("le", "5.0")))] == 1
    assert got[("agentmon_invocation_duration_seconds_sum", (("agent", "planner"),))] == 3.0
    assert ("agentmon_invocation_duration_seconds_count", (("agent", "other"),)) not in got
    assert math.isclose(got[("agentmon_tool_use_duration_seconds_sum", (("tool", "Bash"),))],
                        0.02)
    assert got[("agentmon_invocations_running", (("agent", "planner"), ("phase", "plan")))] == 2
    assert got[("agentmon_tool_uses_running", (("agent", "invalid"), ("tool", "other")))] == 1
    assert got[("agentmon_sessions", (("status", "completed"),))] == 1
    assert got[("agentmon_sessions", (("status", "active"),))] == 0
    assert got[("agentmon_sessions_active", ())] == 1
    assert got[("agentmon_db_up", ())] == 1
    assert got[("agentmon_last_refresh_timestamp_seconds", ())] == 5.0
    assert got[("agentmon_state_rebuilds_total", ())] == 2
    assert got[("agentmon_label_values_folded_total", (("label", "agent"),))] == 1


def test_health_alone_an_empty_state_and_every_reason() -> None:
    health = Health()
    health.errors["locked"] = 3
    got = by_sample(render(State(label_cap=5), health))
    assert got[("agentmon_db_up", ())] == 0
    assert {labels[0][1] for (name, labels) in got
            if name == "agentmon_refresh_errors_total"} == set(REASONS)
    assert got[("agentmon_refresh_errors_total", (("reason", "locked"),))] == 3
    assert not any(name.startswith("agentmon_invocations_total") for name, _ in got)


def test_rendering_is_deterministic_text() -> None:
    state, health = built_state(), Health(up=True, last_duration=0.5, last_success=1.0)

    def text() -> str:
        registry = CollectorRegistry(auto_describe=False)

        class Fixed:
            def collect(self) -> tuple[Metric, ...]:
                return render(state, health)

        registry.register(Fixed())  # type: ignore[arg-type]
        return generate_latest(registry).decode()

    assert text() == text()
    assert 'agentmon_invocations_total{agent="planner",phase="plan",status="completed"} 1.0' \
        in text()
