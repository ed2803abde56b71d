"""The exposition formats written from one collection: the text format and OpenMetrics 1.0.

Byte for byte what prometheus_client's ``generate_latest`` writers produce (the tests compare
them on every kind of family and on hostile label values), at a fraction of their cost: their
per-sample work (name and label-name validation, OpenMetrics' character-by-character name
escaping) is done once per family here, and a sample's label string, the same in both
formats, is built once per refresh and reused from the previous refresh when the label set
did not change. The refresh thread renders while the event loop serves; every millisecond it
holds the GIL is a millisecond a scrape may wait, so the render's cost is scrape latency.

A family outside the common case (a name or label name outside the legacy character set,
exemplars, timestamps, native histograms, a sample without a value) is written by
prometheus_client itself, so nothing is ever written differently.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from prometheus_client.exposition import generate_latest as _library_text
from prometheus_client.metrics_core import Metric
from prometheus_client.openmetrics.exposition import generate_latest as _library_openmetrics
from prometheus_client.utils import floatToGoString

# Names every writer leaves as they are (OpenMetrics' sample names have no ':' either).
_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
_TEXT_TYPES = {"counter": "counter", "gauge": "gauge", "histogram": "histogram",
               "summary": "summary", "info": "gauge", "stateset": "gauge",
               "gaugehistogram": "histogram", "unknown": "untyped"}
_TEXT_SUFFIXES = ("_created", "_gcount", "_gsum")  # moved to gauges of their own, sorted
Labels = dict[tuple[str, ...], dict[tuple[str, ...], str]]  # names -> values -> string


class _Families:
    def __init__(self, families: Iterable[Metric]) -> None:
        self._families = families

    def collect(self) -> Iterable[Metric]:
        return self._families


_QUOTE = '\\"'


def _escape(value: str) -> str:
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


class ExpositionWriter:
    """Writes both formats; keeps the label strings of the last render for the next."""

    def __init__(self) -> None:
        self._labels: Labels = {}
        self._previous: Labels = {}
        self._names: set[str] = set()  # sample names already checked
        self._values: dict[float, str] = {}

    def render(self, families: Iterable[Metric], openmetrics: bool = True
               ) -> tuple[bytes, bytes | None]:
        """(text format, OpenMetrics or None) of the same families."""
        self._previous, self._labels = self._labels, {}
        self._values = {}
        text: list[str] = []
        om: list[str] = []
        for family in families:
            lines = self._samples(family)
            if lines is None:  # outside the common case: prometheus_client writes it
                text.append(_library_text(_Families([family])).decode())  # type: ignore[arg-type]
                if openmetrics:
                    om.append(_library_openmetrics(_Families([family])).decode()
                              .removesuffix("# EOF\n"))
                continue
            all_lines, kept, moved = lines
            name = family.name
            doc = family.documentation.replace("\\", r"\\").replace("\n", r"\n")
            text_name = name + "_total" if family.type == "counter" else (
                name + "_info" if family.type == "info" else name)
            text.append(f"# HELP {text_name} {doc}\n# TYPE {text_name} "
                        f"{_TEXT_TYPES[family.type]}\n")
            text.extend(kept)
            for suffix, moved_lines in sorted(moved.items()):
                text.append(f"# HELP {name}{suffix} {doc}\n# TYPE {name}{suffix} gauge\n")
                text.extend(moved_lines)
            if openmetrics:
                om_doc = doc.replace('"', _QUOTE)
                om.append(f"# HELP {name} {om_doc}\n# TYPE {name} {family.type}\n")
                if family.unit:
                    om.append(f"# UNIT {name} {family.unit}\n")
                om.extend(all_lines)
        self._previous, self._values = {}, {}
        text_body = "".join(text).encode()
        if not openmetrics:
            return text_body, None
        om.append("# EOF\n")
        return text_body, "".join(om).encode()

    def _samples(self, family: Metric
                 ) -> tuple[list[str], list[str], dict[str, list[str]]] | None:
        """(every sample line, the text format's lines in place, its moved lines by suffix),
        or None when the family is not one the fast path writes as prometheus_client does."""
        if family.type not in _TEXT_TYPES or not _NAME.fullmatch(family.name):
            return None
        moves = {family.name + suffix: suffix for suffix in _TEXT_SUFFIXES}
        all_lines: list[str] = []
        kept: list[str] = []
        moved: dict[str, list[str]] = {}
        labels_now, previous = self._labels, self._previous
        values, names = self._values, self._names
        for sample in family.samples:
            if (sample.timestamp is not None or sample.exemplar is not None
                    or sample.native_histogram is not None or sample.value is None):
                return None
            sample_name = sample.name
            if sample_name not in names:
                if not _NAME.fullmatch(sample_name):
                    return None
                names.add(sample_name)
            # by the label names, then the values: tuples of the sample's own strings, not a
            # (name, value) tuple per label (the cache's keys were 60% of its memory)
            names_key = tuple(sample.labels)
            values_key = tuple(sample.labels.values())
            by_values = labels_now.get(names_key)
            if by_values is None:
                by_values = labels_now[names_key] = {}
            labels = by_values.get(values_key)
            if labels is None:
                labels = previous.get(names_key, {}).get(values_key)
                if labels is None:
                    if not all(_NAME.fullmatch(k) and not k.startswith("__")
                               for k in names_key):
                        return None
                    labels = ("{" + ",".join(f'{k}="{_escape(v)}"' for k, v in
                                             sorted(sample.labels.items())) + "}"
                              ) if names_key else ""
                by_values[values_key] = labels
            number = sample.value
            value = values.get(number)
            if value is None:
                value = floatToGoString(number)
                if number != 0:  # 0.0 and -0.0 are equal keys but written differently
                    values[number] = value
            line = f"{sample_name}{labels} {value}\n"
            all_lines.append(line)
            suffix = moves.get(sample_name)
            if suffix is None:
                kept.append(line)
            else:
                moved.setdefault(suffix, []).append(line)
        return all_lines, kept, moved
