"""The exporter's in-memory state: counters, histograms and gauges by bounded label values.

Its size is O(label combinations + open sessions), never O(rows). It knows nothing about
SQLite: the collector feeds it rows and aggregates; the checkpoint stores ``to_json()``.
"""

from __future__ import annotations

import bisect
import hashlib
import math
from dataclasses import dataclass, field

from agentmon.collector.labels import NONE, UNKNOWN, LabelFolder
from agentmon.collector.queries import INVOCATION_BUCKETS, MAX_DURATION, TOOL_USE_BUCKETS
from agentmon.schema.statuses import COMPLETED

TABLES = ("agent_invocations", "agent_tool_uses", "sessions", "agent_usage")
LABELS = {"agent": UNKNOWN, "phase": NONE, "tool": UNKNOWN, "status": UNKNOWN,
          "model": UNKNOWN, "error": UNKNOWN}
# agentmon_tokens_total's type label, in agent_usage's column order
TOKEN_TYPES = ("input", "output", "cache_read", "cache_creation")
LINE_TYPES = ("added", "removed")


def usable_duration(duration_seconds: object, timestamp_duration: object) -> float | None:
    """The duration rule of ``agentmon.collector.queries`` applied to one row's two candidates."""
    for value in (duration_seconds, timestamp_duration):
        if isinstance(value, int | float) and not isinstance(value, bool) \
                and 0 <= value <= MAX_DURATION:
            return float(value)
    return None


def session_key(session_id: object) -> str:
    """A short digest: the checkpoint must not hold session ids."""
    return hashlib.blake2b(repr(session_id).encode(), digest_size=8).hexdigest()


@dataclass
class Histogram:
    """Per-bucket (not cumulative) counts; the last slot is +Inf."""

    buckets: tuple[float, ...]
    counts: list[int] = field(default_factory=list)
    total: float = 0.0

    def __post_init__(self) -> None:
        if not self.counts:
            self.counts = [0] * (len(self.buckets) + 1)
        elif len(self.counts) != len(self.buckets) + 1:
            raise ValueError("histogram has the wrong number of buckets")

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.buckets, value)] += 1
        self.total += value

    def add_cumulative(self, cumulative: list[int], count: int, total: float) -> None:
        """Add an aggregate given as counts of values <= each bound, a count and a sum."""
        previous = 0
        for i, at_most in enumerate(cumulative):
            self.counts[i] += at_most - previous
            previous = at_most
        self.counts[-1] += count - previous
        self.total += total

    def add_bucket(self, le: float, count: int, total: float) -> None:
        """Add ``count`` values of the bucket whose upper bound is ``le`` (+Inf: the last)."""
        self.counts[bisect.bisect_left(self.buckets, le)] += count
        self.total += total

    def cumulative(self) -> list[int]:
        out, running = [], 0
        for c in self.counts:
            running += c
            out.append(running)
        return out


