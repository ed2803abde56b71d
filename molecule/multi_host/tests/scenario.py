"""What the multi_host scenario's tests share: its hosts, their credentials, and the requests
and probes they make from one test host to another (verify_helpers' client, with the CA)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import testinfra
from verify_helpers import http, ssh_host

PROJECT = Path(__file__).resolve().parents[3]
# Agent host + long-term store (VictoriaMetrics) + the alert receiver; two monitoring hosts,
# the first also an agent host; the verify step stops the second.
AGENT, MON1, MON2 = "agentmon-mh-agent", "agentmon-mh-monitor-1", "agentmon-mh-monitor-2"
MONITORS = (MON1, MON2)
AGENTS = (AGENT, MON1)
ALL = (AGENT, MON1, MON2)

ADMIN = "admin:molecule-admin-password"
ADMIN_NEXT = "admin-next:molecule-admin-next-password"
SCRAPER = "prometheus:molecule-scrape-password"
AM_ADMIN = "admin:molecule-am-admin-password"
# Prometheus' credential at the alert gates (it may only post alerts).
AM_PUSH = "prometheus:molecule-am-prometheus-password"
GRAFANA_DATASOURCE = "grafana:molecule-grafana-datasource-password"
# VictoriaMetrics through the long-term host's nginx: who may query, who may write.
READER = "reader:molecule-reader-password"
LONGTERM_GRAFANA = "grafana:molecule-longterm-grafana-password"
LONGTERM_WRITER = "prometheus:molecule-longterm-prometheus-password"
VM_NGINX = "nginx:molecule-victoriametrics-nginx-password"
WRONG = ["", "admin:wrong-password", "nobody:molecule-admin-password", "prometheus:wrong"]
CA = "/etc/ssl/agentmon/ca.crt"
VM = f"https://{AGENT}/victoriametrics"
RECEIVED = "/var/lib/alert-receiver/notifications.jsonl"
# The name every peer certificate carries (agentmon_pki_peer_names).
PEER_NAME = "agentmon-peers"
SCRAPE_INTERVAL = 3.0


def prometheus(monitor: str) -> str:
    return f"https://{monitor}/prometheus"


def alertmanager(monitor: str) -> str:
    return f"https://{monitor}/alertmanager"


# Probes run inside a test host: a TLS handshake at one protocol version, a TCP connect, a
# client of Alertmanager's gossip port (TLS 1.3 with or without a client certificate). One
# JSON line out.
CLIENT = r"""
import json, socket, ssl, sys, warnings
warnings.simplefilter("ignore")
mode, args = sys.argv[1], sys.argv[2:]
CA = "/etc/ssl/agentmon/ca.crt"
if mode == "tls":
    host, port, version = args
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(CA)
    # Let the client offer old versions, so that a refusal can only come from the server.
    ctx.set_ciphers("ALL:@SECLEVEL=0")
    ctx.minimum_version = ctx.maximum_version = getattr(ssl.TLSVersion, version)
    try:
        with socket.create_connection((host, int(port)), timeout=5) as raw:
            with ctx.wrap_socket(raw, server_hostname=host) as tls:
                print(json.dumps({"ok": True, "version": tls.version(), "cipher": tls.cipher()[0]}))
    except (ssl.SSLError, OSError) as error:
        print(json.dumps({"ok": False, "error": str(error)}))
elif mode == "port":
    host, port = args
    try:
        socket.create_connection((host, int(port)), timeout=3).close()
        print(json.dumps("open"))
    except ConnectionRefusedError:
        print(json.dumps("refused"))
    except OSError as error:
        print(json.dumps(str(error)))
elif mode == "gossip":
    host, port, name, cert, key = args
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(CA)
    if cert != "-":
        ctx.load_cert_chain(cert, key)
    out = {"handshake": False}
    try:
        with socket.create_connection((host, int(port)), timeout=10) as raw:
            with ctx.wrap_socket(raw, server_hostname=name) as tls:
                out.update(handshake=True, version=tls.version())
                # TLS 1.3: the server checks the client's certificate after the handshake and
                # answers a bad one with an alert, which arrives on the first read.
                data = tls.recv(1)
                out["verdict"] = "closed" if not data else "data"
    except ssl.SSLError as error:
        out["verdict"] = "alert: " + str(error)
    except TimeoutError:
        out["verdict"] = "waiting: no verdict within 10 s"
    except OSError as error:
        out["verdict"] = "error: " + str(error)
    print(json.dumps(out))
"""


def on(name: str) -> Any:
    return testinfra.get_host(ssh_host(name))


def client(origin: str, *args: str) -> Any:
    out = on(origin).check_output("python3 -c %s " + " ".join(["%s"] * len(args)), CLIENT, *args)
    return json.loads(out)


def get(url: str, auth: str = "", origin: str = AGENT, **kwargs: Any) -> dict[str, Any]:
    """From `origin`, with the internal CA, not following redirects; auth is "user:password"."""
    user, _, password = auth.partition(":")
    return http(on(origin), url, basic=(user, password) if auth else None, ca=CA,
                follow_redirects=False, timeout=10, **kwargs)


def query(promql: str, base: str, auth: str = ADMIN, at: float | None = None,
          origin: str = AGENT) -> list[dict[str, Any]]:
    """An instant query (at `at`, Unix time, or now) of the Prometheus API at `base`."""
    params = {"query": promql, **({"time": f"{at:.3f}"} if at is not None else {})}
    answer = get(f"{base}/api/v1/query?{urlencode(params)}", auth, origin=origin)
    assert answer["status"] == 200, answer
    return json.loads(answer["body"])["data"]["result"]


def podman(*args: str) -> None:
    """podman on this machine (the test hosts are its containers), with the project's settings."""
    env = {**os.environ}
    env.setdefault("CONTAINERS_CONF", str(PROJECT / ".ci" / "containers.conf"))
    subprocess.run(["podman", *args], check=True, env=env, capture_output=True)
