"""Any checkpoint file, however broken or hostile, is either used or ignored with one log line;
start-up never ends in a traceback, and the numbers served after a refresh equal SQL."""

from __future__ import annotations

import json
import logging
import math
import shutil
import tempfile
from pathlib import Path

import hypothesis.strategies as st
import pytest
from collector_db import add_invocation, add_session, add_tool_use, make_db, samples, writer
from hypothesis import HealthCheck, given, settings
from test_truth import assert_matches, recount

from agentmon.collector import checkpoint
from agentmon.collector.collector import ExporterCollector


@pytest.fixture(scope="module")
def good(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """A database and a valid checkpoint of it."""
    folder = tmp_path_factory.mktemp("fuzz")
    db = make_db(folder / "agent_workflow.db")
    conn = writer(db)
    add_session(conn, "s1")
    add_invocation(conn, duration=2.0)
    add_tool_use(conn, duration=0.1)
    add_tool_use(conn, status="running")
    conn.close()
    collector = ExporterCollector(db, checkpoint_path=folder / "state.json")
    collector.refresh()
    assert collector.save_checkpoint()
    collector.close()
    return db, json.loads((folder / "state.json").read_text())


def start(db: Path, raw: bytes, caplog: pytest.LogCaptureFixture) -> list[str]:
    """Start a collector on ``raw`` as its checkpoint: its log lines; numbers checked."""
    folder = Path(tempfile.mkdtemp(prefix="agentmon-ckpt-"))
    try:
        ckpt = folder / "state.json"
        ckpt.write_bytes(raw)
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="agentmon.collector"):
            collector = ExporterCollector(db, checkpoint_path=ckpt)
            lines = [r.getMessage() for r in caplog.records]
            collector.refresh()
        assert collector.db_up
        assert_matches(samples(collector), recount(db))
        collector.close()
        return lines
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def ignored_once(lines: list[str]) -> bool:
    return len(lines) == 1 and lines[0].startswith("ignoring checkpoint") and "\n" not in lines[0]


F = b'{"format": %d, ' % checkpoint.FORMAT


@pytest.mark.parametrize("raw", [
    F + b'"state": {"db_id": "x", "seq": 1e999}}',
    F + b'"state": 1e999}',
    F + b'"state": {"sessions": {"active": 1e999}}}',
    F + b'"state": NaN}',
    F + b'"state": -Infinity}',
    b"[" * 100_000 + b"]" * 100_000,
    F + b'"state": ' + b'{"a": ' * 50_000 + b"1" + b"}" * 50_001,
    b"\xff\xfe not utf-8",
    b"",
])
def test_issue_8_checkpoints_are_ignored_with_one_line(
        good: tuple[Path, dict], raw: bytes, caplog: pytest.LogCaptureFixture) -> None:
    """Reproduction: 1e999 and deep nesting ended start-up in a traceback."""
    assert ignored_once(start(good[0], raw, caplog))


def test_numbers_out_of_range_in_a_valid_checkpoint(good: tuple[Path, dict],
                                                   caplog: pytest.LogCaptureFixture) -> None:
    db, data = good
    for path, bad in ((("sessions", "active"), "1e999"),  # also caught without the digest
                      (("invocation_hist", "planner", 1), "1e999"),
                      (("seq",), "1e999"),
                      (("removals",), "-1")):
        state = json.loads(json.dumps(data["state"]))
        node = state
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = "@@"
        raw = json.dumps({**data, "state": state}).replace('"@@"', bad).encode()
        assert ignored_once(start(db, raw, caplog)), path


@pytest.mark.parametrize("token", [5, ["00"], True, {"a": "b"}])
def test_a_removal_token_that_is_not_text_is_ignored_with_one_line(
        good: tuple[Path, dict], token: object, caplog: pytest.LogCaptureFixture) -> None:
    db, data = good
    content = {key: v for key, v in data.items() if key != "digest"}
    content["state"] = {**content["state"], "removal_token": token}
    raw = json.dumps({**content, "digest": checkpoint._digest(content)}).encode()
    lines = start(db, raw, caplog)
    assert ignored_once(lines)
    assert "removal token is not text" in lines[0]


def test_the_valid_checkpoint_is_used(good: tuple[Path, dict],
                                      caplog: pytest.LogCaptureFixture) -> None:
    assert start(good[0], json.dumps(good[1]).encode(), caplog) == []


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                max_size=4),
    max_leaves=20,
)


def _paths(node: object, prefix: tuple = ()) -> list[tuple]:
    out = [prefix]
    if isinstance(node, dict):
        for key, child in node.items():
            out += _paths(child, (*prefix, key))
    elif isinstance(node, list):
        for i, child in enumerate(node):
            out += _paths(child, (*prefix, i))
    return out


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data())
def test_any_mutation_of_a_checkpoint_is_used_or_ignored(
        good: tuple[Path, dict], caplog: pytest.LogCaptureFixture, data: st.DataObject) -> None:
    db, valid = good
    doc = json.loads(json.dumps(valid))
    paths = _paths(doc)
    path = data.draw(st.sampled_from(paths))
    replacement = data.draw(JSON)
    if path:
        node = doc
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = replacement
    else:
        doc = replacement
    raw = json.dumps(doc, allow_nan=True).encode()
    lines = start(db, raw, caplog)
    # an edited checkpoint no longer matches its digest: only an unchanged one is used
    assert lines == [] if raw == json.dumps(valid).encode() else ignored_once(lines)


@settings(max_examples=100, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(raw=st.binary(max_size=200) | JSON.map(lambda v: json.dumps(v).encode()))
def test_any_bytes_are_used_or_ignored(good: tuple[Path, dict], raw: bytes,
                                       caplog: pytest.LogCaptureFixture) -> None:
    lines = start(good[0], raw, caplog)
    assert lines == [] or ignored_once(lines)


def test_the_loader_rejects_non_finite_numbers(tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    for text in ("1e999", "-1e999", "NaN", "Infinity"):
        path.write_text('{"format": %d, "x": %s}' % (checkpoint.FORMAT, text))  # noqa: UP031
        with pytest.raises(checkpoint.CheckpointError, match="not valid JSON"):
            checkpoint.load(path)
    checkpoint.save(path, {"x": 1.5})
    assert checkpoint.load(path) == {"format": checkpoint.FORMAT, "x": 1.5}


def test_a_state_that_cannot_be_written_back_is_a_checkpoint_error(tmp_path: Path) -> None:
    with pytest.raises(checkpoint.CheckpointError, match="cannot write checkpoint"):
        checkpoint.save(tmp_path / "c.json", {"state": {"total": math.inf}})
    assert list(tmp_path.iterdir()) == []
