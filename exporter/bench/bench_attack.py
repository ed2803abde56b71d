"""Attack benchmark of `agentmon serve`'s HTTP layer: hostile clients against a real server.

A real `agentmon serve` process (TLS, basic auth at bcrypt cost 10, a seeded database) on
127.0.0.1 is attacked from a separate process while a scraper, as Prometheus does every
interval, makes an authenticated scrape on a NEW connection once a second:

* attack phase (``--duration`` s): ``--slow`` TLS clients that finish the handshake and then
  send a partial request, one header line every 5 s; ``--idle`` plain TCP sockets that send
  nothing; ``--wrong`` keep-alive TLS clients sending a new wrong password in every request.
  Every attacker reconnects 0.25-0.75 s after the server closes it.
* header-flood phase (``--flood-seconds`` s): ``--flood`` TLS clients each sending a request
  line and up to 100 header lines of 64 KiB, never finishing; reconnecting when closed.

The attackers run in their own process at nice 10: they stand for other machines, and on a
2-core box their own CPU (a thousand Python TLS clients) would otherwise be measured as
server latency. Reported per server: scrapes that succeeded, their latency (connect + TLS +
request; a failed scrape counts with the time it took), the server's RSS and CPU, and the
work behind that CPU: how far the attackers get in a phase depends on the machine's load, so
two servers' raw CPU may compare different amounts of work. The server runs under
``serve_probe.py``, which counts in the server process the connections it accepted, the TLS
handshakes it completed, the passwords it checked with bcrypt (each wrong password is a new
one) and the responses it wrote by status, with the CPU of the checks, of the handshakes and
of the rest; the table shows them and the CPU per unit of each.
``--before REF`` runs the same phases against the server of a git revision (``git archive``),
side by side in one run. A p99 needs many scrapes: the scraper makes one every
``--scrape-interval`` s (0.25: 240 per attack phase, 80 per flood phase), and ``--rounds N``
(3) repeats every server's phases in turn, in ABBA order (before, after, after, before, ...),
so a drift of the machine's load falls on both alike. Each row shows the median of the
rounds (p50 and p99 of each round's scrapes, RSS, CPU) and, with ``--before``, the ratio
after / before of those medians; counts are summed over the rounds. Traffic goes to
127.0.0.1 only. Not part of `make test`: the machine is shared and noisy.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import http.client
import json
import math
import multiprocessing
import os
import random
import resource
import secrets
import shutil
import socket
import ssl
import statistics
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import bcrypt

HERE = Path(__file__).resolve().parent
SRC = HERE.parent / "src"
REPO = HERE.parent.parent
USER, PASSWORD = "prometheus", "bench-password"
SCRAPE_TIMEOUT = 10.0  # Prometheus' default scrape_timeout
ATTACKER_NICE = 10


# ---------------------------------------------------------------- setup


def raise_fd_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def make_tls(folder: Path) -> tuple[Path, Path]:
    cert, key = folder / "server.crt", folder / "server.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", str(key), "-out",
                    str(cert), "-days", "2", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=IP:127.0.0.1"], check=True, capture_output=True)
    key.chmod(0o600)
    return cert, key


def make_config(folder: Path, cert: Path, key: Path) -> Path:
    hashed = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=10)).decode()
    config = folder / "web-config.yml"
    config.write_text(f"tls_server_config:\n  cert_file: {cert}\n  key_file: {key}\n"
                      "http_server_config:\n  headers:\n    X-Frame-Options: deny\n"
                      f"basic_auth_users:\n  {USER}: {hashed}\n")
    config.chmod(0o600)
    return config


def source_at(ref: str, folder: Path) -> Path:
    """exporter/src of a git revision, extracted into folder."""
    archive = subprocess.run(["git", "-C", str(REPO), "archive", "--format=tar", ref,
                              "exporter/src"], check=True, capture_output=True).stdout
    tar_path = folder / "src.tar"
    tar_path.write_bytes(archive)
    with tarfile.open(tar_path) as tar:
        tar.extractall(folder, filter="data")
    return folder / "exporter" / "src"


def free_port() -> int:
    with closing(socket.socket()) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Probe:
    """The counters of a server run by serve_probe.py: each ask() returns them as they are."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._lines = sock.makefile("rb")

    def ask(self) -> dict[str, Any]:
        self._sock.sendall(b"?")
        line = self._lines.readline()
        if not line:
            raise RuntimeError("the server's probe did not answer")
        return json.loads(line)  # type: ignore[no-any-return]


