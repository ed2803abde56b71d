"""The exposition the server writes: the latest rendered bytes (text format and, while
clients ask for it, OpenMetrics; each plain and gzip), swapped whole by the refresh thread.
A scrape never renders anything; it writes what is here."""

from __future__ import annotations

import gzip
import math
import time


class Exposition:
    """The latest rendered metrics (text format and, when rendered, OpenMetrics; each plain and
    gzip), swapped whole by the refresh thread.

    OpenMetrics is rendered only while clients ask for it (it adds about a third to the
    render, ``agentmon.serve.formats``): a request that prefers it marks the time, and
    the refresh thread renders it while such a request came in the last ``OPENMETRICS_WINDOW``
    seconds. Until then (and after) those requests get the text format, which every
    Prometheus also accepts; never an OpenMetrics rendering older than the text."""

    OPENMETRICS_WINDOW = 600.0

    def __init__(self, body: bytes = b"", openmetrics: bytes | None = None) -> None:
        self.set(body, openmetrics)
        self._openmetrics_asked = -math.inf

    def ask_openmetrics(self) -> None:
        self._openmetrics_asked = time.monotonic()

    def openmetrics_wanted(self) -> bool:
        return time.monotonic() - self._openmetrics_asked < self.OPENMETRICS_WINDOW

    def set(self, body: bytes, openmetrics: bytes | None = None) -> None:
        self._current = (_packed(body),
                         _packed(openmetrics) if openmetrics is not None else None)

    def get(self) -> tuple[bytes, bytes]:
        """The text format: (plain, gzip)."""
        return self._current[0]

    def get_openmetrics(self) -> tuple[bytes, bytes] | None:
        """OpenMetrics: (plain, gzip), or None when it was not rendered."""
        return self._current[1]


def _packed(body: bytes) -> tuple[bytes, bytes]:
    return body, gzip.compress(body, compresslevel=6, mtime=0)
