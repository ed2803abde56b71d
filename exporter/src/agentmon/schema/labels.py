"""The one rule for label values, shared by the hook (which writes them) and the collector.

A label value is 1 to 64 characters of ``A-Za-z0-9_.:@-``: a name, never a path, a space or a
NUL. ``@`` is kept because model ids carry it (Vertex AI's ``claude-sonnet-4@20250514``), and
the price file names models by those ids. The hook cleans what it writes to a label column with
``clean`` (runs of other characters become ``_``); the collector accepts a value only when it
matches ``NAME`` (``agentmon.collector.labels`` folds the rest into ``invalid``), so every value
the hook writes is one the collector keeps as it is. No imports beyond ``re``: the hook reads
this on every event.
"""

from __future__ import annotations

import re

CHARACTERS = "A-Za-z0-9_.:@-"
MAX_LENGTH = 64
NAME = re.compile(f"[{CHARACTERS}]{{1,{MAX_LENGTH}}}")
_DROP = re.compile(f"[^{CHARACTERS}]+")


def clean(value: object, limit: int = MAX_LENGTH) -> str | None:
    """``value`` as a label value (other characters as ``_``, cut at ``limit``), or None."""
    if not isinstance(value, str):
        return None
    cleaned = _DROP.sub("_", value.strip()).strip("_")[:limit]
    return cleaned or None