@contextmanager
def server(src: Path, db: Path, config: Path, work: Path
           ) -> Iterator[tuple[int, int, Probe]]:
    port = free_port()
    log = open(work / f"serve-{port}.log", "wb")  # noqa: SIM115
    ours, theirs = socket.socketpair()
    proc = subprocess.Popen(
        [sys.executable, str(HERE / "serve_probe.py"), str(theirs.fileno()), "serve", "--db",
         str(db), "--web.listen-address", f"127.0.0.1:{port}", "--web.config.file",
         str(config), "--checkpoint.file", str(work / f"ck-{port}"), "--refresh.interval", "5"],
        stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONPATH": str(src)},
        pass_fds=(theirs.fileno(),))
    theirs.close()
    ours.settimeout(30)
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"server exited: {(work / f'serve-{port}.log').read_text()}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        yield port, proc.pid, Probe(ours)
    finally:
        ours.close()
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def rss_mb(pid: int, field_name: str = "VmRSS") -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field_name + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# ---------------------------------------------------------------- attackers (own process)


def _client_context() -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE  # the attacker does not care who the server is
    return ctx


async def _slow(port: int, stats: dict[str, int], stop: float) -> None:
    ctx = _client_context()
    while time.monotonic() < stop:
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=ctx,
                                                           ssl_handshake_timeout=20)
        except (OSError, TimeoutError, ssl.SSLError):
            stats["refused"] += 1
            await asyncio.sleep(random.uniform(0.25, 0.75))
            continue
        stats["connects"] += 1
        try:
            writer.write(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n")
            n = 0
            while time.monotonic() < stop:
                try:
                    data = await asyncio.wait_for(reader.read(4096), 5)
                except TimeoutError:
                    writer.write(f"X-Slow-{n}: x\r\n".encode())
                    n += 1
                    continue
                del data  # closed, or answered (408): start again
                break
        except (OSError, ssl.SSLError):
            pass
        finally:
            writer.transport.abort()
        stats["closed"] += 1
        await asyncio.sleep(random.uniform(0.25, 0.75))


async def _idle(port: int, stats: dict[str, int], stop: float) -> None:
    while time.monotonic() < stop:
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            stats["refused"] += 1
            await asyncio.sleep(random.uniform(0.25, 0.75))
            continue
        stats["connects"] += 1
        try:
            await asyncio.wait_for(reader.read(4096), max(0.1, stop - time.monotonic()))
        except (OSError, TimeoutError):
            pass
        finally:
            writer.transport.abort()
        stats["closed"] += 1
        await asyncio.sleep(random.uniform(0.25, 0.75))


async def _wrong(port: int, stats: dict[str, int], stop: float) -> None:
    ctx = _client_context()
    while time.monotonic() < stop:
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=ctx,
                                                           ssl_handshake_timeout=20)
        except (OSError, TimeoutError, ssl.SSLError):
            stats["refused"] += 1
            await asyncio.sleep(random.uniform(0.25, 0.75))
            continue
        stats["connects"] += 1
        try:
            while time.monotonic() < stop:
                token = base64.b64encode(f"{USER}:{secrets.token_hex(8)}".encode()).decode()
                writer.write(f"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                             f"Authorization: Basic {token}\r\n\r\n".encode())
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                await reader.readexactly(length)
                stats["requests"] += 1
                if b"Connection: close" in head:
                    break
        except (OSError, TimeoutError, ssl.SSLError, asyncio.IncompleteReadError,
                asyncio.LimitOverrunError):
            pass
        finally:
            writer.transport.abort()
        stats["closed"] += 1
        await asyncio.sleep(random.uniform(0.25, 0.75))


async def _flood(port: int, stats: dict[str, int], stop: float) -> None:
    ctx = _client_context()
    line = b"X-Flood: " + b"a" * (64 * 1024 - 20) + b"\r\n"
    while time.monotonic() < stop:
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=ctx,
                                                           ssl_handshake_timeout=20)
        except (OSError, TimeoutError, ssl.SSLError):
            stats["refused"] += 1
            await asyncio.sleep(random.uniform(0.1, 0.3))
            continue
        stats["connects"] += 1
        try:
            writer.write(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n")
            for _ in range(99):
                writer.write(line)
                await asyncio.wait_for(writer.drain(), max(0.1, stop - time.monotonic()))
                stats["bytes"] += len(line)
            await asyncio.wait_for(reader.read(4096), max(0.1, stop - time.monotonic()))
        except (OSError, TimeoutError, ssl.SSLError):
            pass
        finally:
            writer.transport.abort()
        stats["closed"] += 1
        await asyncio.sleep(random.uniform(0.1, 0.3))


async def _attack(port: int, shape: dict[str, int], seconds: float) -> dict[str, dict[str, int]]:
    stop = time.monotonic() + seconds
    kinds = {"slow": _slow, "idle": _idle, "wrong": _wrong, "flood": _flood}
    stats = {kind: {"connects": 0, "closed": 0, "refused": 0, "requests": 0, "bytes": 0}
             for kind in kinds}
    tasks = [asyncio.create_task(kinds[kind](port, stats[kind], stop))
             for kind, count in shape.items() for _ in range(count)]
    await asyncio.gather(*tasks, return_exceptions=True)
    return {kind: s for kind, s in stats.items() if shape.get(kind)}


def _attacker(port: int, shape: dict[str, int], seconds: float, out: multiprocessing.Queue
              ) -> None:  # type: ignore[type-arg]
    # The attackers stand for other machines: at nice 10, the CPU of a thousand Python TLS
    # clients on this 2-core machine does not pass for server latency (the server, its bcrypt
    # thread and the scraper run at normal priority).
    os.nice(ATTACKER_NICE)
    out.put(asyncio.run(_attack(port, shape, seconds)))


# ---------------------------------------------------------------- scraper and measure


@dataclass
class PhaseResult:
    scrapes: int = 0
    ok: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    rss_start_mb: float = 0.0
    rss_max_mb: float = 0.0
    rss_peak_mb: float = 0.0  # VmHWM at the end
    cpu_s: float = 0.0
    work: dict[str, float] = field(default_factory=dict)  # serve_probe's counters' growth
    statuses: dict[str, int] = field(default_factory=dict)  # responses written, by status
    attackers: dict[str, dict[str, int]] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)


