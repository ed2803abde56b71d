"""``agentmon serve``: refresh the collector in the background, serve its cached exposition.

One refresh thread calls ``collector.refresh()`` every ``--refresh.interval`` seconds and then
renders the exposition once (text format, and OpenMetrics while clients ask for it; each plain
and gzip); HTTP requests only authenticate and send those bytes, so a scrape never waits on
SQLite. SIGTERM/SIGINT stop the server, let a running refresh finish, save the checkpoint and
exit 0. SIGHUP, or a change to the web config or a file it names, re-reads the web config (a
broken one keeps the running one). Every fault a user can cause (bad flag, bad web config, port
in use) ends with one line on stderr and exit 1.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import FrameType
from typing import Any, Protocol

from prometheus_client import CollectorRegistry
from prometheus_client.process_collector import ProcessCollector

from agentmon.collector.prices import Prices
from agentmon.collector.prices import load as load_prices
from agentmon.serve.formats import ExpositionWriter
from agentmon.web.address import ListenAddress, ListenAddressError, parse_listen_address
from agentmon.web.config import WebConfig, WebConfigError, load_web_config
from agentmon.web.exposition import Exposition
from agentmon.web.reload import WebConfigWatcher
from agentmon.web.server import MetricsServer

DEFAULT_LISTEN = "127.0.0.1:9477"
LOG_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warn": logging.WARNING,
              "warning": logging.WARNING, "error": logging.ERROR}
MIN_INTERVAL = 0.1
MAX_INTERVAL = 86400.0
SHUTDOWN_WAIT = 30.0  # longest wait for a running refresh before giving up on the checkpoint
WATCH_INTERVAL = 1.0  # how often the web config's files are checked for changes

log = logging.getLogger("agentmon.serve")


class Collector(Protocol):
    """What serve needs from ``agentmon.collector.ExporterCollector``."""

    def refresh(self) -> Any: ...
    def collect(self) -> Iterable[Any]: ...
    def describe(self) -> Iterable[Any]: ...
    def save_checkpoint(self) -> Any: ...


CollectorFactory = Callable[["Settings"], Collector]


@dataclass(frozen=True)
class Settings:
    db: Path
    listen: ListenAddress
    web: WebConfig
    checkpoint: Path
    interval: float
    label_cap: int
    prices: Prices = field(default_factory=Prices)
    ingest_socket: Path | None = None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="agentmon serve",
        description="Serve Prometheus metrics computed incrementally from the agentmon "
        "database. Authentication and TLS come from --web.config.file (the Prometheus "
        "exporter-toolkit format plus bearer_token_file).")
    parser.add_argument("--db", required=True, type=Path, help="path to agent_workflow.db")
    parser.add_argument("--web.listen-address", dest="listen", default=DEFAULT_LISTEN,
                        metavar="HOST:PORT",
                        help="address to listen on; [::1]:PORT for IPv6 "
                        f"(default {DEFAULT_LISTEN})")
    parser.add_argument("--web.config.file", dest="web_config", type=Path, default=None,
                        metavar="FILE", help="web config: basic_auth_users, tls_server_config, "
                        "http_server_config, bearer_token_file")
    parser.add_argument("--checkpoint.file", dest="checkpoint", type=Path, default=None,
                        metavar="PATH", help="collector state saved on shutdown and loaded at "
                        "start (default: <db>.agentmon-checkpoint beside the database)")
    parser.add_argument("--refresh.interval", dest="interval", type=float, default=5.0,
                        metavar="SECONDS", help="seconds between refreshes (default 5)")
    parser.add_argument("--label.cap", dest="label_cap", type=int, default=50, metavar="N",
                        help="distinct values per label before the rest fold into 'other' "
                        "(default 50)")
    prices = os.environ.get("AGENTMON_PRICES_FILE") or None
    parser.add_argument("--prices.file", dest="prices", type=Path,
                        default=None if prices is None else Path(prices), metavar="FILE",
                        help="JSON price table (USD per million tokens per model and token type,"
                        " optional daily budget; env AGENTMON_PRICES_FILE); without it no price"
                        " and no cost is shown")
    ingest = os.environ.get("AGENTMON_INGEST_SOCKET") or None
    parser.add_argument("--ingest.socket", dest="ingest_socket", type=Path,
                        default=None if ingest is None else Path(ingest), metavar="PATH",
                        help="the ingest service's socket (agentmon ingest; env"
                        " AGENTMON_INGEST_SOCKET): agentmon_ingest_up says whether it can store"
                        " the hooks' events")
    parser.add_argument("--log.level", dest="log_level", default="info",
                        choices=sorted(LOG_LEVELS), help="log level (default info)")
    parser.add_argument("--check-config", action="store_true",
                        help="validate the flags and the web config, print one line, exit 0/1")
    return parser


def settings_from_args(args: argparse.Namespace) -> Settings:
    """Validate everything that does not need the network; raises ValueError subclasses."""
    if not MIN_INTERVAL <= args.interval <= MAX_INTERVAL:
        raise ValueError(f"--refresh.interval must be {MIN_INTERVAL}..{MAX_INTERVAL:g} seconds")
    if args.label_cap < 0:
        raise ValueError("--label.cap must be 0 (fold every value into 'other') or more")
    listen = parse_listen_address(args.listen)
    web = load_web_config(args.web_config)
    check_authentication(listen, web)
    checkpoint = args.checkpoint or args.db.with_name(args.db.name + ".agentmon-checkpoint")
    return Settings(args.db, listen, web, checkpoint, args.interval, args.label_cap,
                    load_prices(args.prices), args.ingest_socket)


def check_authentication(listen: ListenAddress, web: WebConfig) -> None:
    """Off loopback, every request must authenticate: at startup and on every reload."""
    if not listen.is_loopback and not authenticates(web):
        raise ValueError(f"refusing to listen on {listen} without authentication: set "
                         "basic_auth_users or bearer_token_file in --web.config.file, or listen "
                         "on 127.0.0.1")


def authenticates(web: WebConfig) -> bool:
    """Whether every request must prove who it is (header credentials or a verified cert)."""
    return web.auth_enabled or (
        web.tls is not None and web.tls.client_auth_type == "RequireAndVerifyClientCert")


def startup_warnings(settings: Settings) -> list[str]:
    if not authenticates(settings.web):
        return [f"no authentication configured; serving loopback {settings.listen} only"]
    if settings.web.tls is None and not settings.listen.is_loopback:
        return [f"credentials travel unencrypted to {settings.listen}: configure "
                "tls_server_config or put a TLS proxy in front"]
    return []


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.log_level)
    try:
        settings = settings_from_args(args)
    except (WebConfigError, ListenAddressError, ValueError) as exc:
        print(f"agentmon serve: error: {exc}", file=sys.stderr)
        return 1
    if args.check_config:
        source = settings.web.path or "no web config"
        print(f"agentmon serve: config OK ({source}: {settings.web.summary()}; "
              f"listen {settings.listen})")
        return 0
    return run(settings)


def setup_logging(level: str) -> None:
    """One line per event on stderr (journald adds host and time stamps of its own)."""
    logger = logging.getLogger("agentmon")
    for handler in [h for h in logger.handlers if getattr(h, "agentmon_serve", False)]:
        logger.removeHandler(handler)
    handler = _StderrHandler()
    handler.agentmon_serve = True  # type: ignore[attr-defined]
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logger.addHandler(handler)
    logger.setLevel(LOG_LEVELS[level])


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stderr`` is at the time of the event."""

    @property  # type: ignore[override]
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:
        pass


