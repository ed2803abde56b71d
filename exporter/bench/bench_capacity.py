"""Capacity: series and bytes per agent host, and bytes per stored sample, for docs/capacity.md.

On a database seeded like a busy agent host (`agentmon seed`, --invocations over --days, with
usage facts), all real processes:

1. `agentmon serve` scraped once as Prometheus scrapes it: its series (by metric family) and
   the size of one scrape, plain and gzip-compressed (what Prometheus fetches through nginx).
2. Prometheus (Debian's, from PATH) scraping it with the repository's rules for a few
   evaluations: the series one agent host costs in Prometheus (the exporter's, the five each
   target adds, and the recording rules' outputs: per host, and site-wide ones that do not
   grow with hosts).
3. --scrapes scrapes of the exporter as time goes by at --interval (the default scrape
   interval, 15 s): Claude Code-shaped sessions (bench_soak's mix, --sessions-per-day, each
   spread over --session-minutes) go through `agentmon hook` as the simulated clock reaches
   them, and each scrape waits for the exporter's refresh after them; every scrape's samples
   are kept with its simulated timestamp. Then stored for real:
   * Prometheus: `promtool tsdb create-blocks-from openmetrics` writes them as TSDB blocks (the
     same chunk encoding and index as Prometheus' own compaction): bytes on disk per sample;
   * VictoriaMetrics (--victoriametrics-container NAME: a test host where the victoriametrics
     role installed Debian's package, e.g. agentmon-mh-agent of the multi_host scenario): a
     throw-away victoria-metrics process of that package on its loopback, with a fresh storage
     folder, imports them (/api/v1/import/prometheus), flushes and merges; bytes per row from
     its own vm_data_size_bytes and vm_rows. The process and folder are removed after.

Prints the figures as a table and writes them as JSON (--json). Takes about a second of wall
time per scrape (the exporter's refresh), so the default 480 scrapes (2 simulated hours) take
8-10 minutes.

    ../.venv/bin/python bench/bench_capacity.py [--scrapes 480]
                                                [--victoriametrics-container agentmon-mh-agent]
"""

from __future__ import annotations

import argparse
import gzip
import http.client
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.parse
from collections import Counter
from pathlib import Path
from typing import Any

from bench_serve import free_port, wait_for_port
from bench_soak import session_events, session_templates
from prometheus_client.parser import text_string_to_metric_families

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
AGENTMON = str(Path(sys.executable).parent / "agentmon")
RULES = REPO / "roles" / "prometheus" / "files" / "rules"
Series = tuple[str, tuple[tuple[str, str], ...]]
# What Prometheus 2.42 asks for (agentmon serve answers the text format: no _created series).
ACCEPT = "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"

# Run inside the test host: a throw-away VictoriaMetrics of Debian's package, the samples
# imported, flushed and merged, its own size metrics read. One JSON line out.
VM_DRIVER = r"""
import json, os, re, shutil, subprocess, sys, tempfile, time, urllib.request
samples, interval = sys.argv[1], sys.argv[2]
data = tempfile.mkdtemp(prefix="vm-capacity-")
base = "http://127.0.0.1:18428"
proc = subprocess.Popen(["/usr/bin/victoria-metrics", "-storageDataPath=" + data,
                         "-httpListenAddr=127.0.0.1:18428", "-retentionPeriod=100y",
                         "-dedup.minScrapeInterval=" + interval, "-loggerLevel=ERROR"])
def get(path):
    with urllib.request.urlopen(base + path, timeout=600) as reply:
        return reply.read().decode()
def sizes():
    text = get("/metrics")
    pick = lambda name: {m[0]: float(m[1]) for m in re.findall(
        r'^' + name + r'\{type="([^"]+)"\} (\S+)$', text, re.M)}
    return pick("vm_data_size_bytes"), pick("vm_rows"), sum(pick("vm_active_merges").values())
try:
    for _ in range(600):
        try:
            get("/health"); break
        except OSError:
            time.sleep(0.1)
    with open(samples, "rb") as f:
        request = urllib.request.Request(base + "/api/v1/import/prometheus", data=f, method="POST")
        request.add_header("Content-Length", str(os.path.getsize(samples)))
        urllib.request.urlopen(request, timeout=600).read()
    get("/internal/force_flush")
    get("/internal/force_merge")
    last = None
    for _ in range(1200):
        size, rows, active = sizes()
        if active == 0 and (size, rows) == last:
            break
        last = (size, rows)
        time.sleep(1)
    print(json.dumps({"size": size, "rows": rows}))
finally:
    proc.terminate()
    proc.wait(timeout=60)
    shutil.rmtree(data, ignore_errors=True)
"""


