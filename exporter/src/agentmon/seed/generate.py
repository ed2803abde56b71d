"""The rows of one shard of ``agentmon seed`` (``generate``), and a worker's shard as an
in-memory SQLite image (``stage``).

The newest sessions are still active, with their last invocation and tool call running. With
``--schema agentmon`` each row carries ``agentmon_seq``/``agentmon_created_seq`` with exactly
the values the triggers would have given the same events written one by one (session start,
each invocation's insert, each tool call's insert and completion, each invocation's completion,
session end), so the result cannot be told apart from a database the hook wrote. With
``--schema original`` the timestamps are the original's local time without a zone.
"""

from __future__ import annotations

import gc
import random
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from agentmon.seed.plan import Frame, Shard
from agentmon.seed.pools import AGENTS, INVOCATION_ERRORS, MODELS, POOL_BITS, TOOLS, pools_for

DATA_TABLES = ("sessions", "agent_invocations", "agent_tool_uses")


def insert_sql(table: str, columns: Sequence[str]) -> str:
    # Names come from this package's constants, never from input.
    return (f"INSERT INTO {table} ({', '.join(columns)}) "  # noqa: S608
            f"VALUES ({', '.join('?' * len(columns))})")


def generate(frame: Frame, shard: Shard) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]],
                                                      list[tuple[Any, ...]], int]:
    """The rows of one shard: (sessions, invocations, tool_uses, running rows)."""
    opts = frame.opts
    tracked = opts.schema == "agentmon"
    pools = pools_for(opts.seed, not tracked)
    rng = random.Random(f"agentmon-seed/{frame.salt}/{shard.number}")  # noqa: S311
    bits = rng.getrandbits
    day, hms, frac = pools.day, pools.hms, pools.frac
    agent_table, model_table, tool_tables = pools.agent_table, pools.model_table, pools.tool_tables
    tool_durations, tool_inputs, tool_outputs = (
        pools.tool_durations, pools.tool_inputs, pools.tool_outputs)
    tool_errors, prompts = pools.tool_errors, pools.prompts
    agent_work, gap_tool, gap_inv = pools.agent_work, pools.gap_tool, pools.gap_invocation
    cwds, metadata = pools.cwds, pools.metadata
    six = len(frame.columns[0]) - (2 if tracked else 0) == 6
    k = opts.tools_per_invocation
    spread = max(0, k - 1)
    err_at = round(opts.error_rate * (1 << 16))
    running_status = "running" if tracked else "started"
    event_type = "PreToolUse" if tracked else "pre_invocation"
    tu_prefix = f"toolu_01{opts.seed & 0xFFFFFFFF:08x}"
    slot = (frame.t_end - frame.t_start) / frame.n_sessions
    pb = POOL_BITS
    tool_names = [t[0] for t in TOOLS]
    day_start = -1  # first second of the day in `prefix`, the last day formatted
    prefix = ""

    def ts(t_ms: int) -> str:
        nonlocal day_start, prefix
        s, ms = divmod(t_ms, 1000)
        sod = s - day_start
        if not 0 <= sod < 86400:
            day_start = s - s % 86400
            prefix = day(day_start // 86400)
            sod = s - day_start
        return prefix + hms[sod] + frac[ms]

    sessions: list[tuple[Any, ...]] = []
    invocations: list[tuple[Any, ...]] = []
    tool_uses: list[tuple[Any, ...]] = []
    running = 0
    seq = shard.first_seq
    inv_id = shard.first_inv_id
    tool_id = shard.first_tool_id
    # Tool calls per invocation vary around k; invocations are paired so that each pair
    # makes 2k and the shard exactly count * k (an unpaired last one gets k).
    pending: int | None = None
    left = sum(shard.sizes)
    for g, size in enumerate(shard.sizes, start=shard.first_session):
        live = g >= frame.live_from
        # The session on a relative time line (ms from its start); placed afterwards.
        plan = []
        t = 0
        for _ in range(size):
            a = agent_table[bits(10)]
            t += gap_inv[bits(pb)]
            inv_start = t
            left -= 1
            if pending is not None:
                n_tools, pending = k + pending, None
            elif spread and left:
                delta = bits(8) % (2 * spread + 1) - spread
                n_tools, pending = k + delta, -delta
            else:
                n_tools = k
            table = tool_tables[a]
            durations_by_tool = tool_durations
            tools = []
            for _ in range(n_tools):
                ti = table[bits(10)]
                t += gap_tool[bits(pb)]
                dur = durations_by_tool[ti][bits(pb)]
                tools.append((ti, t, dur))
                t += dur
            t += agent_work[a][bits(pb)]
            plan.append((a, inv_start, t, tools))
        session_len = t + gap_tool[bits(pb)]
        if live:
            # "now" falls inside the last tool call (or in the agent's own work).
            _, inv_start, inv_end, tools = plan[-1]
            cut = tools[-1][1] + tools[-1][2] // 2 if tools else (inv_start + inv_end) // 2
            base = frame.t_end - cut
        else:
            base = frame.t_start + int((g + rng.random()) * slot)
            base = min(base, frame.t_end - 1000 - session_len)
        sid = f"{bits(128):032x}"
        sid = f"{sid[:8]}-{sid[8:12]}-4{sid[13:16]}-a{sid[17:20]}-{sid[20:]}"
        seq += 1
        created = seq
        last = size - 1
        for j, (a, inv_start, inv_end, tools) in enumerate(plan):
            inv_running = live and j == last
            name, phase = AGENTS[a][0], AGENTS[a][1]
            prompt, raw_input, ticket = prompts[a][bits(6)]
            start_text = ts(base + inv_start)
            seq += 1
            inv_seq = seq
            n = len(tools)
            for i, (ti, t0, dur) in enumerate(tools):
                seq += 1
                t_text = ts(base + t0)
                r = bits(26)  # input 6 bits | failure 16 bits | output 4 bits
                if inv_running and i == n - 1:
                    status, error, output, end_text, dur_s = running_status, None, None, None, None
                    running += 1
                else:
                    seq += 1
                    end_text = ts(base + t0 + dur)
                    dur_s = dur / 1000
                    fail = (r >> 6) & 0xFFFF
                    if fail < err_at:
                        errors = tool_errors[ti]
                        status, error, output = "error", errors[fail % len(errors)], None
                    else:
                        status, error, output = "completed", None, tool_outputs[ti][r >> 22]
                if tracked:
                    tool_uses.append((
                        tool_id, t_text, sid, name, inv_id, tool_names[ti], tool_inputs[ti][r & 63],
                        output, dur_s, status, error, i + 1, t_text, end_text,
                        f"{tu_prefix}b{tool_id:013x}", seq))
                else:
                    tool_uses.append((
                        tool_id, t_text, sid, name, inv_id, tool_names[ti], tool_inputs[ti][r & 63],
                        output, dur_s, status, error, i + 1, t_text, end_text))
                tool_id += 1
            if inv_running:
                status, error, end_text, dur_s, summary, raw_output = (
                    running_status, None, None, None, None, None)
                running += 1
            else:
                seq += 1
                inv_seq = seq
                dur_ms = inv_end - inv_start
                end_text = ts(base + inv_end)
                dur_s = dur_ms / 1000 if tracked or bits(2) else None  # original: often empty
                raw_output = (f'{{"totalDurationMs":{dur_ms},"totalTokens":{2000 + bits(15)},'
                              f'"totalToolUseCount":{n}}}')
                if bits(16) < err_at:
                    status, error, summary = "error", INVOCATION_ERRORS[bits(2)], None
                else:
                    status, error, summary = "completed", None, f"Done: {n} tool calls"
            model = MODELS[model_table[bits(10)]][0]
            if tracked:
                invocations.append((
                    inv_id, start_text, sid, event_type, phase, name, phase, model, prompt, "main",
                    ticket, start_text, end_text, dur_s, status, error, summary, raw_input,
                    raw_output, f"{tu_prefix}a{inv_id:013x}", inv_seq))
            else:
                invocations.append((
                    inv_id, start_text, sid, event_type, phase, name, phase, model, prompt, "main",
                    ticket, start_text, end_text, dur_s, status, error, summary, raw_input,
                    raw_output))
            inv_id += 1
        if live:
            s_end, s_status, s_seq = None, "active", created
        else:
            seq += 1
            s_end, s_status, s_seq = ts(base + session_len), "completed", seq
        row: tuple[Any, ...] = (sid, ts(base), s_end, s_status)
        if six:
            row += (cwds[bits(8) % len(cwds)], metadata[bits(8) % len(metadata)])
        if tracked:
            row += (s_seq, created)
        sessions.append(row)
    return sessions, invocations, tool_uses, running


@contextmanager
def no_gc() -> Iterator[None]:
    """Millions of short-lived tuples and no reference cycles: the cyclic GC would only rescan."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def stage(frame: Frame, shard: Shard) -> tuple[bytes, int, int, int, int]:
    """Worker: one shard as a serialized in-memory database (plus its row counts)."""
    with no_gc():
        sessions, invocations, tool_uses, running = generate(frame, shard)
    conn = sqlite3.connect(":memory:", isolation_level=None)
    try:
        conn.execute("BEGIN")
        for ddl, table, columns, rows in zip(frame.tables, DATA_TABLES, frame.columns,
                                             (sessions, invocations, tool_uses), strict=True):
            # The target's own table, so the copy is a raw record transfer; without
            # AUTOINCREMENT, which would rewrite sqlite_sequence after every row here.
            conn.execute(ddl.replace(" AUTOINCREMENT", ""))
            conn.executemany(insert_sql(table, columns), rows)
        for ddl in frame.indexes:
            conn.execute(ddl)
        conn.execute("COMMIT")
        data = conn.serialize()
    finally:
        conn.close()
    return data, len(sessions), len(invocations), len(tool_uses), running