class State:
    """Everything the metrics are computed from, consistent as of sequence ``seq``."""

    def __init__(self, label_cap: int, db_id: str | None = None, seq: int = 0) -> None:
        self.db_id = db_id
        self.seq = seq  # snapshot sequence of the last complete refresh
        # How far each table has been read; ahead of ``seq`` while a backlog is being read in
        # batches (a refresh cut short by a fault resumes from here, nothing counted twice).
        self.marks = dict.fromkeys(TABLES, seq)
        self.folders = {name: LabelFolder(name, label_cap, missing)
                        for name, missing in LABELS.items()}
        self.invocations: dict[tuple[str, str, str], int] = {}
        self.invocation_hist: dict[str, Histogram] = {}
        self.tool_uses: dict[tuple[str, str, str], int] = {}
        self.tool_use_hist: dict[str, Histogram] = {}
        self.sessions: dict[str, int] = {}
        self.open_sessions: dict[str, str] = {}  # session digest -> status label, if not completed
        # agent_usage: tokens by (agent, model, type), lines by (agent, type), API errors by
        # error, permission denials by tool
        self.tokens: dict[tuple[str, str, str], int] = {}
        self.lines: dict[tuple[str, str], int] = {}
        self.api_errors: dict[str, int] = {}
        self.denials: dict[str, int] = {}
        # How the database looked when it was read (see collector.reading, "Divergence"): its
        # removal counter and token (hex; None: not known yet), per table a witness row as
        # [rowid, seq, fingerprint] (sessions: [rowid, seq, identity fingerprint,
        # fingerprint]), and the row holding the highest sequence number up to ``seq`` as
        # [its seq, table index, rowid, fingerprint].
        self.removals = 0
        self.removal_token: str | None = None
        self.prune_batches = 0  # agentmon prune's batches this state has accounted for
        self.witness: dict[str, list[int]] = {}
        self.head: list[int] | None = None
        # Gauges, re-read on every refresh (never stored).
        self.invocations_running: dict[tuple[str, str], int] = {}
        self.tool_uses_running: dict[tuple[str, str], int] = {}
        self.sessions_active = 0

    # --- finished invocations and tool uses ----------------------------------------------------
    def add_invocations(self, agent: object, phase: object, status: str, rows: int) -> str:
        a = self.folders["agent"].fold(agent, rows)
        key = (a, self.folders["phase"].fold(phase, rows), status)
        self.invocations[key] = self.invocations.get(key, 0) + rows
        return a

    def add_tool_uses(self, agent: object, tool: object, status: str, rows: int) -> str:
        t = self.folders["tool"].fold(tool, rows)
        key = (self.folders["agent"].fold(agent, rows), t, status)
        self.tool_uses[key] = self.tool_uses.get(key, 0) + rows
        return t

    def invocation_histogram(self, agent: str) -> Histogram:
        hist = self.invocation_hist.get(agent)
        if hist is None:
            hist = self.invocation_hist[agent] = Histogram(INVOCATION_BUCKETS)
        return hist

    def tool_use_histogram(self, tool: str) -> Histogram:
        hist = self.tool_use_hist.get(tool)
        if hist is None:
            hist = self.tool_use_hist[tool] = Histogram(TOOL_USE_BUCKETS)
        return hist

    def finished_invocation(self, agent: object, phase: object, status: str,
                            duration: float | None) -> None:
        label = self.add_invocations(agent, phase, status, 1)
        if duration is not None:
            self.invocation_histogram(label).observe(duration)

    def finished_tool_use(self, agent: object, tool: object, status: str,
                          duration: float | None) -> None:
        label = self.add_tool_uses(agent, tool, status, 1)
        if duration is not None:
            self.tool_use_histogram(label).observe(duration)

    # --- agent_usage -----------------------------------------------------------------------
    def add_usage(self, kind: object, agent: object, model: object, what: object, rows: int,
                  counts: tuple[object, ...]) -> None:
        """``rows`` rows of one label combination; ``counts`` are their summed columns
        (four token types, then lines added and removed)."""
        if kind == "tokens":
            a = self.folders["agent"].fold(agent, rows)
            m = self.folders["model"].fold(model, rows)
            for kind_name, n in zip(TOKEN_TYPES, counts[:4], strict=True):
                if isinstance(n, int) and n > 0:
                    self.tokens[(a, m, kind_name)] = self.tokens.get((a, m, kind_name), 0) + n
            for kind_name, n in zip(LINE_TYPES, counts[4:], strict=True):
                if isinstance(n, int) and n > 0:
                    self.lines[(a, kind_name)] = self.lines.get((a, kind_name), 0) + n
        elif kind == "api_error":
            e = self.folders["error"].fold(what, rows)
            self.api_errors[e] = self.api_errors.get(e, 0) + rows
        elif kind == "permission_denied":
            t = self.folders["tool"].fold(what, rows)
            self.denials[t] = self.denials.get(t, 0) + rows

    # --- sessions --------------------------------------------------------------------------
    def session_changed(self, session_id: object, status: object, is_new: bool) -> None:
        """A session row as it is now; ``is_new`` when the state has never counted it."""
        key = session_key(session_id)
        if not is_new:
            old = self.open_sessions.pop(key, COMPLETED)
            self.sessions[old] = self.sessions.get(old, 0) - 1
        label = COMPLETED if status == COMPLETED else self.folders["status"].fold(status)
        self.sessions[label] = self.sessions.get(label, 0) + 1
        if status != COMPLETED:
            self.open_sessions[key] = label

    # --- gauges ----------------------------------------------------------------------------
    def set_running(self, invocations: list[tuple[object, object, int]],
                    tool_uses: list[tuple[object, object, int]], active_sessions: int) -> None:
        self.invocations_running = {}
        for agent, phase, n in invocations:
            key = (self.folders["agent"].fold(agent, 0), self.folders["phase"].fold(phase, 0))
            self.invocations_running[key] = self.invocations_running.get(key, 0) + n
        self.tool_uses_running = {}
        for agent, tool, n in tool_uses:
            key = (self.folders["agent"].fold(agent, 0), self.folders["tool"].fold(tool, 0))
            self.tool_uses_running[key] = self.tool_uses_running.get(key, 0) + n
        self.sessions_active = active_sessions

    # --- checkpoint ------------------------------------------------------------------------
    def to_json(self) -> dict[str, object]:
        return {
            "db_id": self.db_id,
            "seq": self.seq,
            "marks": self.marks,
            "buckets": [list(INVOCATION_BUCKETS), list(TOOL_USE_BUCKETS)],
            "labels": {name: f.to_json() for name, f in self.folders.items()},
            "invocations": [[*k, v] for k, v in self.invocations.items()],
            "tool_uses": [[*k, v] for k, v in self.tool_uses.items()],
            "invocation_hist": {k: [h.counts, h.total] for k, h in self.invocation_hist.items()},
            "tool_use_hist": {k: [h.counts, h.total] for k, h in self.tool_use_hist.items()},
            "sessions": self.sessions,
            "open_sessions": self.open_sessions,
            "tokens": [[*k, v] for k, v in self.tokens.items()],
            "lines": [[*k, v] for k, v in self.lines.items()],
            "api_errors": self.api_errors,
            "denials": self.denials,
            "removals": self.removals,
            "removal_token": self.removal_token,
            "prune_batches": self.prune_batches,
            "witness": self.witness,
            "head": self.head,
        }

    @classmethod
    def from_json(cls, data: object, label_cap: int) -> State:
        """Rebuild a state from ``to_json()`` output; raises ValueError on anything odd."""
        try:
            return cls._from_json(data, label_cap)
        except (KeyError, TypeError, AttributeError, IndexError, OverflowError) as exc:
            raise ValueError(f"malformed state ({type(exc).__name__}: {exc})") from None

    @classmethod
    def _from_json(cls, data: object, label_cap: int) -> State:
        if not isinstance(data, dict):
            raise ValueError("state is not an object")
        db_id, seq = data["db_id"], data["seq"]
        if not isinstance(db_id, str) or not isinstance(seq, int) or seq < 0:
            raise ValueError("db_id or seq missing")
        if data["buckets"] != [list(INVOCATION_BUCKETS), list(TOOL_USE_BUCKETS)]:
            raise ValueError("histogram buckets differ from this version's")
        state = cls(label_cap, db_id, seq)
        marks = data["marks"]
        if set(marks) != set(TABLES) or not all(isinstance(v, int) and v >= seq
                                                   for v in marks.values()):
            raise ValueError("table marks missing")
        state.marks = dict(marks)
        for name, missing in LABELS.items():
            state.folders[name] = LabelFolder.from_json(name, label_cap, missing,
                                                        data["labels"][name])
        state.invocations = {_key3(row): _count(row[3]) for row in data["invocations"]}
        state.tool_uses = {_key3(row): _count(row[3]) for row in data["tool_uses"]}
        state.invocation_hist = {str(k): Histogram(INVOCATION_BUCKETS, *_hist(v))
                                 for k, v in data["invocation_hist"].items()}
        state.tool_use_hist = {str(k): Histogram(TOOL_USE_BUCKETS, *_hist(v))
                               for k, v in data["tool_use_hist"].items()}
        state.sessions = {str(k): _count(v) for k, v in data["sessions"].items()}
        state.open_sessions = {str(k): str(v) for k, v in data["open_sessions"].items()}
        state.tokens = {_key3(row): _count(row[3]) for row in data["tokens"]}
        state.lines = {_key2(row): _count(row[2]) for row in data["lines"]}
        state.api_errors = {str(k): _count(v) for k, v in data["api_errors"].items()}
        state.denials = {str(k): _count(v) for k, v in data["denials"].items()}
        state.removals = _count(data["removals"])
        token = data["removal_token"]
        if token is not None and not isinstance(token, str):
            raise ValueError("removal token is not text")
        state.removal_token = token
        state.prune_batches = _count(data["prune_batches"])
        witness = data["witness"]
        if not isinstance(witness, dict) or not set(witness) <= set(TABLES):
            raise ValueError("witness is not an object of tables")
        state.witness = {str(k): _ints(v, 4 if k == "sessions" else 3)
                         for k, v in witness.items()}
        head = data["head"]
        state.head = None if head is None else _ints(head, 4)
        if state.head is not None and not 0 <= state.head[1] < len(TABLES):
            raise ValueError("head names no table")
        return state


def _key3(row: list[object]) -> tuple[str, str, str]:
    if len(row) != 4 or not all(isinstance(v, str) for v in row[:3]):
        raise ValueError("counter row is not [label, label, label, count]")
    return (str(row[0]), str(row[1]), str(row[2]))


def _key2(row: list[object]) -> tuple[str, str]:
    if len(row) != 3 or not all(isinstance(v, str) for v in row[:2]):
        raise ValueError("counter row is not [label, label, count]")
    return (str(row[0]), str(row[1]))


def _count(value: object) -> int:
    if not isinstance(value, int) or value < 0:
        raise ValueError("counter value is not a count")
    return value


def _ints(value: object, length: int) -> list[int]:
    if not isinstance(value, list) or len(value) != length \
            or not all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        raise ValueError("witness is not a list of integers")
    return list(value)


def _hist(value: list[object]) -> tuple[list[int], float]:
    counts, total = value
    if not isinstance(counts, list) or not all(isinstance(c, int) and c >= 0 for c in counts):
        raise ValueError("histogram counts are not counts")
    if not isinstance(total, int | float) or not math.isfinite(total):
        raise ValueError("histogram sum is not a number")
    return counts, float(total)
