"""Bounds on what the hook stores: each payload redacted (``agentmon.hook.redact``), serialised
as ASCII JSON and, when longer than the byte budget, replaced by a still-valid JSON object that
carries a visible ``[TRUNCATED ...]`` marker and a prefix of the original text; free text cut to
a number of UTF-8 bytes, with a marker.
"""

from __future__ import annotations

import json

from agentmon.hook.redact import redact, redact_text

TYPE_CHECKING = False  # typing costs ~3 ms of import per hook process; only checkers need it
if TYPE_CHECKING:
    from typing import Any

MIN_PAYLOAD_BYTES = 256


def dump(value: Any) -> str:
    """Compact JSON, ASCII only (lone surrogates and NULs are escaped, never stored raw)."""
    return json.dumps(value, ensure_ascii=True, separators=(",", ":"), allow_nan=False)


def truncate_json(text: str, max_bytes: int) -> str:
    """``text`` (ASCII JSON) if it fits in ``max_bytes``, else a valid JSON object with a marker.

    The replacement is ``{"truncated":"[TRUNCATED: N bytes, first K shown]","preview":"..."}``
    and is never longer than ``max_bytes``.
    """
    if len(text) <= max_bytes:
        return text
    keep = max(0, max_bytes - 96)
    while True:
        marker = f"[TRUNCATED: {len(text)} bytes, first {keep} shown]"
        out = dump({"truncated": marker, "preview": text[:keep]})
        if len(out) <= max_bytes or keep == 0:
            return out
        keep = max(0, keep - (len(out) - max_bytes))


def payload(value: Any, max_bytes: int) -> str:
    """Redact, serialise and truncate one payload for a JSON column."""
    return truncate_json(dump(redact(value)), max_bytes)


def text(value: str, max_bytes: int) -> str:
    """Redact and truncate free text (a prompt, an error) to ``max_bytes`` UTF-8 bytes."""
    clean = redact_text(value).encode("utf-8", "replace")
    if len(clean) <= max_bytes:
        return clean.decode("utf-8")
    marker = f" [TRUNCATED: {len(clean)} bytes]"
    kept = clean[: max(0, max_bytes - len(marker))].decode("utf-8", "ignore")
    return kept + marker
