"""The monitoring pair under failure, as the receiver sees it. Runs after test_multi_host.py.

Alertmanager's cluster: both members ready with both peers, and the gossip port refuses every
client without a peer certificate. Then the alert path, each notification counted at the one
receiver both Alertmanagers notify:
  1. both monitoring hosts up: the agent host's exporter stopped, then started: exactly one
     firing and one resolved notification;
  2. monitor 2's monitoring services stopped (nginx, Prometheus, Alertmanager: the host is gone
     for people and peers, as during its upgrade): monitor 1's Alertmanager finds its peer gone
     (/api/v2/status), the same incident is notified through monitor 1 alone, and monitor 1's
     Prometheus reports the lost member (AgentmonAlertmanagerUnreachable);
  3. monitor 2's services started again: its Alertmanager rejoins the cluster (/api/v2/status
     peers on both) and no duplicate of step 2's notifications follows; VictoriaMetrics,
     queried through nginx on the long-term host, holds the samples monitor 2 missed while it
     was away.
"Exactly one" is proven by a later event, never by waiting: after each step, a sentinel alert
is posted to each running Alertmanager on its own. An Alertmanager decides about a flush of a
group after its peer wait (its position times 15 s); a sentinel, posted after the notification
it follows, is flushed 5 s later (its group_wait, longer than the two members' flushes of one
group lie apart) and decided after the same wait. So once every sentinel has been notified,
every Alertmanager has decided about everything before it. The timeline is printed at the end.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from scenario import (
    ADMIN,
    AGENT,
    ALL,
    AM_ADMIN,
    AM_PUSH,
    CA,
    MON1,
    MON2,
    MONITORS,
    PEER_NAME,
    READER,
    RECEIVED,
    SCRAPE_INTERVAL,
    VM,
    alertmanager,
    client,
    get,
    on,
    prometheus,
    query,
)
from verify_helpers import http, ssh_host, wait_for

testinfra_hosts = [ssh_host(name) for name in ALL]

# Watchdog: repeat_interval and group_interval 20 s in this scenario, plus slack for the load
# of CI on 2 cores and for a member leaving the cluster (the other waits its peer timeout, 15 s,
# before it notifies in its place). A broken path still shows: no Watchdog for a whole minute.
WATCHDOG_MAX_GAP = 60.0
Note = dict[str, Any]
# What "monitor 2 is gone" stops, people's door first. (A frozen host, `podman pause`, is another
# story: see docs/deploy.md on an Alertmanager that thaws.)
SERVICES = ("nginx.service", "prometheus.service", "prometheus-alertmanager.service")
TIMELINE: list[tuple[float, str]] = []
_START = time.time()


def mark(what: str, at: float | None = None) -> float:
    at = time.time() if at is None else at
    TIMELINE.append((at, what))
    return at


# --- the cluster ------------------------------------------------------------------------------


def cluster_status(monitor: str) -> dict[str, Any]:
    answer = get(f"{alertmanager(monitor)}/api/v2/status", AM_ADMIN)
    assert answer["status"] == 200, answer
    return json.loads(answer["body"])["cluster"]


def peers(monitor: str, count: int) -> Callable[[], dict[str, Any] | None]:
    """A probe: monitor's cluster status when it is ready with `count` members, else None."""
    def probe() -> dict[str, Any] | None:
        cluster = cluster_status(monitor)
        return cluster if cluster["status"] == "ready" and len(cluster["peers"]) == count else None
    return probe


def both_peers(monitor: str) -> Callable[[], dict[str, Any] | None]:
    return peers(monitor, 2)


def test_alertmanagers_form_one_cluster() -> None:
    names = set()
    for monitor in MONITORS:
        cluster = wait_for(both_peers(monitor), f"{monitor}'s Alertmanager with both peers")
        names.add(frozenset(p["name"] for p in cluster["peers"]))
        assert all(p["address"].endswith(":9094") for p in cluster["peers"]), cluster
    # Both see the same two members.
    assert len(names) == 1, names


@pytest.fixture(scope="module")
def stranger() -> Iterator[dict[str, str]]:
    """On the agent host: a certificate and key from a CA of its own (names and usages of a
    peer's), and the paths of the host's own certificate from the cluster's CA (serverAuth only,
    as every nginx certificate)."""
    agent = on(AGENT)
    work = agent.check_output("mktemp -d /tmp/agentmon-stranger.XXXXXX")
    agent.check_output(
        "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1"
        f" -subj /CN={PEER_NAME} -addext subjectAltName=DNS:{PEER_NAME}"
        " -addext extendedKeyUsage=serverAuth,clientAuth"
        f" -keyout {work}/other-ca.key -out {work}/other-ca.crt 2>/dev/null")
    yield {"other_ca": f"{work}/other-ca", "nginx": "/etc/ssl/agentmon/server"}
    agent.run(f"rm -rf {work}")


