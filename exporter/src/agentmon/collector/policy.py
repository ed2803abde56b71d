"""When the checkpoint is read and written, and what a failure does (``checkpoint`` does the
file itself).

Read once at start-up: a checkpoint that cannot be used (unreadable, not JSON, too deeply
nested, numbers out of range, an unknown format or shape) is ignored with one log line and
the state is rebuilt from the database. Written right after a new state was built (another
database), then at most once per interval while the state changes, and on shutdown. A failed
write is counted and logged once per change of health, never raised.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from agentmon.collector import checkpoint
from agentmon.collector.state import State


class CheckpointPolicy:
    def __init__(self, path: Path | None, interval: float, logger: logging.Logger) -> None:
        self.path = path
        self.interval = interval
        self._log = logger
        self._saved: tuple[str | None, int] | None = None
        self._saved_at = 0.0
        self._failing = False
        self.failures = 0

    def load(self, label_cap: int) -> State | None:
        if self.path is None:
            return None
        try:
            data = checkpoint.load(self.path)
            if data is None:
                return None
            state = State.from_json(data.get("state"), label_cap)
        except (checkpoint.CheckpointError, ValueError) as exc:
            self._log.warning("ignoring checkpoint %s: %s; rebuilding from the database",
                              self.path, exc)
            return None
        self._saved = (state.db_id, state.seq)
        self._saved_at = time.monotonic()
        return state

    def maybe_save(self, state: State | None) -> None:
        if self.path is None or state is None or self._saved == (state.db_id, state.seq):
            return
        due = time.monotonic() - self._saved_at >= self.interval
        if self._saved is None or self._saved[0] != state.db_id or due:
            self.save(state)

    def rebuilt(self) -> None:
        """A new state replaced the old one: write it at the next chance."""
        self._saved = None

    def save(self, state: State | None) -> bool:
        if self.path is None or state is None:
            return True
        try:
            checkpoint.save(self.path, {"state": state.to_json()})
        except checkpoint.CheckpointError as exc:
            self.failures += 1
            if not self._failing:
                self._log.warning("%s; will retry", exc)
                self._failing = True
            return False
        if self._failing:
            self._log.info("checkpoint written again: %s", self.path)
            self._failing = False
        self._saved = (state.db_id, state.seq)
        self._saved_at = time.monotonic()
        return True
