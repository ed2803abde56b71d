"""What ``agentmon seed`` is asked for (``SeedOptions``, checked by ``validate``), what it
reports (``SeedResult``) and the one fault it reports as a line (``SeedError``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


@dataclass(frozen=True)
class SeedOptions:
    invocations: int
    tools_per_invocation: int = 3
    days: float = 90.0
    seed: int = 1
    end: datetime | None = None
    schema: str = "agentmon"
    error_rate: float = 0.05
    sessions_columns: int = 6
    append: bool = False
    jobs: int = 1
    usage: bool = False  # also usage facts (tokens, lines, API errors, denials): load.USAGE_SQL


@dataclass
class SeedResult:
    db: str
    schema: str = "agentmon"
    sessions: int = 0
    invocations: int = 0
    tool_uses: int = 0
    running: int = 0
    seconds: float = 0.0
    sequence: int | None = None
    jobs: int = 1
    phases: dict[str, float] = field(default_factory=dict)

    @property
    def rows(self) -> int:
        return self.sessions + self.invocations + self.tool_uses

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "rows": self.rows,
                "rows_per_second": round(self.rows_per_second)}


class SeedError(RuntimeError):
    """An expected fault (bad target file, bad option): reported as one line."""


def validate(opts: SeedOptions) -> None:
    if opts.invocations < 1:
        raise SeedError("--invocations must be at least 1")
    if not 0 <= opts.tools_per_invocation <= 100:
        raise SeedError("--tools-per-invocation must be between 0 and 100")
    if not 0 < opts.days <= 3650:
        raise SeedError("--days must be more than 0 and at most 3650")
    if not 0 <= opts.error_rate <= 1:
        raise SeedError("--error-rate must be between 0 and 1")
    if opts.schema not in ("agentmon", "original"):
        raise SeedError("--schema must be agentmon or original")
    if opts.sessions_columns not in (4, 6):
        raise SeedError("--sessions-columns must be 4 or 6")
    if not 1 <= opts.jobs <= 64:
        raise SeedError("--jobs must be between 1 and 64")
    if opts.schema == "agentmon" and opts.sessions_columns != 6:
        raise SeedError("--sessions-columns 4 is only for --schema original")
