"""Every dashboard query against a real Prometheus scraping a real `agentmon serve`.

A seeded database, `agentmon serve` on loopback, Prometheus (Debian's package, the version the
monitoring role installs) scraping it every second under the job name the dashboards select,
with the repository's rules loaded (the Stack health dashboard reads ALERTS). Then
query_dashboards.py runs every panel query with real variable values, as Grafana would.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import query_dashboards

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "roles" / "prometheus" / "files" / "rules"
DASHBOARDS = ROOT / "roles" / "grafana" / "files" / "dashboards"
PROMETHEUS = shutil.which("prometheus")
AGENTMON = Path(sys.executable).parent / "agentmon"
pytestmark = pytest.mark.skipif(
    PROMETHEUS is None or not AGENTMON.exists(),
    reason="needs Debian's prometheus (make check-tools) and the agentmon command (make venv)",
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait(url: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2):  # noqa: S310 (loopback test URL)
                return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


@contextlib.contextmanager
def _running(argv: list[str], log: Path) -> Iterator[None]:
    with log.open("w") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
        try:
            yield
        finally:
            proc.terminate()
            proc.wait(timeout=30)


@pytest.fixture(scope="module")
def prometheus_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    work = tmp_path_factory.mktemp("live")
    db = work / "agent_workflow.db"
    subprocess.run(
        [str(AGENTMON), "seed", "--db", str(db), "--invocations", "3000", "--days", "1",
         "--usage"],
        check=True, capture_output=True,
    )
    exporter, prom = _free_port(), _free_port()
    rules = sorted(str(p) for p in RULES.glob("*.yml"))
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": rules,
        "scrape_configs": [
            {"job_name": "agentmon", "static_configs": [{"targets": [f"127.0.0.1:{exporter}"]}]}
        ],
    }
    (work / "prometheus.yml").write_text(json.dumps(config))
    prices = work / "prices.json"  # the models the seeder writes; the Usage panels read them
    prices.write_text(json.dumps({"models": {
        model: {"input": 3, "output": 15, "cache_read": 0.3, "cache_creation": 3.75}
        for model in ("claude-sonnet-4-5-20250929", "claude-haiku-4-5-20251001",
                      "claude-opus-4-1-20250805")}}))
    serve = [str(AGENTMON), "serve", "--db", str(db), "--refresh.interval", "0.5",
             "--prices.file", str(prices),
             "--web.listen-address", f"127.0.0.1:{exporter}"]
    server = [PROMETHEUS, f"--config.file={work / 'prometheus.yml'}",
              f"--storage.tsdb.path={work / 'tsdb'}", f"--web.listen-address=127.0.0.1:{prom}"]
    with _running(serve, work / "serve.log"), _running(server, work / "prometheus.log"):
        _wait(f"http://127.0.0.1:{exporter}/metrics")
        _wait(f"http://127.0.0.1:{prom}/-/ready")
        url = f"http://127.0.0.1:{prom}"
        _wait_for_samples(url, 'agentmon_db_up{job="agentmon"}', 4)
        yield url


def _wait_for_samples(url: str, selector: str, samples: int, timeout: float = 120) -> None:
    """Until Prometheus holds `samples` scrapes of the selector in the last minute (so rate()
    over 1m has data), however slowly a loaded machine scrapes."""
    api = query_dashboards.Prometheus(url, None, None, None)
    deadline = time.monotonic() + timeout
    while api.series(f"count_over_time({selector}[1m]) >= {samples}") == 0:
        assert time.monotonic() < deadline, f"fewer than {samples} scrapes of {selector} in time"
        time.sleep(0.5)


def test_every_panel_query_returns_series(prometheus_url: str,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    code = query_dashboards.main(["--url", prometheus_url, "--rate-interval", "1m"])
    out = capsys.readouterr()
    assert code == 0, out.err
    lines = [line for line in out.out.splitlines() if " series | " in line]
    boards = [json.loads(p.read_text()) for p in DASHBOARDS.glob("*.json")]
    assert len(lines) == sum(len(p["targets"]) for b in boards for p in b["panels"])
    assert all(" | 0 series | " not in line for line in lines)
    assert "agentmon / Agent: variables instance=" in out.out


def test_a_query_without_data_fails(prometheus_url: str, tmp_path: Path,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    board = json.loads((DASHBOARDS / "overview.json").read_text())
    board["panels"][0]["targets"][0]["expr"] = 'sum(agentmon_invocations_total{agent="nobody"})'
    (tmp_path / "overview.json").write_text(json.dumps(board))
    assert query_dashboards.main([str(tmp_path), "--url", prometheus_url]) == 1
    assert "no series for" in capsys.readouterr().err
