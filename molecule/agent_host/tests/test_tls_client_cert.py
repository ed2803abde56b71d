"""The exporter behind TLS that requires a client certificate (RequireAndVerifyClientCert): the
deploy's health check presents the certificate named by the role's variables and passes; a
deploy without one is refused in preflight.

Runs last (file names sort so): it leaves the host serving TLS, and the scenario destroys the
host next, so no converge back to plain HTTP is needed. Run `molecule converge` before running
the scenario's verify again on the same host.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from verify_helpers import http, playbook, ssh_host

HOST = os.environ.get("AGENTMON_AGENT_HOST", "agentmon-agent-host")
testinfra_hosts = [ssh_host(HOST)]

TLS = "/etc/agentmon-test-tls"
USER, PASSWORD = "prometheus", "molecule-test-password"

MAKE_CERTS = f"""
set -e
mkdir -p {TLS} && cd {TLS}
new() {{ openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj "/CN=$2" \\
           -keyout $1.key -out $1.csr 2>/dev/null; }}
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \\
  -subj /CN=agentmon-test-ca -keyout ca.key -out ca.crt 2>/dev/null
new server localhost
printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\\nextendedKeyUsage=serverAuth\\n' > server.ext
openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 \\
  -extfile server.ext -out server.crt 2>/dev/null
new client prometheus
printf 'extendedKeyUsage=clientAuth\\n' > client.ext
openssl x509 -req -in client.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 \\
  -extfile client.ext -out client.crt 2>/dev/null
chown agentmon-exporter server.key && chmod 0400 server.key client.key ca.key
chmod 0444 server.crt ca.crt
"""

TLS_VARS = {
    "agentmon_exporter_tls_server_config": {
        "cert_file": f"{TLS}/server.crt", "key_file": f"{TLS}/server.key",
        "client_ca_file": f"{TLS}/ca.crt", "client_auth_type": "RequireAndVerifyClientCert"},
}
CLIENT_VARS = {"agentmon_exporter_health_check_client_cert": f"{TLS}/client.crt",
               "agentmon_exporter_health_check_client_key": f"{TLS}/client.key"}


def converge(extra_vars: dict[str, Any]) -> tuple[int, str]:
    """The scenario's converge playbook, as `molecule converge` runs it, with `extra_vars`."""
    return playbook(str(Path(os.environ["MOLECULE_SCENARIO_DIRECTORY"]) / "converge.yml"),
                    "-e", json.dumps(extra_vars))


def https_get(host: Any, with_cert: bool) -> dict[str, Any]:
    cert, key = (f"{TLS}/client.crt", f"{TLS}/client.key") if with_cert else (None, None)
    return http(host, "https://127.0.0.1:9477/metrics", basic=(USER, PASSWORD),
                ca=f"{TLS}/ca.crt", cert=cert, key=key)


@pytest.fixture(scope="module")
def mtls_host(host: Any) -> Any:
    host.check_output("sh -c %s", MAKE_CERTS)
    return host


def test_a_deploy_requiring_client_certs_without_one_stops_in_preflight(mtls_host: Any) -> None:
    rc, out = converge(TLS_VARS)
    assert rc != 0
    assert "set agentmon_exporter_health_check_client_cert" in " ".join(out.split())


def test_the_health_check_presents_the_client_certificate(mtls_host: Any) -> None:
    rc, out = converge({**TLS_VARS, **CLIENT_VARS})
    assert rc == 0, out[-2000:]
    # The shared readiness check (agentmon.stack._common) ran with the client certificate.
    assert "Check it answered 200 with agentmon_db_up 1" in out
    assert https_get(mtls_host, with_cert=True)["status"] == 200
    refused = https_get(mtls_host, with_cert=False)
    assert refused["status"] == 0, refused  # the handshake is refused