def scrape_once(port: int, ctx: ssl.SSLContext) -> tuple[bool, float, str]:
    token = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    start = time.perf_counter()
    conn = http.client.HTTPSConnection("127.0.0.1", port, timeout=SCRAPE_TIMEOUT, context=ctx)
    try:
        conn.request("GET", "/metrics", headers={"Authorization": f"Basic {token}",
                                                 "Accept-Encoding": "gzip"})
        resp = conn.getresponse()
        body = resp.read()
        ok = resp.status == 200 and bool(body)
        why = "" if ok else f"HTTP {resp.status}"
    except (OSError, http.client.HTTPException, ssl.SSLError) as exc:
        ok, why = False, type(exc).__name__
    finally:
        conn.close()
    return ok, (time.perf_counter() - start) * 1000, why


def run_phase(port: int, pid: int, probe: Probe, shape: dict[str, int], seconds: float,
              interval: float, ctx: ssl.SSLContext, ramp: float) -> PhaseResult:
    result = PhaseResult(rss_start_mb=rss_mb(pid))
    ok, _, why = scrape_once(port, ctx)  # Prometheus was scraping before the attack began
    if not ok:
        raise RuntimeError(f"warm-up scrape failed: {why}")
    out: multiprocessing.Queue = multiprocessing.Queue()  # type: ignore[type-arg]
    attacker = multiprocessing.Process(target=_attacker, args=(port, shape, seconds + ramp, out))
    cpu0 = cpu_seconds(pid)
    counts0 = probe.ask()
    attacker.start()
    stop_sampling = threading.Event()

    def sample() -> None:
        while not stop_sampling.wait(0.25):
            try:
                result.rss_max_mb = max(result.rss_max_mb, rss_mb(pid))
            except OSError:
                return

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    time.sleep(ramp)  # let the attackers connect first
    end = time.monotonic() + seconds
    next_at = time.monotonic()
    while next_at < end:
        ok, ms, why = scrape_once(port, ctx)
        result.scrapes += 1
        result.ok += ok
        result.latencies_ms.append(ms)
        if why:
            result.errors[why] = result.errors.get(why, 0) + 1
        next_at += interval
        time.sleep(max(0.0, next_at - time.monotonic()))
    result.attackers = out.get(timeout=seconds + ramp + 120)
    attacker.join(30)
    stop_sampling.set()
    sampler.join()
    result.cpu_s = cpu_seconds(pid) - cpu0
    counts = probe.ask()
    result.work = {key: value - counts0[key] for key, value in counts.items()
                   if isinstance(value, (int, float))}
    result.statuses = {status: n - counts0["statuses"].get(status, 0)
                       for status, n in counts["statuses"].items()
                       if n > counts0["statuses"].get(status, 0)}
    result.rss_peak_mb = rss_mb(pid, "VmHWM")
    return result


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))] if ordered else 0.0