@pytest.mark.parametrize("monitor", MONITORS)
@pytest.mark.parametrize("certificate", ["none", "other_ca", "nginx"])
def test_gossip_port_refuses_clients_without_a_peer_certificate(
        monitor: str, certificate: str, stranger: dict[str, str]) -> None:
    """From the agent host, TLS to the gossip port: without a client certificate, with one from
    another CA, or with the host's own certificate from the cluster's CA (not a client
    certificate), the handshake's verdict is an alert from the server. (The peers themselves
    get in: test_alertmanagers_form_one_cluster.)"""
    cert, key = ("-", "-") if certificate == "none" else (
        f"{stranger[certificate]}.crt", f"{stranger[certificate]}.key")
    answer = client(AGENT, "gossip", monitor, "9094", PEER_NAME, cert, key)
    assert answer["handshake"], answer
    assert answer["version"] == "TLSv1.3", answer
    verdict = answer["verdict"].lower()
    # Go 1.19 (Debian's Alertmanager) answers a missing certificate "bad certificate" too.
    expected = {"none": ["certificate required", "bad certificate"],
                "other_ca": ["unknown ca", "bad certificate"],
                "nginx": ["bad certificate"]}[certificate]
    assert verdict.startswith("alert: "), answer
    assert any(e in verdict for e in expected), answer


def test_gossip_port_refuses_tls_12() -> None:
    answer = client(AGENT, "tls", MON1, "9094", "TLSv1_2")
    assert not answer["ok"], answer
    assert "protocol version" in answer["error"].lower(), answer


# --- notifications at the receiver -------------------------------------------------------------


def received() -> list[Note]:
    """Every notification the receiver got, with "received" (Unix time)."""
    agent = on(AGENT)
    with agent.sudo():
        receiver = agent.file(RECEIVED)
        text = receiver.content_string if receiver.exists else ""
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def alerts_in(note: Note) -> list[dict[str, Any]]:
    return note["notification"].get("alerts", [])


def sender(note: Note) -> str:
    """Which Alertmanager sent it: its external URL names its host."""
    return note["notification"]["externalURL"].split("/")[2]


def wait_for_note(matches: Callable[[Note], bool], what: str, since: float) -> Note:
    """The first notification that arrived after `since` and matches."""
    return wait_for(lambda: next((note for note in received()
                                  if note["received"] >= since and matches(note)), None),
                    what, every=1)


def exporter_down(status: str) -> Callable[[Note], bool]:
    return lambda note: note["notification"].get("status") == status and any(
        a["labels"].get("alertname") == "AgentmonExporterDown"
        and a["labels"].get("instance") == AGENT and a["status"] == status
        for a in alerts_in(note))


def is_watchdog(note: Note) -> bool:
    return any(a["labels"].get("alertname") == "AgentmonWatchdog" for a in alerts_in(note))


def post_alert(monitor: str, labels: dict[str, str], *, auth: str = AM_ADMIN,
               url: str | None = None, starts_in: float = 0,
               ends_in: float = 600) -> dict[str, Any]:
    now = time.time()
    body = [{"labels": labels,
             "startsAt": datetime.fromtimestamp(now + starts_in, UTC).isoformat(),
             "endsAt": datetime.fromtimestamp(now + ends_in, UTC).isoformat()}]
    user, _, password = auth.partition(":")
    return http(on(AGENT), url or f"{alertmanager(monitor)}/api/v2/alerts",
                basic=(user, password), ca=CA, json_body=body, timeout=10)


def settle(monitors: tuple[str, ...], step: str) -> float:
    """Post a sentinel alert to each running Alertmanager on its own and wait until every one
    has been notified: then each has decided about every notification due before it."""
    tokens = {monitor: f"{step}-{uuid.uuid4().hex[:6]}" for monitor in monitors}
    posted = time.time()
    for monitor, token in tokens.items():
        answer = post_alert(monitor, {"alertname": "AgentmonVerifySentinel", "sentinel": token})
        assert answer["status"] == 200, answer
    for monitor, token in tokens.items():
        note = wait_for_note(lambda n, token=token: any(
            a["labels"].get("sentinel") == token for a in alerts_in(n)),
            f"the sentinel posted to {monitor}", since=posted)
        mark(f"sentinel posted to {monitor}'s Alertmanager notified (by {sender(note)})",
             note["received"])
    return time.time()


def count(matches: Callable[[Note], bool], since: float, until: float) -> list[Note]:
    return [n for n in received() if since <= n["received"] <= until and matches(n)]