def scrape(port: int) -> tuple[str, dict[Series, float]]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("GET", "/metrics", headers={"Accept": ACCEPT})
        reply = conn.getresponse()
        body = reply.read().decode()
    finally:
        conn.close()
    if reply.status != 200:
        raise OSError(f"scrape answered {reply.status}")
    values = {}
    for family in text_string_to_metric_families(body):
        for s in family.samples:
            values[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return body, values


def seed(db: Path, invocations: int, days: int) -> None:
    subprocess.run([AGENTMON, "seed", "--db", str(db), "--invocations", str(invocations),
                    "--days", str(days), "--usage", "--seed", "22"], check=True,
                   stdout=subprocess.DEVNULL)


def prometheus_series(port: int, work: Path) -> dict[str, int]:
    """Series of one agent host in a real Prometheus with agentmon's rules loaded."""
    prometheus = shutil.which("prometheus")
    if prometheus is None:
        raise SystemExit("bench_capacity: prometheus not on PATH (apt-get install prometheus)")
    api = free_port()
    rules = sorted(str(p) for p in RULES.glob("*.yml"))
    config = {"global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
              "rule_files": rules,
              "scrape_configs": [{"job_name": "prometheus",
                                  "static_configs": [{"targets": [f"127.0.0.1:{api}"]}]},
                                 {"job_name": "agentmon",
                                  "static_configs": [{"targets": [f"127.0.0.1:{port}"],
                                                      "labels": {"instance": "agent-01"}}]}]}
    (work / "prometheus.yml").write_text(json.dumps(config))
    log = (work / "prometheus.log").open("wb")
    proc = subprocess.Popen([prometheus, f"--config.file={work / 'prometheus.yml'}",
                             f"--storage.tsdb.path={work / 'tsdb'}",
                             f"--web.listen-address=127.0.0.1:{api}"],
                            stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_for_port(api, proc)

        def value(expr: str) -> float:
            conn = http.client.HTTPConnection("127.0.0.1", api, timeout=30)
            try:
                conn.request("GET", "/api/v1/query?" + urllib.parse.urlencode({"query": expr}))
                result = json.loads(conn.getresponse().read())["data"]["result"]
            finally:
                conn.close()
            return float(result[0]["value"][1]) if result else 0.0

        def ready() -> bool:
            conn = http.client.HTTPConnection("127.0.0.1", api, timeout=30)
            try:
                conn.request("GET", "/-/ready")
                return conn.getresponse().status == 200
            finally:
                conn.close()

        # Five good scrapes of the exporter, then five evaluations of every rule group.
        deadline = time.monotonic() + 180
        while not ready() or value('sum_over_time(up{job="agentmon"}[1m])') < 5:
            if time.monotonic() > deadline:
                raise SystemExit("bench_capacity: the exporter was not scraped within 180 s")
            time.sleep(0.5)
        evaluated = value("min(prometheus_rule_group_iterations_total)")
        while value("min(prometheus_rule_group_iterations_total)") < evaluated + 5:
            if time.monotonic() > deadline:
                raise SystemExit("bench_capacity: the rules were not evaluated within 180 s")
            time.sleep(0.5)
        return {
            "exporter": int(value('count({job="agentmon", __name__!~"up|scrape_.+|.+:.+"})')),
            "per_target": int(value('count({job="agentmon", __name__=~"up|scrape_.+"})')),
            "recording_per_host": int(value('count({__name__=~".+:.+", instance!=""})')),
            "recording_site": int(value('count({__name__=~".+:.+", instance=""})')),
        }
    finally:
        proc.terminate()
        proc.wait(timeout=60)
        log.close()


def simulate(port: int, db: Path, work: Path, args: argparse.Namespace,
             ) -> tuple[list[float], dict[Series, list[float]], int]:
    """--scrapes scrapes, sessions written through the hook as the simulated clock goes."""
    rng = random.Random(22)
    templates = session_templates()
    env = {**os.environ, "AGENTMON_DB": str(db), "XDG_STATE_HOME": str(work / "state")}
    rate = args.sessions_per_day / 86400  # sessions started per simulated second
    due: list[tuple[float, bytes]] = []
    next_start = rng.expovariate(rate)
    number = hooks = 0
    times: list[float] = []
    series: dict[Series, list[float]] = {}
    for i in range(args.scrapes):
        now = (i + 1) * args.interval
        while next_start <= now:
            events = [payload for _, payload in session_events(
                templates[number % len(templates)], f"cap-{number}", rng)]
            spread = args.session_minutes * 60 / max(len(events), 1)
            due += [(next_start + k * spread, payload) for k, payload in enumerate(events)]
            number += 1
            next_start += rng.expovariate(rate)
        due.sort(key=lambda item: item[0])
        written = 0
        while due and due[0][0] <= now:
            _, payload = due.pop(0)
            proc = subprocess.run([AGENTMON, "hook"], input=payload, env=env,
                                  capture_output=True, check=False, timeout=120)
            if proc.returncode or proc.stderr:
                raise SystemExit(f"bench_capacity: hook said {proc.stderr.decode()[:300]}")
            written += 1
        hooks += written
        if written:  # wait for the exporter's refresh after the writes
            after = time.time()
            while True:
                _, values = scrape(port)
                stamp = values.get(("agentmon_last_refresh_timestamp_seconds", ()), 0.0)
                if stamp > after:
                    break
                time.sleep(0.1)
        _, values = scrape(port)
        times.append(now)
        for key, value in values.items():
            series.setdefault(key, [float("nan")] * i).append(value)
        for got in series.values():
            if len(got) < i + 1:
                got.append(float("nan"))
        if (i + 1) % 60 == 0:
            print(f"  {i + 1}/{args.scrapes} scrapes, {hooks} hook events", flush=True)
    return times, series, hooks


def escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def write_samples(times: list[float], series: dict[Series, list[float]], start: float,
                  openmetrics: Path, prom_text: Path) -> int:
    """The samples as OpenMetrics (promtool; families contiguous, timestamps in seconds) and as
    Prometheus text with millisecond timestamps (VictoriaMetrics' import). Returns the count.
    A scrape's timestamp is its slot, or a few milliseconds off one time in ten, as Prometheus
    2.42's are (it aligns them within 2 ms: 3002 then 2998 ms apart now and then)."""
    rng = random.Random(22)
    times = [t + (rng.choice((-1, 1)) * rng.uniform(0.002, 0.010) if rng.random() < 0.1 else 0)
             for t in times]
    count = 0
    with openmetrics.open("w") as om, prom_text.open("w") as pt:
        for (name, labels), values in sorted(series.items()):
            label_text = ",".join(f'{k}="{escape(v)}"' for k, v in labels)
            label_text = "{" + ",".join(x for x in ('instance="agent-01"', 'job="agentmon"',
                                                    label_text) if x) + "}"
            for t, v in zip(times, values, strict=True):
                if v != v:  # NaN: the series did not exist at that scrape
                    continue
                stamp = start + t
                om.write(f"{name}{label_text} {v!r} {stamp:.3f}\n")
                pt.write(f"{name}{label_text} {v!r} {int(stamp * 1000)}\n")
                count += 1
        om.write("# EOF\n")
    return count


def prometheus_bytes(openmetrics: Path, work: Path) -> dict[str, float]:
    promtool = shutil.which("promtool") or "promtool"
    out = work / "blocks"
    subprocess.run([promtool, "tsdb", "create-blocks-from", "openmetrics", str(openmetrics),
                    str(out)], check=True, capture_output=True)
    chunks = index = other = 0
    for path in out.rglob("*"):
        if path.is_file():
            size = path.stat().st_size
            if path.parent.name == "chunks":
                chunks += size
            elif path.name == "index":
                index += size
            else:
                other += size
    blocks = len([p for p in out.iterdir() if p.is_dir()])
    return {"chunks": chunks, "index": index, "other": other, "blocks": blocks}


def victoriametrics_bytes(container: str, prom_text: Path, interval: float) -> dict[str, Any]:
    env = {**os.environ}
    env.setdefault("CONTAINERS_CONF", str(REPO / ".ci" / "containers.conf"))
    target = "/tmp/agentmon-capacity-samples.txt"  # inside the test host
    subprocess.run(["podman", "cp", str(prom_text), f"{container}:{target}"], check=True,
                   env=env)
    try:
        proc = subprocess.run(["podman", "exec", container, "python3", "-c", VM_DRIVER, target,
                               f"{interval:g}s"], check=True, capture_output=True, text=True,
                              env=env, timeout=1800)
        version = subprocess.run(["podman", "exec", container, "dpkg-query", "-W",
                                  "-f=${Version}", "victoria-metrics"], check=True,
                                 capture_output=True, text=True, env=env).stdout
    finally:
        subprocess.run(["podman", "exec", container, "rm", "-f", target], check=False, env=env)
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result["version"] = version
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--invocations", type=int, default=20000,
                        help="seeded subagent invocations (default 20000, 3 tool uses each)")
    parser.add_argument("--days", type=int, default=30, help="over this many days (default 30)")
    parser.add_argument("--scrapes", type=int, default=480,
                        help="scrapes stored (default 480: two hours at 15 s)")
    parser.add_argument("--interval", type=float, default=15.0,
                        help="simulated scrape interval, seconds (default 15: Prometheus')")
    parser.add_argument("--sessions-per-day", type=float, default=96,
                        help="Claude Code sessions started a day during the scrapes"
                             " (default 96, about the seeded history's)")
    parser.add_argument("--session-minutes", type=float, default=30,
                        help="how long one session's events take (default 30)")
    parser.add_argument("--victoriametrics-container",
                        help="test host with Debian's victoria-metrics to measure it on")
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="agentmon-capacity-") as tmp:
        work = Path(tmp)
        db = work / "agent_workflow.db"
        print(f"seeding {args.invocations} invocations over {args.days} days ...", flush=True)
        seed(db, args.invocations, args.days)
        port = free_port()
        log = (work / "serve.log").open("wb")
        serve = subprocess.Popen([AGENTMON, "serve", "--db", str(db), "--web.listen-address",
                                  f"127.0.0.1:{port}", "--refresh.interval", "1"],
                                 stdout=log, stderr=subprocess.STDOUT)
        try:
            wait_for_port(port, serve)
            body, values = scrape(port)
            families = Counter(name for name, _ in values)
            one = {"series": len(values), "bytes": len(body.encode()),
                   "gzip_bytes": len(gzip.compress(body.encode())),
                   "top_families": families.most_common(6)}
            print(f"one scrape: {one['series']} series, {one['bytes']} bytes "
                  f"({one['gzip_bytes']} gzip)", flush=True)
            in_prometheus = prometheus_series(port, work)
            print(f"in Prometheus: {in_prometheus}", flush=True)
            print(f"{args.scrapes} scrapes at {args.interval:g} s, "
                  f"{args.sessions_per_day:g} sessions a day ...", flush=True)
            started = time.monotonic()
            times, series, hooks = simulate(port, db, work, args)
            wall = time.monotonic() - started
        finally:
            serve.terminate()
            serve.wait(timeout=60)
            log.close()
        start = time.time() - args.scrapes * args.interval - 3600
        samples = write_samples(times, series, start, work / "samples.om",
                                work / "samples.prom")
        prom = prometheus_bytes(work / "samples.om", work)
        prom_total = prom["chunks"] + prom["index"] + prom["other"]
        vm = (victoriametrics_bytes(args.victoriametrics_container, work / "samples.prom",
                                    args.interval)
              if args.victoriametrics_container else None)

    n = len(series)
    result: dict[str, Any] = {
        "args": vars(args) | {"json": str(args.json) if args.json else None},
        "one_scrape": one, "prometheus_series": in_prometheus,
        "simulated": {"scrapes": args.scrapes, "series": n, "samples": samples,
                      "hook_events": hooks, "wall_seconds": round(wall)},
        "prometheus": prom | {"bytes_per_sample": prom_total / samples,
                              "chunk_bytes_per_sample": prom["chunks"] / samples,
                              "index_bytes_per_series_per_block":
                                  prom["index"] / prom["blocks"] / n},
    }
    print(f"\n{samples} samples of {n} series ({hooks} hook events in "
          f"{args.scrapes * args.interval / 3600:g} simulated hours, {wall:.0f} s)")
    print(f"Prometheus, {prom['blocks']} blocks of 2 h: {prom_total} bytes = "
          f"{prom_total / samples:.2f} bytes/sample: chunks {prom['chunks'] / samples:.2f} "
          f"bytes/sample, index {prom['index'] / prom['blocks'] / n:.0f} bytes/series/block")
    if vm is not None:
        stored = sum(v for k, v in vm["size"].items() if k.startswith("storage/"))
        index = sum(v for k, v in vm["size"].items() if k.startswith("indexdb"))
        rows = sum(v for k, v in vm["rows"].items() if k.startswith("storage/"))
        result["victoriametrics"] = vm | {"bytes_per_sample": (stored + index) / samples,
                                          "data_bytes_per_sample": stored / rows,
                                          "index_bytes_per_series": index / n}
        print(f"VictoriaMetrics {vm['version']}: {rows:.0f} rows, data {stored:.0f} bytes "
              f"({stored / rows:.3f} bytes/sample) + index {index:.0f} bytes "
              f"({index / n:.0f} bytes/series, per day it holds the series)")
    result["sites"] = sites(result, args.interval)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