def _default_collector(settings: Settings) -> Collector:
    from agentmon.collector.collector import ExporterCollector

    return ExporterCollector(settings.db, checkpoint_path=settings.checkpoint,
                             label_cap=settings.label_cap, prices=settings.prices,
                             ingest_socket=settings.ingest_socket,
                             logger=logging.getLogger("agentmon.collector"))


class Refresher:
    """Refreshes the collector and renders the exposition, on a fixed schedule."""

    def __init__(self, collector: Collector, registry: CollectorRegistry,
                 exposition: Exposition, interval: float) -> None:
        self.collector = collector
        self.registry = registry
        self.exposition = exposition
        self.interval = interval
        self.refreshes = 0
        self._last_error: str | None = None
        self._writer = ExpositionWriter()

    def refresh_once(self) -> None:
        started = time.perf_counter()
        try:
            self.collector.refresh()
            # both formats from one collection: the same samples
            body, openmetrics = self._writer.render(self.registry.collect(),
                                                    self.exposition.openmetrics_wanted())
        except Exception as exc:  # a bug must not stop the refreshes nor the server
            self._report(f"refresh failed: {type(exc).__name__}: {_one_line(exc)}")
            log.debug("refresh failure detail", exc_info=True)
            return
        self.exposition.set(body, openmetrics)
        self.refreshes += 1
        self._report(None)
        log.debug("refresh %d took %.1f ms, %d bytes", self.refreshes,
                  (time.perf_counter() - started) * 1000, len(body))

    def _report(self, error: str | None) -> None:
        """Log state changes only, not the same failure every interval."""
        if error != self._last_error:
            if error is not None:
                log.error("%s", error)
            else:
                log.info("refresh recovered")
        self._last_error = error

    def run(self, stop: threading.Event) -> None:
        deadline = time.monotonic() + self.interval
        while not stop.wait(max(0.0, deadline - time.monotonic())):
            self.refresh_once()
            deadline += self.interval
            now = time.monotonic()
            if deadline < now:  # a refresh overran: skip the missed slots, do not burst
                deadline = now + self.interval


