"""``agentmon serve``: flags, --check-config, the refresh thread, shutdown, and the real command."""

from __future__ import annotations

import gzip
import http.client
import logging
import os
import queue
import re
import signal
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import bcrypt
import pytest
from prometheus_client.core import GaugeMetricFamily
from webtls import HASH, PASSWORD, TOKEN, USER, Pki, basic, client_context, get, make_pki

from agentmon.serve import cli as serve
from agentmon.web.config import WebConfig, load_web_config
from agentmon.web.exposition import Exposition
from agentmon.web.reload import WebConfigWatcher
from agentmon.web.server import MetricsServer

SRC = Path(__file__).resolve().parents[1] / "src"


class CountingCollector:
    """A stand-in with the collector's interface: counts refreshes, can be told to fail."""

    def __init__(self, checkpoint: Path, fail_with: Exception | None = None,
                 refresh_seconds: float = 0.0) -> None:
        self.checkpoint = checkpoint
        self.fail_with = fail_with
        self.refresh_seconds = refresh_seconds
        self.refreshes = 0
        self.saved = 0
        self.gate: threading.Event | None = None  # when set up, refresh() waits for it
        self.entered = threading.Event()
        self.closed = False

    def refresh(self) -> None:
        if self.gate is not None:
            self.entered.set()
            self.gate.wait(30)
        if self.refresh_seconds:
            time.sleep(self.refresh_seconds)  # a slow refresh is what is being tested
        if self.fail_with is not None:
            raise self.fail_with
        self.refreshes += 1

    def describe(self) -> Iterator[GaugeMetricFamily]:
        return iter(())

    def collect(self) -> Iterator[GaugeMetricFamily]:
        yield GaugeMetricFamily("agentmon_test_refreshes", "refreshes so far", self.refreshes)

    def save_checkpoint(self) -> None:
        self.checkpoint.write_text(str(self.refreshes))
        self.saved += 1

    def close(self) -> None:
        self.closed = True


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    """serve.main() sets up the 'agentmon' logger; leave it as found for other tests."""
    logger = logging.getLogger("agentmon")
    handlers, level = list(logger.handlers), logger.level
    yield
    logger.handlers[:] = handlers
    logger.setLevel(level)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


def web_config(folder: Path, text: str) -> Path:
    path = folder / "web.yml"
    path.write_text(text)
    path.chmod(0o600)
    return path


def settings(tmp_path: Path, *extra: str) -> serve.Settings:
    args = serve.build_parser().parse_args(
        ["--db", str(tmp_path / "agent_workflow.db"), "--web.listen-address", "127.0.0.1:0",
         *extra])
    return serve.settings_from_args(args)


