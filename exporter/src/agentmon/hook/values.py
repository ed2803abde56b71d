"""Values read out of a hook event before they are stored: text SQLite can hold, timestamps
(naive ones, the original's, as local time), durations a client reported, ids, a subagent's
summary. No state, no SQL: ``agentmon.hook.store`` writes what these return.
"""

from __future__ import annotations

import math
import time
from datetime import UTC, datetime

from agentmon.hook import bounds

TYPE_CHECKING = False  # typing costs ~3 ms of import per hook process; only checkers need it
if TYPE_CHECKING:
    from typing import Any

SUMMARY_BYTES = 1024
_MAX_DURATION_S = 10 * 365 * 86400.0


def clean_text(value: Any) -> str | None:
    """A string SQLite can store as UTF-8 (lone surrogates replaced), or None."""
    if not isinstance(value, str):
        return None
    return value.encode("utf-8", "replace").decode("utf-8")


def parse_time(value: Any) -> datetime | None:
    """A stored timestamp as an aware datetime. Naive (original, local-time) rows are local."""
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else local_to_utc(parsed)


def local_to_utc(naive: datetime) -> datetime:
    """A naive local time in UTC, exactly as SQLite's ``julianday(x, 'utc')`` (the exporter's
    rule) finds it: guess, ask localtime(), correct, at most four times. A wall time that a
    daylight-saving change skips or repeats thus gets the same instant in both places."""
    wall = int(naive.replace(tzinfo=UTC, microsecond=0).timestamp())
    guess, error = wall, 0
    for _ in range(4):
        guess -= error
        error = int(datetime(*time.localtime(guess)[:6], tzinfo=UTC).timestamp()) - wall
        if not error:
            break
    return datetime.fromtimestamp(guess, UTC).replace(microsecond=naive.microsecond)


def seconds_between(start: Any, end: datetime) -> float | None:
    began = parse_time(start)
    if began is None:
        return None
    seconds = (end - began).total_seconds()
    return seconds if 0 <= seconds <= _MAX_DURATION_S else None


def reported_duration(response: Any, key: str = "totalDurationMs") -> float | None:
    """``response[key]`` (milliseconds) in seconds, when it is a sane number."""
    if not isinstance(response, dict):
        return None
    millis = response.get(key)
    if isinstance(millis, bool) or not isinstance(millis, int | float):
        return None
    try:
        seconds = float(millis) / 1000
    except OverflowError:
        return None
    return seconds if math.isfinite(seconds) and 0 <= seconds <= _MAX_DURATION_S else None


def short_text(value: Any, limit: int = 256) -> str | None:
    """An id-like string the hook stores as it is (prompt_id, agent_id), or None."""
    return value if isinstance(value, str) and 0 < len(value) <= limit \
        and value.isprintable() else None


def result_summary(response: Any) -> str | None:
    """The first text block of a subagent's response, redacted and cut to 1 KiB."""
    content = response.get("content") if isinstance(response, dict) else None
    if isinstance(content, list):
        for block in content:
            if isinstance(block, dict) and isinstance(block.get("text"), str):
                return bounds.text(block["text"], SUMMARY_BYTES)
    return None