def run(settings: Settings, collector_factory: CollectorFactory | None = None,
        on_ready: Callable[[MetricsServer], None] | None = None,
        stop: threading.Event | None = None) -> int:
    """Serve until SIGTERM/SIGINT (or ``stop`` is set). Returns the exit code."""
    stop = stop or threading.Event()
    try:
        ssl_context = settings.web.tls.context() if settings.web.tls else None
        server = MetricsServer(settings.listen, settings.web, Exposition(), ssl_context)
    except WebConfigError as exc:
        print(f"agentmon serve: error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"agentmon serve: error: cannot listen on {settings.listen}: "
              f"{exc.strerror or exc}", file=sys.stderr)
        return 1
    try:
        try:
            collector = (collector_factory or _default_collector)(settings)
        except (OSError, ValueError) as exc:
            print(f"agentmon serve: error: cannot start the collector: {_one_line(exc)}",
                  file=sys.stderr)
            return 1
        registry = CollectorRegistry(auto_describe=True)
        registry.register(collector)  # type: ignore[arg-type]
        ProcessCollector(registry=registry)
        refresher = Refresher(collector, registry, server.exposition, settings.interval)
        return _serve(settings, server, refresher, stop, on_ready)
    finally:
        server.server_close()


def _serve(settings: Settings, server: MetricsServer, refresher: Refresher,
           stop: threading.Event, on_ready: Callable[[MetricsServer], None] | None) -> int:
    hangup = threading.Event()
    previous = _install_signal_handlers(stop, hangup)
    watcher = WebConfigWatcher(
        settings.web, lambda web: server.reload(web, web.tls.context() if web.tls else None),
        lambda web: check_authentication(settings.listen, web))
    try:
        for warning in startup_warnings(settings):
            log.warning("%s", warning)
        refresher.refresh_once()  # the first scrape already sees data
        worker = threading.Thread(target=refresher.run, args=(stop,), name="refresh",
                                  daemon=True)
        http = threading.Thread(target=server.serve_forever, name="http", daemon=True)
        with _signals_blocked(previous):  # threads inherit the mask: signals go to this thread
            worker.start()
            http.start()
        scheme = "https" if settings.web.tls else "http"
        actual = replace(settings.listen, port=server.port)
        log.info("listening on %s://%s/metrics (%s; refresh every %gs; db %s)", scheme, actual,
                 settings.web.summary(), settings.interval, settings.db)
        if on_ready is not None:
            on_ready(server)
        while not stop.wait(WATCH_INTERVAL):  # a signal taken by another thread is seen soon
            force = hangup.is_set()
            hangup.clear()
            watcher.poll(force)
        log.info("shutting down")
        server.shutdown()
        http.join()
        worker.join(SHUTDOWN_WAIT)
        if worker.is_alive():
            log.error("a refresh is still running after %gs; checkpoint not saved",
                      SHUTDOWN_WAIT)
            return 1
        try:
            # The collector logs its own failures and answers False instead of raising.
            saved = refresher.collector.save_checkpoint() is not False
            close = getattr(refresher.collector, "close", None)
            if close is not None:
                close()
        except Exception as exc:  # report, but still stop
            log.error("cannot save the checkpoint %s: %s", settings.checkpoint, _one_line(exc))
            return 1
        if not saved:
            log.error("stopped without saving the checkpoint %s", settings.checkpoint)
            return 1
        log.info("stopped (checkpoint: %s)", settings.checkpoint)
        return 0
    finally:
        _restore_signal_handlers(previous)


def _install_signal_handlers(stop: threading.Event, hangup: threading.Event) -> dict[int, Any]:
    if threading.current_thread() is not threading.main_thread():
        return {}

    def handler(signum: int, frame: FrameType | None) -> None:
        (hangup if signum == signal.SIGHUP else stop).set()

    return {sig: signal.signal(sig, handler)
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}


@contextmanager
def _signals_blocked(handled: dict[int, Any]) -> Iterator[None]:
    if not handled:
        yield
        return
    old = signal.pthread_sigmask(signal.SIG_BLOCK, set(handled))
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def _restore_signal_handlers(previous: dict[int, Any]) -> None:
    for sig, old in previous.items():
        signal.signal(sig, old)


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__
