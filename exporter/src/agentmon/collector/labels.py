"""Bounded label values: a per-label cap, first come first kept, the rest folded into ``other``.

Values come from rows other programs wrote, so they are checked before they become labels: a
value that does not look like a name (``agentmon.schema.labels.NAME``, the rule the hook cleans
its values by: no ``/``, no spaces, no NUL, not too long) becomes ``invalid``; a missing one
(NULL or empty) becomes the label's fixed missing value (``unknown``, or ``none`` for phase).
These fixed values do not use up the cap. Every row whose value was folded into ``other`` or
``invalid`` is counted per label.
"""

from __future__ import annotations

from collections.abc import Iterable

from agentmon.schema.labels import NAME

OTHER = "other"
INVALID = "invalid"
UNKNOWN = "unknown"
NONE = "none"
RESERVED = frozenset({OTHER, INVALID, UNKNOWN, NONE})


class LabelFolder:
    """Maps raw column values of one label to bounded label values."""

    def __init__(self, label: str, cap: int, missing: str = UNKNOWN,
                 kept: Iterable[str] = (), folded: int = 0) -> None:
        if cap < 0:
            raise ValueError("label cap must be >= 0")
        self.label = label
        self.cap = cap
        self.missing = missing
        self.kept: dict[str, None] = dict.fromkeys(kept)
        self.folded = folded

    def fold(self, raw: object, rows: int = 1) -> str:
        """The label value for ``raw``; ``rows`` is how many rows carry it (0: do not count)."""
        if raw is None or raw == "":
            return self.missing
        if not isinstance(raw, str) or NAME.fullmatch(raw) is None:
            self.folded += rows
            return INVALID
        if raw in self.kept or raw in RESERVED:
            return raw
        if len(self.kept) < self.cap:
            self.kept[raw] = None
            return raw
        self.folded += rows
        return OTHER

    def to_json(self) -> dict[str, object]:
        return {"kept": list(self.kept), "folded": self.folded}

    @classmethod
    def from_json(cls, label: str, cap: int, missing: str, data: object) -> LabelFolder:
        if not isinstance(data, dict):
            raise ValueError(f"label state for {label} is not an object")
        kept, folded = data.get("kept"), data.get("folded")
        if not isinstance(kept, list) or not all(isinstance(v, str) for v in kept):
            raise ValueError(f"kept values of {label} are not a list of strings")
        if not isinstance(folded, int) or folded < 0:
            raise ValueError(f"folded count of {label} is not a count")
        return cls(label, cap, missing, kept, folded)
