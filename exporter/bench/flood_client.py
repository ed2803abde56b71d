"""A wrong-password flood and a logged-in user, from one address, through nginx to Prometheus.

Runs ON the monitoring host (standard library only: the host has Python, not our venv), so that
the flooder and the user share an address, as behind NAT or a jump host. Used by the default
scenario's verify (`molecule/default/tests/test_flood.py`, which passes it to `python3 -c`) and
by `bench_flood.py`. One JSON object out.

- ``--flooders`` threads, each on its own keep-alive TLS connection (reconnecting when nginx
  closes it), send ``GET <prefix>/api/v1/query?query=up`` with a NEW wrong password each time;
- the user sends the same query with the right password, one request after another, on its own
  connection, and records each status and latency (a transport error or timeout counts as 0);
- it stops after ``--seconds``, or (``--until-events``) once the user has ``--min-legit``
  answers, the flooders ``--min-refused`` 401/429 answers, and Prometheus has scraped itself at
  least twice after the flood began (a scrape timestamp past the start, asked as the user);
- then, asked as the user, the ``up`` and ``scrape_duration_seconds`` samples of Prometheus'
  self-scrape between the flood's start and end.
"""

from __future__ import annotations

import argparse
import base64
import http.client
import json
import secrets
import ssl
import sys
import threading
import time
import urllib.parse


def auth(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


class Client:
    """One keep-alive HTTPS connection to nginx (remade after any error)."""

    def __init__(self, host: str, ca: str, timeout: float) -> None:
        self.host, self.timeout = host, timeout
        self.ctx = ssl.create_default_context(cafile=ca)
        self.conn: http.client.HTTPSConnection | None = None

    def get(self, path: str, authorization: str) -> tuple[int, bytes]:
        if self.conn is None:
            self.conn = http.client.HTTPSConnection(self.host, context=self.ctx,
                                                    timeout=self.timeout)
        try:
            self.conn.request("GET", path, headers={"Authorization": authorization})
            response = self.conn.getresponse()
            body = response.read()
            if response.getheader("Connection", "").lower() == "close":
                self.close()
            return response.status, body
        except (OSError, http.client.HTTPException):
            self.close()
            return 0, b""

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--host", required=True, help="nginx's name (the certificate's)")
    parser.add_argument("--ca", required=True)
    parser.add_argument("--prefix", default="/prometheus")
    parser.add_argument("--user", required=True)
    parser.add_argument("--password", required=True)
    parser.add_argument("--flooders", type=int, default=60)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--until-events", action="store_true")
    parser.add_argument("--min-legit", type=int, default=20)
    parser.add_argument("--min-refused", type=int, default=200)
    parser.add_argument("--deadline", type=float, default=300.0, help="failure guard (s)")
    parser.add_argument("--timeout", type=float, default=60.0, help="per request (s)")
    args = parser.parse_args()

    right = auth(args.user, args.password)
    query = f"{args.prefix}/api/v1/query?" + urllib.parse.urlencode({"query": "up"})
    stop = threading.Event()
    lock = threading.Lock()
    flood: dict[str, int] = {}

    def flooder() -> None:
        client = Client(args.host, args.ca, args.timeout)
        while not stop.is_set():
            status, _ = client.get(query, auth(args.user, secrets.token_hex(12)))
            with lock:
                flood[str(status)] = flood.get(str(status), 0) + 1
        client.close()

    def self_scrapes_since(client: Client, since: float) -> int:
        """How many self-scrapes Prometheus stored after `since` (asked as the user, recorded)."""
        expr = f'up{{job="prometheus"}}[{int(time.time() - since) + 1}s]'
        t0 = time.monotonic()
        status, body = client.get(f"{args.prefix}/api/v1/query?"
                                  + urllib.parse.urlencode({"query": expr}), right)
        legit.append((status, time.monotonic() - t0))
        if status != 200:
            return 0
        result = json.loads(body)["data"]["result"]
        return sum(1 for s in result for t, _ in s["values"] if float(t) > since)

    user = Client(args.host, args.ca, args.timeout)
    legit: list[tuple[int, float]] = []
    # Logged in before the flood (as a browser is): the first answer is part of the record.
    t0 = time.monotonic()
    status, _ = user.get(query, right)
    legit.append((status, time.monotonic() - t0))

    start = time.time()
    threads = [threading.Thread(target=flooder, daemon=True) for _ in range(args.flooders)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + (args.deadline if args.until_events else args.seconds)
    scrapes = 0
    while time.monotonic() < deadline:
        t0 = time.monotonic()
        status, _ = user.get(query, right)
        legit.append((status, time.monotonic() - t0))
        if args.until_events:
            with lock:
                refused = flood.get("401", 0) + flood.get("429", 0)
            if len(legit) >= args.min_legit and refused >= args.min_refused:
                scrapes = self_scrapes_since(user, start)
                if scrapes >= 2:
                    break
    end = time.time()
    stop.set()
    for thread in threads:
        thread.join(args.timeout + 5)

    # The self-scrape's samples of the flood's window, asked after it (as the user).
    window = int(end - start) + 2
    samples: dict[str, list[tuple[float, float]]] = {}
    for metric in ("up", "scrape_duration_seconds"):
        expr = f'{metric}{{job="prometheus"}}[{window}s] @ {end:.3f}'
        status, body = Client(args.host, args.ca, args.timeout).get(
            f"{args.prefix}/api/v1/query?" + urllib.parse.urlencode({"query": expr}), right)
        values: list[tuple[float, float]] = []
        if status == 200:
            for series in json.loads(body)["data"]["result"]:
                values += [(float(t), float(v)) for t, v in series["values"]
                           if start <= float(t) <= end]
        samples[metric] = sorted(values)
    json.dump({"start": start, "end": end, "legit": legit, "flood": flood,
               "scrapes_seen": scrapes, "samples": samples}, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