def check_config(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    code = serve.main(["--db", "x.db", "--check-config", *argv])
    out, err = capsys.readouterr()
    text = (out + err).strip()
    assert "\n" not in text
    assert "Traceback" not in text
    return code, text


# ------------------------------------------------------------------ flags and --check-config


def test_defaults() -> None:
    args = serve.build_parser().parse_args(["--db", "/data/agent_workflow.db"])
    s = serve.settings_from_args(args)
    assert str(s.listen) == "127.0.0.1:9477"
    assert s.interval == 5.0
    assert s.label_cap == 50
    assert s.checkpoint == Path("/data/agent_workflow.db.agentmon-checkpoint")
    assert not s.web.auth_enabled


def test_check_config_ok_without_a_file(capsys: pytest.CaptureFixture[str]) -> None:
    assert check_config(capsys) == (
        0, "agentmon serve: config OK (no web config: plain HTTP, no authentication; "
           "listen 127.0.0.1:9477)")


def test_check_config_ok_with_tls_and_auth(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                           pki: Pki) -> None:
    path = web_config(tmp_path, f"tls_server_config:\n  cert_file: {pki.server_cert}\n"
                                f"  key_file: {pki.server_key}\n"
                                f"basic_auth_users:\n  {USER}: {HASH}\n")
    code, text = check_config(capsys, "--web.config.file", str(path),
                              "--web.listen-address", "[::]:9477")
    assert code == 0
    assert text == (f"agentmon serve: config OK ({path}: TLS TLS12..TLS13, client certificates: "
                    "NoClientCert, basic auth (1 user); listen [::]:9477)")


def test_client_certificates_count_as_authentication(capsys: pytest.CaptureFixture[str],
                                                     tmp_path: Path, pki: Pki) -> None:
    path = web_config(tmp_path, f"tls_server_config:\n  cert_file: {pki.server_cert}\n"
                                f"  key_file: {pki.server_key}\n"
                                "  client_auth_type: RequireAndVerifyClientCert\n"
                                f"  client_ca_file: {pki.ca}\n")
    code, _ = check_config(capsys, "--web.config.file", str(path),
                           "--web.listen-address", ":9477")
    assert code == 0


@pytest.mark.parametrize(("argv", "expected"), [
    (["--web.listen-address", "9477"],
     "agentmon serve: error: bad listen address '9477': expected HOST:PORT"),
    (["--web.listen-address", "0.0.0.0:9477"],
     "agentmon serve: error: refusing to listen on 0.0.0.0:9477 without authentication: set "
     "basic_auth_users or bearer_token_file in --web.config.file, or listen on 127.0.0.1"),
    (["--refresh.interval", "0"],
     "agentmon serve: error: --refresh.interval must be 0.1..86400 seconds"),
    (["--refresh.interval", "nan"],
     "agentmon serve: error: --refresh.interval must be 0.1..86400 seconds"),
    (["--label.cap", "-1"],
     "agentmon serve: error: --label.cap must be 0 (fold every value into 'other') or more"),
    (["--web.config.file", "/nonexistent/web.yml"],
     "agentmon serve: error: cannot read web config /nonexistent/web.yml: "
     "No such file or directory"),
])
def test_check_config_refusals(capsys: pytest.CaptureFixture[str], argv: list[str],
                               expected: str) -> None:
    assert check_config(capsys, *argv) == (1, expected)


def test_http2_is_refused_not_served_as_http11(capsys: pytest.CaptureFixture[str],
                                               tmp_path: Path) -> None:
    path = web_config(tmp_path, "http_server_config:\n  http2: true\n")
    assert check_config(capsys, "--web.config.file", str(path)) == (
        1, f"agentmon serve: error: web config {path}: http_server_config.http2: true is not "
           "supported: agentmon serves HTTP/1.1 only; set it to false or leave it out")
    path.write_text("http_server_config:\n  http2: false\n")
    assert check_config(capsys, "--web.config.file", str(path))[0] == 0


def test_check_config_refuses_plain_text_passwords(capsys: pytest.CaptureFixture[str],
                                                   tmp_path: Path) -> None:
    path = web_config(tmp_path, f"basic_auth_users:\n  {USER}: {PASSWORD}\n")
    code, text = check_config(capsys, "--web.config.file", str(path))
    assert code == 1
    assert text.startswith(f"agentmon serve: error: web config {path}: basic_auth_users.{USER}: "
                           "not a bcrypt hash")
    assert PASSWORD not in text


def test_non_loopback_with_a_bearer_token_is_fine(capsys: pytest.CaptureFixture[str],
                                                  tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text(TOKEN)
    token.chmod(0o640)
    path = web_config(tmp_path, f"bearer_token_file: {token}\n")
    code, text = check_config(capsys, "--web.config.file", str(path),
                              "--web.listen-address", "0.0.0.0:9477")
    assert code == 0
    assert "bearer token" in text
    assert TOKEN not in text


def test_startup_warnings(tmp_path: Path) -> None:
    path = web_config(tmp_path, f"basic_auth_users:\n  {USER}: {HASH}\n")
    remote = serve.settings_from_args(serve.build_parser().parse_args(
        ["--db", "x", "--web.config.file", str(path), "--web.listen-address", ":9477"]))
    assert serve.startup_warnings(remote) == [
        "credentials travel unencrypted to 0.0.0.0:9477: configure tls_server_config or put a "
        "TLS proxy in front"]
    local = serve.settings_from_args(serve.build_parser().parse_args(
        ["--db", "x", "--web.config.file", str(path)]))
    assert serve.startup_warnings(local) == []
    assert serve.startup_warnings(settings(tmp_path)) == [
        "no authentication configured; serving loopback 127.0.0.1:0 only"]


def test_logging_setup_is_idempotent_and_follows_stderr(
        capsys: pytest.CaptureFixture[str]) -> None:
    serve.setup_logging("info")
    serve.setup_logging("warn")
    logger = logging.getLogger("agentmon")
    assert len([h for h in logger.handlers if getattr(h, "agentmon_serve", False)]) == 1
    logging.getLogger("agentmon.serve").info("hidden")
    logging.getLogger("agentmon.serve").warning("shown")
    err = capsys.readouterr().err
    assert "hidden" not in err
    assert re.search(r"^\S+ \S+ WARNING agentmon.serve: shown$", err, re.M)


def test_bad_log_level_is_an_argparse_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        serve.main(["--db", "x", "--log.level", "chatty"])
    assert info.value.code == 2
    assert "invalid choice: 'chatty'" in capsys.readouterr().err


# ------------------------------------------------------------------ run (in process)


def test_run_serves_refreshes_and_saves_the_checkpoint(tmp_path: Path) -> None:
    s = settings(tmp_path, "--refresh.interval", "0.1")
    collector = CountingCollector(tmp_path / "ck")
    stop = threading.Event()
    seen: dict[str, object] = {}

    def ready(server: MetricsServer) -> None:
        status, _, body = get(server.port)
        seen["first"] = (status, body)
        deadline = time.monotonic() + 10
        while collector.refreshes < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
        deadline = time.monotonic() + 10
        while b"agentmon_test_refreshes 1.0" in get(server.port)[2]:
            assert time.monotonic() < deadline, "the exposition never changed"
            time.sleep(0.01)
        seen["later"] = get(server.port)[2]
        stop.set()

    assert serve.run(s, lambda _: collector, ready, stop) == 0
    status, body = seen["first"]  # type: ignore[misc]
    assert status == 200
    assert b"agentmon_test_refreshes 1.0" in body  # refreshed once before serving
    assert b"process_resident_memory_bytes" in body
    assert b"agentmon_test_refreshes 1.0" not in seen["later"]  # type: ignore[operator]
    assert collector.saved == 1
    assert (tmp_path / "ck").read_text() == str(collector.refreshes)


def test_sigterm_stops_cleanly(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    s = settings(tmp_path)
    collector = CountingCollector(tmp_path / "ck")
    before = signal.getsignal(signal.SIGTERM)

    def ready(server: MetricsServer) -> None:
        assert get(server.port)[0] == 200
        os.kill(os.getpid(), signal.SIGTERM)

    with caplog.at_level(logging.INFO, logger="agentmon"):
        assert serve.run(s, lambda _: collector, ready) == 0
    assert collector.saved == 1
    assert signal.getsignal(signal.SIGTERM) is before
    assert "no authentication configured; serving loopback 127.0.0.1:0 only" in caplog.text
    assert "listening on http://127.0.0.1:" in caplog.text
    assert f"stopped (checkpoint: {s.checkpoint})" in caplog.text
    assert collector.closed


def test_run_with_tls_and_auth(tmp_path: Path, pki: Pki,
                               caplog: pytest.LogCaptureFixture) -> None:
    path = web_config(tmp_path, f"tls_server_config:\n  cert_file: {pki.server_cert}\n"
                                f"  key_file: {pki.server_key}\n"
                                "  client_auth_type: VerifyClientCertIfGiven\n"
                                f"  client_ca_file: {pki.ca}\n"
                                f"basic_auth_users:\n  {USER}: {HASH}\n")
    stop = threading.Event()
    statuses: list[int] = []

    def ready(server: MetricsServer) -> None:
        statuses.append(get(server.port, headers=basic(), context=client_context(pki))[0])
        statuses.append(get(server.port, context=client_context(pki, cert=True))[0])
        stop.set()

    with caplog.at_level(logging.INFO, logger="agentmon"):
        code = serve.run(settings(tmp_path, "--web.config.file", str(path)),
                         lambda _: CountingCollector(tmp_path / "ck"), ready, stop)
    assert code == 0
    assert statuses == [200, 401]
    assert "no authentication configured" not in caplog.text
    assert re.search(r"listening on https://127\.0\.0\.1:\d+/metrics \(TLS TLS12\.\.TLS13, "
                     r"client certificates: VerifyClientCertIfGiven, basic auth \(1 user\); "
                     r"refresh every 5s; db ", caplog.text)


def test_verify_if_given_alone_is_not_authentication(tmp_path: Path, pki: Pki,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    path = web_config(tmp_path, f"tls_server_config:\n  cert_file: {pki.server_cert}\n"
                                f"  key_file: {pki.server_key}\n"
                                "  client_auth_type: VerifyClientCertIfGiven\n"
                                f"  client_ca_file: {pki.ca}\n")
    code, text = check_config(capsys, "--web.config.file", str(path),
                              "--web.listen-address", "[::]:9477")
    assert code == 1
    assert "refusing to listen on [::]:9477 without authentication" in text


def test_ipv6_loopback_log_line(tmp_path: Path, caplog: pytest.LogCaptureFixture,
                                capsys: pytest.CaptureFixture[str]) -> None:
    s = serve.settings_from_args(serve.build_parser().parse_args(
        ["--db", str(tmp_path / "db"), "--web.listen-address", "[::1]:0"]))
    stop = threading.Event()
    with caplog.at_level(logging.INFO, logger="agentmon"):
        code = serve.run(s, lambda _: CountingCollector(tmp_path / "ck"),
                         lambda _: stop.set(), stop)
    if code == 1 and "cannot listen" in capsys.readouterr().err:
        pytest.skip("no IPv6 loopback here")
    assert code == 0
    assert re.search(r"listening on http://\[::1\]:\d+/metrics", caplog.text)


class WithoutClose(CountingCollector):
    close = None  # type: ignore[assignment]  # close() is optional


def test_run_in_a_thread_leaves_signals_alone(tmp_path: Path) -> None:
    s = settings(tmp_path)
    collector = WithoutClose(tmp_path / "ck")
    stop = threading.Event()
    codes: list[int] = []
    thread = threading.Thread(
        target=lambda: codes.append(serve.run(s, lambda _: collector, lambda _: stop.set(), stop)))
    thread.start()
    thread.join(30)
    assert codes == [0]


def test_port_in_use(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    s = settings(tmp_path)
    holder = MetricsServer(s.listen, s.web, Exposition())
    try:
        taken = serve.settings_from_args(serve.build_parser().parse_args(
            ["--db", "x", "--web.listen-address", f"127.0.0.1:{holder.port}"]))
        assert serve.run(taken, lambda _: CountingCollector(tmp_path / "ck")) == 1
    finally:
        holder.server_close()
    assert capsys.readouterr().err == (f"agentmon serve: error: cannot listen on 127.0.0.1:"
                                       f"{holder.port}: Address already in use\n")


def test_key_removed_between_check_and_start(tmp_path: Path, pki: Pki,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    key = tmp_path / "server.key"
    key.write_bytes(pki.server_key.read_bytes())
    key.chmod(0o600)
    path = web_config(tmp_path, f"tls_server_config:\n  cert_file: {pki.server_cert}\n"
                                f"  key_file: {key}\n")
    s = settings(tmp_path, "--web.config.file", str(path))
    key.unlink()
    assert serve.run(s, lambda _: CountingCollector(tmp_path / "ck")) == 1
    assert capsys.readouterr().err.startswith("agentmon serve: error: tls_server_config: cannot "
                                              f"load cert_file {pki.server_cert} with key_file")


def test_collector_that_cannot_start(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    def factory(_: serve.Settings) -> CountingCollector:
        raise PermissionError(13, "Permission denied")

    assert serve.run(settings(tmp_path), factory) == 1
    assert capsys.readouterr().err == ("agentmon serve: error: cannot start the collector: "
                                       "[Errno 13] Permission denied\n")


def test_checkpoint_failure_is_reported(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    collector = CountingCollector(tmp_path / "missing-dir" / "ck")
    stop = threading.Event()
    with caplog.at_level(logging.ERROR, logger="agentmon"):
        assert serve.run(settings(tmp_path), lambda _: collector, lambda _: stop.set(),
                         stop) == 1
    assert f"cannot save the checkpoint {tmp_path / 'agent_workflow.db.agentmon-checkpoint'}" \
        in caplog.text


def test_refresh_still_running_at_shutdown(tmp_path: Path, caplog: pytest.LogCaptureFixture,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(serve, "SHUTDOWN_WAIT", 0.05)
    collector = CountingCollector(tmp_path / "ck")
    stop = threading.Event()

    def ready(server: MetricsServer) -> None:
        collector.gate = threading.Event()
        assert collector.entered.wait(10)  # the refresh thread is now stuck in refresh()
        stop.set()

    try:
        with caplog.at_level(logging.ERROR, logger="agentmon"):
            code = serve.run(settings(tmp_path, "--refresh.interval", "0.1"),
                             lambda _: collector, ready, stop)
    finally:
        if collector.gate is not None:
            collector.gate.set()
    assert code == 1
    assert "a refresh is still running after 0.05s; checkpoint not saved" in caplog.text
    assert collector.saved == 0


# ------------------------------------------------------------------ the refresh thread


def test_refresh_failures_are_logged_once_and_old_bytes_kept(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from prometheus_client import CollectorRegistry

    collector = CountingCollector(tmp_path / "ck")
    registry = CollectorRegistry()
    registry.register(collector)  # type: ignore[arg-type]
    exposition = Exposition()
    refresher = serve.Refresher(collector, registry, exposition, 1.0)
    with caplog.at_level(logging.INFO, logger="agentmon"):
        refresher.refresh_once()
        good = exposition.get()[0]
        assert b"agentmon_test_refreshes 1.0" in good
        collector.fail_with = RuntimeError("disk\non fire")
        for _ in range(3):
            refresher.refresh_once()
        assert exposition.get()[0] == good
        collector.fail_with = None
        refresher.refresh_once()
        refresher.refresh_once()
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert [r.getMessage() for r in errors] == ["refresh failed: RuntimeError: disk on fire"]
    assert [r.getMessage() for r in caplog.records].count("refresh recovered") == 1
    assert b"agentmon_test_refreshes 3.0" in exposition.get()[0]


def test_openmetrics_is_rendered_only_while_asked_for(tmp_path: Path) -> None:
    from prometheus_client import CollectorRegistry

    collector = CountingCollector(tmp_path / "ck")
    registry = CollectorRegistry()
    registry.register(collector)  # type: ignore[arg-type]
    exposition = Exposition()
    refresher = serve.Refresher(collector, registry, exposition, 1.0)
    refresher.refresh_once()
    assert exposition.get_openmetrics() is None  # nobody asked: not rendered
    exposition.ask_openmetrics()
    refresher.refresh_once()
    plain, packed = exposition.get_openmetrics()  # type: ignore[misc]
    assert plain.endswith(b"# EOF\n")
    assert gzip.decompress(packed) == plain
    assert samples_openmetrics(plain) == samples_text(exposition.get()[0])
    assert ("agentmon_test_refreshes", frozenset(), 2.0) in samples_openmetrics(plain)
    exposition.OPENMETRICS_WINDOW = 0.0  # the last request is now too old
    refresher.refresh_once()
    assert exposition.get_openmetrics() is None  # dropped, never served stale
    assert b"agentmon_test_refreshes 3.0" in exposition.get()[0]


def test_overrunning_refreshes_do_not_burst(tmp_path: Path) -> None:
    from prometheus_client import CollectorRegistry

    collector = CountingCollector(tmp_path / "ck", refresh_seconds=0.15)
    registry = CollectorRegistry()
    registry.register(collector)  # type: ignore[arg-type]
    refresher = serve.Refresher(collector, registry, Exposition(), 0.1)
    stop = threading.Event()
    thread = threading.Thread(target=refresher.run, args=(stop,))
    thread.start()
    deadline = time.monotonic() + 10
    while refresher.refreshes < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    stop.set()
    thread.join(30)  # a failure guard: stop ends the loop, however long the machine takes
    assert not thread.is_alive()
    assert refresher.refreshes >= 2


# ------------------------------------------------------------------ the real command


def _lines(stream: object, out: queue.Queue[str]) -> None:
    for line in stream:  # type: ignore[attr-defined]
        out.put(line)


def wait_for_line(lines: queue.Queue[str], pattern: str, log: list[str],
                  timeout: float = 60) -> re.Match[str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=max(0.01, deadline - time.monotonic()))
        except queue.Empty:
            break
        log.append(line)
        match = re.search(pattern, line)
        if match:
            return match
    pytest.fail(f"no line matching {pattern!r} in:\n{''.join(log)}")


@pytest.fixture
def migrated_db(tmp_path: Path) -> Path:
    from agentmon.schema.migrate import migrate

    db = tmp_path / "data" / "agent_workflow.db"
    db.parent.mkdir()
    migrate(db)
    return db


class Served:
    """A real `agentmon serve` process: its port, its stderr lines as they come, and `log`,
    every line read so far (the whole of it once the process has stopped)."""

    def __init__(self, proc: subprocess.Popen[str], lines: queue.Queue[str], port: int,
                 log: list[str]) -> None:
        self.proc, self.lines, self.port, self.log = proc, lines, port, log

    def wait_for(self, pattern: str) -> re.Match[str]:
        return wait_for_line(self.lines, pattern, self.log)

    def stop(self) -> None:
        """SIGTERM: the server must exit 0."""
        self.proc.send_signal(signal.SIGTERM)
        assert self.proc.wait(30) == 0


@contextmanager
def agentmon_serve(db: Path, config: Path, checkpoint: Path, *extra: str,
                   scheme: str = "http") -> Iterator[Served]:
    """Run `python -m agentmon.cli serve` on a free loopback port until the block ends; killed
    if the block did not stop it."""
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "agentmon.cli", "serve", "--db", str(db),
         "--web.listen-address", "127.0.0.1:0", "--web.config.file", str(config),
         "--checkpoint.file", str(checkpoint), *extra],
        stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=env)
    lines: queue.Queue[str] = queue.Queue()
    reader = threading.Thread(target=_lines, args=(proc.stderr, lines), daemon=True)
    reader.start()
    log: list[str] = []
    try:
        port = int(wait_for_line(lines, rf"listening on {scheme}://127\.0\.0\.1:(\d+)/metrics",
                                 log).group(1))
        yield Served(proc, lines, port, log)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        reader.join(10)
        while not lines.empty():
            log.append(lines.get())


def test_agentmon_serve_end_to_end(tmp_path: Path, migrated_db: Path, pki: Pki) -> None:
    key = tmp_path / "server.key"
    key.write_bytes(pki.server_key.read_bytes())
    key.chmod(0o640)
    config = web_config(tmp_path, f"tls_server_config:\n  cert_file: {pki.server_cert}\n"
                                  f"  key_file: {key}\n  min_version: TLS12\n"
                                  "http_server_config:\n  headers:\n    X-Frame-Options: deny\n"
                                  f"basic_auth_users:\n  {USER}: {HASH}\n")
    checkpoint = tmp_path / "state" / "agentmon.checkpoint"
    checkpoint.parent.mkdir()
    with agentmon_serve(migrated_db, config, checkpoint, "--refresh.interval", "0.2",
                        scheme="https") as served:
        ctx = client_context(pki)
        status, headers, body = get(served.port, headers=basic(), context=ctx)
        assert status == 200
        assert headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
        assert headers["X-Frame-Options"] == "deny"
        assert re.search(rb"^agentmon_db_up 1\.0$", body, re.M), body[:2000]
        # what Prometheus 2.42 (Debian 12) sends: the text format until OpenMetrics is rendered
        # (from the next refresh on, once asked), then OpenMetrics with the same samples
        prometheus = {**basic(), "Accept": PROMETHEUS_ACCEPT}
        status, headers, om = get(served.port, headers=prometheus, context=ctx)
        assert status == 200
        assert headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
        deadline = time.monotonic() + 30  # a failure guard: refreshes come every 0.2 s
        while headers["Content-Type"].startswith("text/plain") and time.monotonic() < deadline:
            time.sleep(0.05)
            status, headers, om = get(served.port, headers=prometheus, context=ctx)
        assert headers["Content-Type"] == "application/openmetrics-text; version=1.0.0; " \
                                          "charset=utf-8"
        assert om.endswith(b"# EOF\n")
        text = get(served.port, headers=basic(), context=ctx)[2]
        assert samples_openmetrics(om) == samples_text(text), (om[:2000], text[:2000])
        status, headers, _ = get(served.port, context=ctx)
        assert status == 401
        assert headers["WWW-Authenticate"] == 'Basic realm="agentmon"'
        assert get(served.port, headers=basic(password="wrong"), context=ctx)[0] == 401
        served.stop()
    text = "".join(served.log)
    assert checkpoint.exists(), text
    assert "Traceback" not in text
    assert PASSWORD not in text
    assert HASH not in text


# Prometheus 2.42's scrape Accept header (scrape/scrape.go), as Debian 12's sends it
PROMETHEUS_ACCEPT = ("application/openmetrics-text;version=1.0.0,application/openmetrics-text;"
                     "version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1")

Samples = set[tuple[str, frozenset[tuple[str, str]], float]]


def samples_text(body: bytes) -> Samples:
    from prometheus_client.parser import text_string_to_metric_families
    return {(s.name, frozenset(s.labels.items()), s.value)
            for family in text_string_to_metric_families(body.decode()) for s in family.samples}


def samples_openmetrics(body: bytes) -> Samples:
    """Parsed by prometheus_client's strict OpenMetrics parser (it refuses a missing # EOF)."""
    from prometheus_client.openmetrics.parser import text_string_to_metric_families
    return {(s.name, frozenset(s.labels.items()), s.value)
            for family in text_string_to_metric_families(body.decode()) for s in family.samples}


class _PortCatcher(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.ports: queue.Queue[int] = queue.Queue()

    def emit(self, record: logging.LogRecord) -> None:
        match = re.search(r"listening on https?://\S+:(\d+)/metrics", record.getMessage())
        if match:
            self.ports.put(int(match.group(1)))


def test_main_in_process_with_the_real_collector(migrated_db: Path, tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text(TOKEN + "\n")
    token.chmod(0o600)
    config = web_config(tmp_path, f"bearer_token_file: {token}\n")
    checkpoint = tmp_path / "ck"
    catcher = _PortCatcher()
    logging.getLogger("agentmon.serve").addHandler(catcher)
    results: list[tuple[int, bytes]] = []

    def scrape_then_stop() -> None:
        try:
            port = catcher.ports.get(timeout=60)
            results.append(get(port, headers={"Authorization": f"Bearer {TOKEN}"})[:3:2])
            results.append(get(port)[:3:2])
        finally:
            os.kill(os.getpid(), signal.SIGTERM)

    helper = threading.Thread(target=scrape_then_stop)
    helper.start()
    try:
        code = serve.main(["--db", str(migrated_db), "--web.listen-address", "127.0.0.1:0",
                           "--web.config.file", str(config), "--checkpoint.file",
                           str(checkpoint), "--log.level", "debug"])
    finally:
        helper.join(60)
        logging.getLogger("agentmon.serve").removeHandler(catcher)
    assert code == 0
    (status, body), (denied, _) = results
    assert status == 200
    assert re.search(rb"^agentmon_db_up 1\.0$", body, re.M)
    assert denied == 401
    assert checkpoint.exists()


def test_real_collector_checkpoint_not_saved_exits_1(tmp_path: Path,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    """The real collector answers False (it never raises) when it cannot write its checkpoint:
    shutdown must still say so and exit 1."""
    from agentmon.schema.migrate import migrate

    migrate(tmp_path / "agent_workflow.db")
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    s = settings(tmp_path, "--checkpoint.file", str(blocker / "ck"))
    stop = threading.Event()
    with caplog.at_level(logging.ERROR, logger="agentmon"):
        assert serve.run(s, None, lambda _: stop.set(), stop) == 1
    assert f"stopped without saving the checkpoint {blocker / 'ck'}" in caplog.text


# ------------------------------------------------------------------ web config reload (issue 8)


@pytest.fixture
def quick_watch(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(serve, "WATCH_INTERVAL", 0.05)


def replace_file(path: Path, text: str | bytes, mode: int = 0o600) -> None:
    """Write beside, then rename over: what config management tools do."""
    tmp = path.with_name(path.name + ".new")
    if isinstance(text, str):
        tmp.write_text(text)
    else:
        tmp.write_bytes(text)
    tmp.chmod(mode)
    tmp.replace(path)


def wait_until(check: object, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, "condition never became true"
        time.sleep(0.05)


@contextmanager
def serving_in_thread(s: serve.Settings, tmp_path: Path) -> Iterator[MetricsServer]:
    ready: queue.Queue[MetricsServer] = queue.Queue()
    stop = threading.Event()
    codes: list[int] = []
    thread = threading.Thread(target=lambda: codes.append(serve.run(
        s, lambda _: CountingCollector(tmp_path / "ck"), ready.put, stop)))
    thread.start()
    try:
        yield ready.get(timeout=30)
    finally:
        stop.set()
        thread.join(30)
    assert codes == [0]


def test_passwords_are_reloaded_when_the_file_changes(tmp_path: Path, quick_watch: None,
                                                      caplog: pytest.LogCaptureFixture,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    polls = 0
    real_poll = WebConfigWatcher.poll

    def counted_poll(self: WebConfigWatcher, force: bool = False) -> bool:
        nonlocal polls
        result = real_poll(self, force)
        polls += 1
        return result

    monkeypatch.setattr(WebConfigWatcher, "poll", counted_poll)
    path = web_config(tmp_path, f"basic_auth_users:\n  {USER}: {HASH}\n")
    new_hash = bcrypt.hashpw(b"rotated-pass", bcrypt.gensalt(rounds=4)).decode()
    with caplog.at_level(logging.INFO, logger="agentmon"), serving_in_thread(
            settings(tmp_path, "--web.config.file", str(path)), tmp_path) as server:
        assert get(server.port, headers=basic())[0] == 200
        replace_file(path, f"basic_auth_users:\n  {USER}: {new_hash}\n")
        wait_until(lambda: get(server.port, headers=basic(password="rotated-pass"))[0] == 200)
        assert get(server.port, headers=basic())[0] == 401
        # a broken file keeps the running config, with one log line
        replace_file(path, "basic_auth_users: [unclosed\n")
        wait_until(lambda: "not reloaded" in caplog.text)
        after = polls
        wait_until(lambda: polls >= after + 3)  # several more polls of the same broken file
        assert caplog.text.count("not reloaded") == 1
        assert get(server.port, headers=basic(password="rotated-pass"))[0] == 200
        replace_file(path, f"basic_auth_users:\n  {USER}: {PASSWORD}\n")  # plain text
        wait_until(lambda: caplog.text.count("not reloaded") == 2)
        assert get(server.port, headers=basic(password="rotated-pass"))[0] == 200
    lines = [r.getMessage() for r in caplog.records if "not reloaded" in r.getMessage()]
    assert len(lines) == 2
    assert lines[0].startswith(f"web config not reloaded, the previous one stays in use: web "
                               f"config {path}: invalid YAML at line 2")
    assert PASSWORD not in caplog.text
    assert "web config reloaded (plain HTTP, basic auth (1 user))" in caplog.text


def test_certificates_are_reloaded(tmp_path: Path, quick_watch: None, pki: Pki) -> None:
    cert, key = tmp_path / "server.crt", tmp_path / "server.key"
    replace_file(cert, pki.server_cert.read_bytes(), 0o644)
    replace_file(key, pki.server_key.read_bytes())
    path = web_config(tmp_path, f"tls_server_config:\n  cert_file: {cert}\n  key_file: {key}\n"
                                f"basic_auth_users:\n  {USER}: {HASH}\n")
    renewed = make_pki(tmp_path / "renewed")
    with serving_in_thread(settings(tmp_path, "--web.config.file", str(path)),
                           tmp_path) as server:
        assert get(server.port, headers=basic(), context=client_context(pki))[0] == 200
        keep_alive = http.client.HTTPSConnection("127.0.0.1", server.port, timeout=10,
                                                 context=client_context(pki))
        keep_alive.request("GET", "/metrics", headers=basic())
        assert keep_alive.getresponse().read()
        replace_file(key, renewed.server_key.read_bytes())
        replace_file(cert, renewed.server_cert.read_bytes(), 0o644)

        def renewed_cert_served() -> bool:
            try:
                return get(server.port, headers=basic(),
                           context=client_context(renewed))[0] == 200
            except ssl.SSLError:
                return False

        wait_until(renewed_cert_served)
        with pytest.raises(ssl.SSLCertVerificationError):
            get(server.port, headers=basic(), context=client_context(pki))
        keep_alive.request("GET", "/metrics", headers=basic())  # open connections carry on
        assert keep_alive.getresponse().status == 200
        keep_alive.close()


def test_a_reload_that_drops_authentication_off_loopback_is_refused(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = web_config(tmp_path, f"basic_auth_users:\n  {USER}: {HASH}\n")
    remote = serve.settings_from_args(serve.build_parser().parse_args(
        ["--db", "x", "--web.config.file", str(path), "--web.listen-address", ":9477"]))
    applied: list[object] = []
    watcher = WebConfigWatcher(remote.web, applied.append,
                               lambda web: serve.check_authentication(remote.listen, web))
    replace_file(path, "http_server_config:\n  headers:\n    X-Frame-Options: deny\n")
    with caplog.at_level(logging.INFO, logger="agentmon"):
        assert not watcher.poll()
        assert not watcher.poll()  # unchanged since: no second line, no second try
        assert watcher.poll(force=True) is False  # SIGHUP tries again
    assert applied == []
    assert caplog.messages == [
        "web config not reloaded, the previous one stays in use: refusing to listen on "
        "0.0.0.0:9477 without authentication: set basic_auth_users or bearer_token_file in "
        "--web.config.file, or listen on 127.0.0.1"] * 2


def test_watcher_follows_the_files_a_new_config_names(tmp_path: Path,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    path = web_config(tmp_path, f"basic_auth_users:\n  {USER}: {HASH}\n")
    applied: list[WebConfig] = []
    watcher = WebConfigWatcher(load_web_config(path), applied.append)
    assert not watcher.poll()
    token = tmp_path / "token"
    replace_file(token, TOKEN + "\n")
    replace_file(path, f"bearer_token_file: {token}\n")
    assert watcher.poll()
    assert applied[-1].bearer_token == TOKEN.encode()
    assert not watcher.poll()
    replace_file(token, "another-token-0123456789\n")  # only the token file changes
    assert watcher.poll()
    assert applied[-1].bearer_token == b"another-token-0123456789"
    assert watcher.reloads == 2
    nothing = WebConfigWatcher(WebConfig(), applied.append)
    caplog.clear()  # the reloads above log too when an earlier test left the logger at INFO
    with caplog.at_level(logging.INFO, logger="agentmon"):
        assert not nothing.poll()
        assert not nothing.poll(force=True)
    assert caplog.messages == ["no --web.config.file to reload"]


def test_sighup_reloads_and_does_not_stop_the_server(tmp_path: Path, migrated_db: Path) -> None:
    """SIGHUP used to kill agentmon serve (Python's default action); now it re-reads."""
    config = web_config(tmp_path, f"basic_auth_users:\n  {USER}: {HASH}\n")
    with agentmon_serve(migrated_db, config, tmp_path / "ck") as served:
        served.proc.send_signal(signal.SIGHUP)
        served.wait_for(r"INFO agentmon\.web: web config reloaded \(plain HTTP, basic "
                        r"auth \(1 user\)\)$")
        assert served.proc.poll() is None
        assert get(served.port, headers=basic())[0] == 200
        served.stop()