def incident(step: str, monitors: tuple[str, ...]) -> dict[str, Any]:
    """The agent host's exporter stopped until AgentmonExporterDown is notified and every
    running Alertmanager has decided about it, then started until the resolved notification
    arrives."""
    agent = on(AGENT)
    stopped = mark(f"{step}: exporter on {AGENT} stopped")
    agent.check_output("systemctl stop agentmon-exporter.service")
    try:
        firing = wait_for_note(exporter_down("firing"), "AgentmonExporterDown firing",
                               since=stopped)
        mark(f"{step}: AgentmonExporterDown firing notified by {sender(firing)}",
             firing["received"])
        settle(monitors, f"{step.split()[0]}-firing")
    finally:
        agent.check_output("systemctl start agentmon-exporter.service")
    started = mark(f"{step}: exporter started")
    resolved = wait_for_note(exporter_down("resolved"), "AgentmonExporterDown resolved",
                             since=started)
    mark(f"{step}: AgentmonExporterDown resolved notified by {sender(resolved)}",
         resolved["received"])
    return {"stopped": stopped, "started": started, "firing": firing, "resolved": resolved}


def assert_exactly_once(step: str, seen: dict[str, Any], until: float) -> None:
    firing = count(exporter_down("firing"), seen["stopped"], until)
    resolved = count(exporter_down("resolved"), seen["stopped"], until)
    mark(f"{step}: notifications about it by then: {len(firing)} firing "
         f"({', '.join(sender(n) for n in firing)}), {len(resolved)} resolved "
         f"({', '.join(sender(n) for n in resolved)})")
    assert len(firing) == 1, firing
    assert len(resolved) == 1, resolved
    [down] = [a for a in alerts_in(firing[0]) if a["labels"]["alertname"] == "AgentmonExporterDown"]
    # One alert from both replicas: no replica label.
    assert down["labels"] == {"alertname": "AgentmonExporterDown", "instance": AGENT,
                              "job": "agentmon", "severity": "critical", "cluster": "molecule"}
    assert down["annotations"]["runbook_url"] == "docs/runbook.md#agentmonexporterdown"


@pytest.fixture(scope="module")
def watchdog_since() -> float:
    begin = time.time()
    wait_for_note(is_watchdog, "a Watchdog notification", since=begin - WATCHDOG_MAX_GAP)
    return begin


def test_alerts_are_notified_once_with_both_monitoring_hosts_up(watchdog_since: float) -> None:
    for monitor in MONITORS:
        wait_for(lambda monitor=monitor: len(query('up{job="agentmon"} == 1',
                                                   prometheus(monitor))) == 2,
                 f"{monitor}'s Prometheus to see both exporters up", every=1)
        wait_for(both_peers(monitor), f"{monitor}'s Alertmanager with both peers")
    seen = incident("1 both up", MONITORS)
    until = settle(MONITORS, "both-up")
    assert_exactly_once("1 both up", seen, until)


def test_alerts_are_notified_once_through_the_other_host_and_its_peer_rejoins(
        watchdog_since: float) -> None:
    monitor_2 = on(MON2)
    paused = mark(f"2 {MON2}: {', '.join(SERVICES)} stopped")
    monitor_2.check_output("systemctl stop %s %s %s", *SERVICES)
    try:
        alone = wait_for(peers(MON1, 1), f"{MON1}'s Alertmanager to find {MON2} gone")
        mark(f"2: {MON1}'s /api/v2/status: {alone['status']}, peers "
             f"{sorted(p['address'] for p in alone['peers'])} (its own only)")
        seen = incident("2 one host down", (MON1,))
        until = settle((MON1,), "one-down")
        assert_exactly_once("2 one host down", seen, until)
        # Monitor 1's Prometheus reports the member it cannot reach.
        lost = wait_for_note(lambda n: n["notification"].get("status") == "firing" and any(
            a["labels"].get("alertname") == "AgentmonAlertmanagerUnreachable"
            and MON2 in a["labels"].get("alertmanager", "") for a in alerts_in(n)),
            "AgentmonAlertmanagerUnreachable", since=paused)
        mark(f"2: AgentmonAlertmanagerUnreachable ({MON2}) notified by {sender(lost)}",
             lost["received"])
        # The Watchdog keeps arriving through the survivor while monitor 2 is gone.
        alive = wait_for_note(lambda n: is_watchdog(n) and sender(n) == MON1,
                              f"a Watchdog from {MON1} while {MON2} is gone", since=paused)
        mark(f"2: Watchdog notified by {sender(alive)}", alive["received"])
    finally:
        monitor_2.check_output("systemctl start %s %s %s", *reversed(SERVICES))
    resumed = mark(f"3 {MON2}: {', '.join(reversed(SERVICES))} started")

    for monitor in MONITORS:
        cluster = wait_for(both_peers(monitor), f"{monitor}'s Alertmanager with both peers again")
        mark(f"3: {monitor}'s /api/v2/status: {cluster['status']}, peers "
             f"{sorted(p['address'] for p in cluster['peers'])}")
    wait_for(lambda: len(query('up{job="agentmon"} == 1', prometheus(MON2))) == 2,
             f"{MON2}'s Prometheus scraping again", every=1)
    until = settle(MONITORS, "rejoined")
    # Step 2's incident, notified while monitor 2 was away, is not notified again.
    assert_exactly_once("3 after the rejoin", seen, until)
    check_long_term_store_has_what_monitor_2_missed(paused, resumed, seen)
    back = wait_for_note(is_watchdog, "a Watchdog after the rejoin", since=resumed)
    mark(f"3: Watchdog notified by {sender(back)}", back["received"])
    report_watchdog_gaps(watchdog_since)
    print_timeline()