# ---------------------------------------------------------------- main


def seeded(work: Path, invocations: int) -> Path:
    db = work / "agent_workflow.db"
    subprocess.run([sys.executable, "-m", "agentmon.cli", "seed", "--db", str(db),
                    "--invocations", str(invocations), "--seed", "1"], check=True,
                   capture_output=True, env={**os.environ, "PYTHONPATH": str(SRC)})
    return db


def bench(args: argparse.Namespace) -> dict[str, dict[str, list[PhaseResult]]]:
    """Every server's rounds of each phase, in the order they ran."""
    raise_fd_limit()
    with tempfile.TemporaryDirectory(prefix="agentmon-attack-") as tmp:
        work = Path(tmp)
        cert, key = make_tls(work)
        config = make_config(work, cert, key)
        ctx = ssl.create_default_context(cafile=str(cert))
        db = seeded(work, args.invocations)
        servers = {}
        if args.before:
            rev = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", args.before],
                                 check=True, capture_output=True, text=True).stdout.strip()
            (work / "before").mkdir()
            label = args.before if rev.startswith(args.before) else f"{args.before} {rev}"
            servers[f"BEFORE ({label})"] = source_at(args.before, work / "before")
        servers["AFTER (this tree)"] = SRC
        attack = {"slow": args.slow, "idle": args.idle, "wrong": args.wrong}
        rounds: dict[str, dict[str, list[PhaseResult]]] = {
            name: {"attack": [], "flood": []} for name in servers}
        for n in range(args.rounds):
            order = list(servers.items())
            if n % 2:  # ABBA: whoever went first goes last, so a trend of the load evens out
                order.reverse()
            for name, src in order:
                for phase, shape, seconds in (("attack", attack, args.duration),
                                              ("flood", {"flood": args.flood},
                                               args.flood_seconds)):
                    print(f"{name}: {phase} phase, {seconds:g} s (round {n + 1} of "
                          f"{args.rounds}) ...", file=sys.stderr, flush=True)
                    db_copy = work / f"db-{name[:5]}-{n}-{phase}.db"
                    shutil.copyfile(db, db_copy)
                    with server(src, db_copy, config, work) as (port, pid, probe):
                        rounds[name][phase].append(run_phase(
                            port, pid, probe, shape, seconds, args.scrape_interval, ctx,
                            args.ramp))
                    db_copy.unlink()
    return rounds


def _median(rounds: list[PhaseResult], value: object) -> float:
    return statistics.median(value(r) for r in rounds)  # type: ignore[operator]


def _p(q: float) -> object:
    return lambda r: percentile(r.latencies_ms, q)