def sites(result: dict[str, Any], interval: float) -> list[dict[str, float]]:
    """The capacity table: series, samples per second and disk per day for 10, 100 and 1,000
    agent hosts, from the measured series per host and bytes per sample and per series.
    Prometheus: chunks per sample, plus each block's index per series, blocks compacted to 3
    days (a tenth of the 30-day retention). VictoriaMetrics: data per sample, plus its index
    per series for each day it holds the series."""
    series = result["prometheus_series"]
    per_host = series["exporter"] + series["per_target"] + series["recording_per_host"]
    prom = result["prometheus"]
    vm = result.get("victoriametrics")
    rows = []
    print("\n| agent hosts | series | samples/s per Prometheus | Prometheus disk/day (each) "
          "| VictoriaMetrics disk/day | VictoriaMetrics disk/year |\n|---|---|---|---|---|---|")
    for hosts in (10, 100, 1000):
        total = hosts * per_host + series["recording_site"]
        per_day = total * 86400 / interval
        prom_day = (per_day * prom["chunk_bytes_per_sample"]
                    + total * prom["index_bytes_per_series_per_block"] / 3)
        vm_day = (per_day * vm["data_bytes_per_sample"] + total * vm["index_bytes_per_series"]
                  if vm else None)
        rows.append({"hosts": hosts, "series": total, "samples_per_second": total / interval,
                     "prometheus_bytes_per_day": prom_day, "victoriametrics_bytes_per_day": vm_day})
        vm_text = (f"{vm_day / 1e6:,.0f} MB | {vm_day * 365 / 1e9:,.1f} GB" if vm_day
                   else "- | -")
        print(f"| {hosts:,} | {total:,} | {total / interval:,.0f} | {prom_day / 1e6:,.0f} MB | "
              f"{vm_text} |")
    return rows


if __name__ == "__main__":
    sys.exit(main())