def raw_samples(base: str, auth: str, at: float) -> list[tuple[float, float]]:
    """The raw samples of the agent host's `up` in the hour before `at`."""
    result = query(f'up{{job="agentmon",instance="{AGENT}"}}[1h]', base, auth, at=at)
    return [(float(t), float(v)) for t, v in result[0]["values"]] if result else []


def check_long_term_store_has_what_monitor_2_missed(paused: float, resumed: float,
                                                    seen: dict[str, Any]) -> None:
    """A last-hour query through nginx on the long-term host: the samples of the time monitor 2
    was gone, the exporter's outage among them, are there; monitor 2's own Prometheus has none
    of them."""
    at = time.time()
    # Whole scrape intervals inside the gap (a scrape at its very edge may have run).
    inside = (paused + SCRAPE_INTERVAL, resumed - SCRAPE_INTERVAL)
    def gap(base: str, auth: str) -> list[tuple[float, float]]:
        return [s for s in raw_samples(base, auth, at) if inside[0] <= s[0] <= inside[1]]

    longterm, survivor = gap(VM, READER), gap(prometheus(MON1), ADMIN)
    missed = gap(prometheus(MON2), ADMIN)
    outage = [t for t, v in longterm if v == 0 and seen["stopped"] <= t]
    mark(f"3: last hour through nginx on {AGENT}: VictoriaMetrics holds {len(longterm)} samples "
         f"of up{{instance={AGENT}}} from while {MON2} was gone ({len(outage)} of them 0, the "
         f"outage), {MON1}'s Prometheus {len(survivor)}, {MON2}'s Prometheus {len(missed)}")
    assert missed == [], missed
    # What the survivor scraped reached the store: its outage samples among them.
    assert survivor, survivor
    assert outage, longterm


def report_watchdog_gaps(begin: float) -> None:
    """The Watchdog's gaps, printed for the timeline; that one arrived while monitor 2 was gone
    and one after it came back is asserted above, by the notifications themselves."""
    end = time.time()
    watchdog = sorted(n["received"] for n in received()
                      if is_watchdog(n) and n["received"] >= begin - WATCHDOG_MAX_GAP)
    gaps = [b - a for a, b in zip([begin - WATCHDOG_MAX_GAP, *watchdog], [*watchdog, end],
                                  strict=True)]
    mark(f"Watchdog: {len(watchdog)} notifications, largest gap {max(gaps):.1f} s")


def print_timeline() -> None:
    print("\ntimeline (UTC, seconds since the first event):")
    first = min(t for t, _ in TIMELINE)
    for at, what in sorted(TIMELINE):
        print(f"  {datetime.fromtimestamp(at, UTC):%H:%M:%S.%f}"[:-3]
              + f"  +{at - first:6.1f}s  {what}")


def test_alert_gate_takes_prometheus_alerts_from_the_other_host() -> None:
    """The other host's Prometheus posts through /alert-gate/ with its credential: accepted (an
    alert already resolved, so nothing is notified). Its other doors: test_multi_host.py."""
    answer = post_alert(MON2, {"alertname": "AgentmonVerifyGate"}, auth=AM_PUSH,
                        url=f"https://{MON2}/alert-gate/api/v2/alerts", starts_in=-120,
                        ends_in=-60)
    assert answer["status"] == 200, answer
    assert post_alert(MON2, {"alertname": "AgentmonVerifyGate"}, auth="prometheus:wrong",
                      url=f"https://{MON2}/alert-gate/api/v2/alerts")["status"] == 401
