"""Cutting the work of ``agentmon seed`` into shards of whole sessions.

Each shard's ids and sequence numbers are known up front (``plan``), so worker processes can
generate shards in parallel and the rows depend only on ``--seed``, ``--end`` and the ids
already present (when appending), never on ``--jobs``. ``seq_used`` counts the values of
``agentmon_sequence`` the change-tracking triggers would have given the same rows.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime

from agentmon.seed.options import SeedOptions

MEAN_INVOCATIONS_PER_SESSION = 8
MAX_INVOCATIONS_PER_SESSION = 60
SHARD_INVOCATIONS = 8_192  # a unit of parallel work: whole sessions, about 33k rows

LIVE_SESSIONS_PER = 5_000  # one session in this many (and at least one) is still running


@dataclass(frozen=True)
class Frame:
    """What every shard shares."""

    opts: SeedOptions
    salt: str
    n_sessions: int
    live_from: int  # sessions from this global index on are still running
    t_start: int  # epoch ms
    t_end: int
    columns: tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]  # sessions, inv, tools
    tables: tuple[str, ...] = ()  # the target's CREATE TABLE statements, for staging
    indexes: tuple[str, ...] = ()  # and the indexes it keeps during the load


@dataclass(frozen=True)
class Shard:
    number: int
    sizes: tuple[int, ...]  # invocations per session
    first_session: int
    first_inv_id: int
    first_tool_id: int
    first_seq: int


def seq_used(sessions: int, invocations: int, tool_uses: int, live: int, k: int) -> int:
    """Sequence values the triggers would consume for these rows.

    A finished session takes 1 at its start and 1 at its end; an invocation and a tool call
    1 at insert and 1 at completion. A live session has not ended, and its last invocation and
    (when it has any) its last tool call are still running.
    """
    return 2 * (sessions + invocations + tool_uses) - live * (3 if k else 2)


def plan(opts: SeedOptions, first_inv_id: int, first_tool_id: int, first_seq: int,
          columns: tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]],
          ) -> tuple[Frame, list[Shard], int]:
    """Cut the work into shards with known ids and sequence ranges; return the final seq."""
    salt = f"{opts.seed}/{first_inv_id}"
    rng = random.Random(f"agentmon-seed/{salt}/plan")  # noqa: S311
    sizes: list[int] = []
    left = opts.invocations
    scale = MEAN_INVOCATIONS_PER_SESSION - 1
    while left > 0:  # geometric around the mean
        size = min(left, MAX_INVOCATIONS_PER_SESSION, 1 + int(rng.expovariate(1.0) * scale))
        sizes.append(size)
        left -= size
    n_sessions = len(sizes)
    live_from = n_sessions - min(n_sessions, 1 + n_sessions // LIVE_SESSIONS_PER)
    end = opts.end or datetime.now(UTC)
    t_end = int(end.timestamp() * 1000)
    frame = Frame(opts, salt, n_sessions, live_from, t_end - int(opts.days * 86_400_000),
                   t_end, columns)
    k = opts.tools_per_invocation
    shards = []
    inv_id, tool_id, seq, start = first_inv_id, first_tool_id, first_seq, 0
    while start < n_sessions:
        stop, count = start, 0
        while stop < n_sessions and count < SHARD_INVOCATIONS:
            count += sizes[stop]
            stop += 1
        shards.append(Shard(len(shards), tuple(sizes[start:stop]), start, inv_id, tool_id, seq))
        live = max(0, stop - max(start, live_from))
        seq += seq_used(stop - start, count, count * k, live, k)
        inv_id += count
        tool_id += count * k
        start = stop
    return frame, shards, seq