def table(results: dict[str, dict[str, list[PhaseResult]]], args: argparse.Namespace) -> str:
    """One column per server (medians of its rounds), then after / before when both ran."""
    names = list(results)
    compare = len(names) == 2
    rows: list[tuple[str, list[str]]] = []

    def text_row(label: str, phase: str, fmt: object) -> None:
        rows.append((label, [fmt(results[n][phase]) for n in names]  # type: ignore[operator]
                     + ([""] if compare else [])))

    def number_row(label: str, phase: str, values: list[tuple[object, str]]) -> None:
        """values: (per-round measure, format) pairs shown as 'a / b'; ratios of each."""
        medians = {n: [_median(results[n][phase], v) for v, _ in values] for n in names}
        cells = [" / ".join(f.format(m) if not math.isnan(m) else "-"
                            for m, (_, f) in zip(medians[n], values, strict=True))
                 for n in names]
        if compare:
            before, after = medians[names[0]], medians[names[1]]
            cells.append(" / ".join(f"{a / b:.2f}" if b and not math.isnan(a / b) else "-"
                                    for b, a in zip(before, after, strict=True)))
        rows.append((label, cells))

    def per_unit_row(label: str, phase: str, values: list[tuple[Measure, Measure, str]]
                     ) -> None:
        """values: (CPU seconds, units) per round, format; ms per unit over all rounds (the
        rounds' sums: a round where the attackers got little done weighs little)."""
        def ms_per(rounds: list[PhaseResult], cpu: Measure, units: Measure) -> float:
            total = sum(units(r) for r in rounds)
            return sum(cpu(r) for r in rounds) * 1000 / total if total else math.nan

        per = {n: [ms_per(results[n][phase], cpu, units) for cpu, units, _ in values]
               for n in names}
        cells = [" / ".join(f.format(m) if not math.isnan(m) else "-"
                            for m, (_, _, f) in zip(per[n], values, strict=True)) for n in names]
        if compare:
            cells.append(" / ".join(f"{a / b:.2f}" if not math.isnan(a / b) else "-"
                                    for b, a in zip(per[names[0]], per[names[1]], strict=True)))
        rows.append((label, cells))

    for phase, title in (("attack", f"attack ({args.slow} slow TLS + {args.idle} idle TCP + "
                                    f"{args.wrong} wrong-password, {args.duration:g} s)"),
                         ("flood", f"header flood ({args.flood} clients x 100 lines of "
                                   f"64 KiB, {args.flood_seconds:g} s)")):
        per_round = round(getattr(args, "duration" if phase == "attack" else "flood_seconds")
                          / args.scrape_interval)
        title += (f", {args.rounds} round{'s' if args.rounds > 1 else ''} ABBA, "
                  f"~{per_round} scrapes each")
        rows.append((f"**{title}**", ["" for _ in names] + ([""] if compare else [])))
        text_row("scrapes on new connections that succeeded (all rounds)", phase,
                 lambda rs: f"{sum(r.ok for r in rs)} / {sum(r.scrapes for r in rs)}")
        number_row("scrape latency p50 / p99 (median of rounds)", phase,
                   [(_p(0.5), "{:,.1f} ms"), (_p(0.99), "{:,.1f} ms")])
        text_row("scrape latency p99 of each round", phase, lambda rs: ", ".join(
            f"{percentile(r.latencies_ms, 0.99):,.0f}" for r in rs) + " ms")
        text_row("failed scrapes by error (all rounds)", phase, lambda rs: ", ".join(
            f"{k} {v}" for k, v in sorted(_errors(rs).items())) or "-")
        number_row("server RSS before / max during / peak (VmHWM)", phase,
                   [(lambda r: r.rss_start_mb, "{:.1f}"), (lambda r: r.rss_max_mb, "{:.1f}"),
                    (lambda r: r.rss_peak_mb, "{:.1f} MB")])
        number_row("server CPU during the phase", phase, [(lambda r: r.cpu_s, "{:.1f} s")])
        # The work behind that CPU, counted in the server (serve_probe.py), and its CPU per unit:
        # how many attackers the server got through in the phase varies with the machine's load.
        number_row("work: connections accepted / TLS handshakes begun / completed / "
                   "password checks (bcrypt)", phase,
                   [(_work("accepted"), "{:,.0f}"), (_work("tls_begun"), "{:,.0f}"),
                    (_work("handshakes"), "{:,.0f}"), (_work("bcrypt"), "{:,.0f}")])
        text_row("responses written, by status (all rounds)", phase, lambda rs: ", ".join(
            f"{k}: {v:,}" for k, v in sorted(_statuses(rs).items())) or "-")
        number_row("server CPU in password checks / TLS handshakes / the rest", phase,
                   [(_work("bcrypt_cpu_s"), "{:.1f}"), (_work("handshake_cpu_s"), "{:.1f}"),
                    (_rest, "{:.1f} s")])
        per_unit_row("CPU per password check / per TLS handshake begun / the rest per "
                     "connection (all rounds)", phase,
                     [(_work("bcrypt_cpu_s"), _work("bcrypt"), "{:.1f}"),
                      (_work("handshake_cpu_s"), _work("tls_begun"), "{:.2f}"),
                      (_rest, _work("accepted"), "{:.2f} ms")])
        number_row("cycle collector: full runs / time", phase,
                   [(_work("gc_full_runs"), "{:.0f}"), (_work("gc_s"), "{:.2f} s")])
        text_row("attacker connections made (closed by server), all rounds", phase,
                 lambda rs: ", ".join(f"{k} {s['connects']} ({s['closed']})"
                                      for k, s in _attackers(rs).items()))
    header = names + (["after / before"] if compare else [])
    lines = ["| measure | " + " | ".join(header) + " |", "|---|" + "---:|" * len(header)]
    lines += [f"| {label} | " + " | ".join(values) + " |" for label, values in rows]
    return "\n".join(lines)


