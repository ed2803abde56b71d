"""serve's exposition writer against prometheus_client's own writers: byte for byte, both
formats, on a seeded database's families and on every kind of family and hostile value."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeHistogramMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    InfoMetricFamily,
    StateSetMetricFamily,
    SummaryMetricFamily,
    UnknownMetricFamily,
)
from prometheus_client.exposition import generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.samples import Exemplar

from agentmon.collector.collector import ExporterCollector
from agentmon.seed import load
from agentmon.seed.options import SeedOptions
from agentmon.serve.formats import ExpositionWriter


class _Families:
    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> list[Metric]:
        return self.families


def reference(families: list[Metric]) -> tuple[bytes, bytes]:
    registry = _Families(families)
    return generate_latest(registry), generate_openmetrics(registry)  # type: ignore[arg-type]


def assert_same(writer: ExpositionWriter, families: list[Metric]) -> None:
    text, openmetrics = writer.render(families)
    want_text, want_openmetrics = reference(families)
    assert text.decode() == want_text.decode()
    assert openmetrics is not None
    assert openmetrics.decode() == want_openmetrics.decode()


HOSTILE = ['plain', 'quote " in', 'back\\slash', 'new\nline', 'all "\\\n', 'ünïcødé ✓', '',
           '{}=,', 'trailing\\']


def every_kind() -> list[Metric]:
    doc = 'Help with "quotes", a back\\slash\nand a newline.'
    counter = CounterMetricFamily("c", doc, labels=["a", "b"], created=1700000000.5)
    for i, v in enumerate(HOSTILE):
        counter.add_metric([v, str(i)], i * 1.5, created=1700000000.0 + i)
    gauge = GaugeMetricFamily("g", doc, labels=["z", "a"])
    for v, x in zip(HOSTILE, [0.0, -0.0, 0, -0, 1, math.inf, -math.inf, math.nan, 1e22],
                    strict=True):
        gauge.add_metric([v, "x"], x)
    histogram = HistogramMetricFamily("h", doc, labels=["agent"], unit="seconds")
    histogram.add_metric(["a\"b"], [("0.5", 1), ("1.0", 3), ("+Inf", 4)], 2.25)
    histogram.add_metric(["c"], [("0.5", 0), ("1.0", 0), ("+Inf", 0)], 0.0)
    gauge_histogram = GaugeHistogramMetricFamily("gh", doc, labels=["k"])
    gauge_histogram.add_metric(["v"], [("1.0", 2), ("+Inf", 5)], gsum_value=7.5)
    summary = SummaryMetricFamily("s", doc, labels=["k"])
    summary.add_metric(["v"], count_value=3, sum_value=1234567.0)
    info = InfoMetricFamily("build", doc)
    info.add_metric([], {"version": "1.2.3", "python": "3.11"})
    stateset = StateSetMetricFamily("st", doc, labels=["k"])
    stateset.add_metric(["v"], {"on": True, "off": False})
    unknown = UnknownMetricFamily("u", "", labels=["k"])
    unknown.add_metric(["v"], 12345678.0)
    empty = GaugeMetricFamily("empty", "no samples")
    return [counter, gauge, histogram, gauge_histogram, summary, info, stateset, unknown, empty]


def test_every_kind_of_family_and_hostile_value() -> None:
    assert_same(ExpositionWriter(), every_kind())


def fallback_families() -> list[Metric]:
    """Families the fast path leaves to prometheus_client: each in its own way unusual."""
    colon = GaugeMetricFamily("job:rate", "a recording-rule style name")
    colon.add_metric([], 1.0)
    stamped = GaugeMetricFamily("stamped", "a sample with a timestamp")
    stamped.add_metric([], 2.0, timestamp=1700000000.25)
    exemplar = Metric("ex", "a counter with an exemplar", "counter")
    exemplar.add_sample("ex_total", {"k": "v"}, 3.0, exemplar=Exemplar({"trace": "1"}, 1.0))
    odd_label = Metric("odd", "a label name outside the legacy set", "gauge")
    odd_label.add_sample("odd", {"bad-name": "v"}, 1.0)
    reserved = Metric("reserved", "a reserved label name", "gauge")
    reserved.add_sample("reserved", {"__x": "v"}, 1.0)
    odd_sample = Metric("oddsample", "a sample name with a colon", "gauge")
    odd_sample.add_sample("oddsample:x", {}, 1.0)
    return [colon, stamped, exemplar, odd_label, reserved, odd_sample]


def test_unusual_families_are_written_by_the_library_among_fast_ones() -> None:
    families = every_kind()
    unusual = fallback_families()
    mixed = [families[0], *unusual[:3], families[1], *unusual[3:], families[2]]
    assert_same(ExpositionWriter(), mixed)


def test_second_render_reuses_label_strings_and_sees_new_ones() -> None:
    writer = ExpositionWriter()
    assert_same(writer, every_kind())
    changed = every_kind()
    extra = GaugeMetricFamily("g2", "new labels", labels=["a"])
    extra.add_metric(['new "one"'], 4.0)
    extra.add_metric(["plain"], -0.0)  # 0.0 was seen before: -0.0 is still written as such
    assert_same(writer, [*changed, extra])
    assert_same(writer, every_kind()[:2])


def test_text_only_when_openmetrics_is_not_wanted() -> None:
    text, openmetrics = ExpositionWriter().render(every_kind(), openmetrics=False)
    assert openmetrics is None
    assert text == reference(every_kind())[0]


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    db = tmp_path_factory.mktemp("exposition") / "agent_workflow.db"
    load.seed(db, SeedOptions(invocations=1500, seed=3, jobs=1, usage=True))
    return db


def test_seeded_database_exposition_as_serve_renders_it(seeded: Path, tmp_path: Path) -> None:
    collector = ExporterCollector(seeded, checkpoint_path=tmp_path / "ck")
    collector.refresh()
    registry = CollectorRegistry(auto_describe=True)
    registry.register(collector)  # type: ignore[arg-type]
    ProcessCollector(registry=registry)
    writer = ExpositionWriter()
    for _ in range(2):  # the second from the kept label strings
        families = list(registry.collect())
        assert sum(len(f.samples) for f in families) > 500
        assert_same(writer, families)