Measure = Callable[[PhaseResult], float]


def _work(key: str) -> Measure:
    return lambda r: r.work[key]


def _rest(r: PhaseResult) -> float:
    """The phase's CPU besides password checks and handshakes (accepting, reading, parsing,
    answering, timers, the collector, the refresh thread), in the probe's window."""
    return r.work["cpu_s"] - r.work["bcrypt_cpu_s"] - r.work["handshake_cpu_s"]


def _statuses(rounds: list[PhaseResult]) -> dict[str, int]:
    out: dict[str, int] = {}
    for r in rounds:
        for status, n in r.statuses.items():
            out[status] = out.get(status, 0) + n
    return out


def _errors(rounds: list[PhaseResult]) -> dict[str, int]:
    out: dict[str, int] = {}
    for r in rounds:
        for why, n in r.errors.items():
            out[why] = out.get(why, 0) + n
    return out


def _attackers(rounds: list[PhaseResult]) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    for r in rounds:
        for kind, stats in r.attackers.items():
            mine = out.setdefault(kind, dict.fromkeys(stats, 0))
            for key, n in stats.items():
                mine[key] += n
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument("--duration", type=float, default=60, help="attack seconds (60)")
    parser.add_argument("--slow", type=int, default=500, help="slow TLS clients (500)")
    parser.add_argument("--idle", type=int, default=500, help="idle TCP sockets (500)")
    parser.add_argument("--wrong", type=int, default=70,
                        help="keep-alive wrong-password clients (70)")
    parser.add_argument("--flood", type=int, default=200, help="header-flood clients (200)")
    parser.add_argument("--flood-seconds", type=float, default=20, help="flood seconds (20)")
    parser.add_argument("--scrape-interval", type=float, default=0.25,
                        help="seconds between scrapes, each on a new connection (0.25)")
    parser.add_argument("--ramp", type=float, default=3.0,
                        help="seconds the attackers get to connect before scraping (3)")
    parser.add_argument("--invocations", type=int, default=10000,
                        help="seeded invocations in the served database (10,000)")
    parser.add_argument("--before", metavar="REF",
                        help="also run the server of this git revision first (e.g. main)")
    parser.add_argument("--rounds", type=int, default=3,
                        help="run every server this many times, in ABBA turn (3)")
    parser.add_argument("--quick", action="store_true",
                        help="small shape: 100 slow, 100 idle, 20 wrong, 50 flood, 10 s each, "
                        "1 round")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    if args.quick:  # the small shape, unless a size was given
        for name, value in (("slow", 100), ("idle", 100), ("wrong", 20), ("flood", 50),
                            ("duration", 10.0), ("flood_seconds", 10.0), ("rounds", 1)):
            if getattr(args, name) == parser.get_default(name):
                setattr(args, name, value)
    results = bench(args)
    print(table(results, args))
    if args.json:
        args.json.write_text(json.dumps(
            {name: {phase: [asdict(r) for r in rs] for phase, rs in phases.items()}
             for name, phases in results.items()}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
