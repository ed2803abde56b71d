#!/usr/bin/env bash
# The whole agentmon stack on ONE local systemd host (a podman container from the test host
# image, carrying both the agent host and the monitoring host roles), deployed by site.yml with
# inventory/demo and fed with realistic Claude Code hook events.
#   tools/demo.sh up     start (or reuse) the host, deploy, feed events, print where to look
#   tools/demo.sh down   remove the host, its network and the generated files (.demo/)
#   tools/demo.sh info   print the URLs, credentials and commands again
# `make demo` / `make demo-down` run these after installing what is missing. A second `up`
# reuses the secrets, the CA, the host and what is installed on it.
set -euo pipefail
cd "$(dirname "$0")/.."

HOST=agentmon-demo
NET=agentmon-demo-net
STATE=.demo                          # generated secrets, CA and keys: 0700, outside git
PORT=${AGENTMON_DEMO_PORT:-8443}     # https://agentmon-demo:PORT on this machine -> nginx :443
export CONTAINERS_CONF=${CONTAINERS_CONF:-$PWD/.ci/containers.conf}
export ANSIBLE_CONFIG=$PWD/ansible.cfg
BIN=.venv/bin
SECRETS=(vault_agentmon_scrape_password vault_prometheus_admin_password
         vault_prometheus_grafana_password vault_alertmanager_admin_password
         vault_alertmanager_prometheus_password vault_grafana_admin_password
         vault_grafana_secret_key vault_alert_receiver_token)

step() { printf '\n==> [%3ds] %s\n' "$SECONDS" "$*"; }
die() { echo "demo: $*" >&2; exit 1; }
secret() { awk -v k="$1:" '$1 == k {print $2}' "$STATE/secrets.yml"; }

secrets() {
  # One random value per secret, generated once: a second `make demo` reuses them.
  if [ -s "$STATE/secrets.yml" ]; then
    echo "reusing $STATE/secrets.yml"
    return
  fi
  (
    umask 077
    mkdir -p "$STATE"
    tmp=$(mktemp "$STATE/.secrets.XXXXXX")
    "$BIN/python" - "$tmp" "${SECRETS[@]}" <<'PY'
import secrets, sys
with open(sys.argv[1], "w", encoding="utf-8") as f:
    f.write("---\n# Generated once by tools/demo.sh for the demo host only. Never commit.\n")
    for name in sys.argv[2:]:
        f.write(f"{name}: {secrets.token_urlsafe(32)}\n")
PY
    mv "$tmp" "$STATE/secrets.yml"
  )
  echo "generated $STATE/secrets.yml (mode $(stat -c %a "$STATE/secrets.yml"))"
}

host() {
  if podman container exists "$HOST"; then
    echo "reusing the container $HOST"
    [ "$(podman inspect -f '{{.State.Running}}' "$HOST")" = true ] || podman start "$HOST" >/dev/null
  else
    podman network exists "$NET" || podman network create "$NET" >/dev/null
    podman run -d --name "$HOST" --hostname "$HOST" --network "$NET" \
      --systemd=always --ulimit nofile=20000:20000 --ulimit nproc=32768:32768 \
      -p "127.0.0.1:$PORT:443" "$(molecule/image/build.sh)" /lib/systemd/systemd >/dev/null
    echo "started $HOST ($(molecule/image/build.sh --ref)) on $NET, 127.0.0.1:$PORT -> 443"
  fi
  # systemd must be up before Ansible starts services.
  local state=""
  for _ in $(seq 90); do
    state=$(podman exec "$HOST" systemctl is-system-running 2>/dev/null || true)
    case $state in running|degraded) break ;; esac
    sleep 1
  done
  case $state in running|degraded) ;; *) die "$HOST: systemd did not finish booting (podman logs $HOST)" ;; esac
  # A Claude Code user (the hooks role's managed drop-in logs every user of the host).
  podman exec "$HOST" sh -c 'id alice >/dev/null 2>&1 || useradd --create-home --shell /bin/bash alice'
}

query() {  # query PROMQL: the first value of an instant query through nginx, or nothing
  curl -fsS --cacert "$STATE/pki/ca.crt" --resolve "$HOST:$PORT:127.0.0.1" \
    -u "admin:$(secret vault_prometheus_admin_password)" \
    --data-urlencode "query=$1" "https://$HOST:$PORT/prometheus/api/v1/query" 2>/dev/null |
    "$BIN/python" -c 'import json,sys; r=json.load(sys.stdin)["data"]["result"]; print(r[0]["value"][1] if r else "")' \
    2>/dev/null || true
}

info() {
  cat <<EOF

agentmon demo: everything on one systemd host, $HOST (podman container), reached at
https://$HOST:$PORT/ through nginx (the only listener off loopback). Use --resolve (curl) or
add "127.0.0.1 $HOST" to /etc/hosts (browser) so the certificate's name matches.

  Prometheus    https://$HOST:$PORT/prometheus/     user admin
  Alertmanager  https://$HOST:$PORT/alertmanager/   user admin
  Grafana       https://$HOST:$PORT/grafana/        NOT installed here (Grafana's repository is
                unreachable from this machine); its grafana.ini, datasource and dashboards are
                on the host in /etc/grafana (grafana_manage_server: false)
  Credentials   $STATE/secrets.yml (mode 0600): vault_prometheus_admin_password is Prometheus'
                admin, vault_alertmanager_admin_password Alertmanager's
  CA            $STATE/pki/ca.crt (internal CA; host keys in $STATE/pki, 0600)
  Alerts        podman exec $HOST tail -n 3 /var/lib/alert-receiver/notifications.jsonl

Try:
  curl --cacert $STATE/pki/ca.crt --resolve $HOST:$PORT:127.0.0.1 \\
    -u "admin:\$(awk '\$1 == "vault_prometheus_admin_password:" {print \$2}' $STATE/secrets.yml)" \\
    'https://$HOST:$PORT/prometheus/api/v1/query?query=sum+by+(agent,status)(agentmon_invocations_total)'
  podman exec -u alice -w /home/alice $HOST python3 /usr/local/bin/agentmon-demo-events --sessions 3
  $BIN/ansible-playbook -i inventory/demo playbooks/rollback.yml -e @$STATE/secrets.yml --tags disable --check
  make demo-down
EOF
}

up() {
  [ -x "$BIN/ansible-playbook" ] || die "no $BIN: run make demo (it installs what is missing)"
  step "secrets: $STATE/secrets.yml (generated once, mode 0600, outside git)"
  secrets
  step "host: $HOST (podman, systemd as PID 1; one host carries the whole stack)"
  host
  step "deploy: ansible-playbook -i inventory/demo playbooks/alert_receiver.yml site.yml"
  "$BIN/ansible-playbook" -i inventory/demo -e "@$STATE/secrets.yml" -e "agentmon_demo_port=$PORT" \
    playbooks/alert_receiver.yml site.yml
  step "events: alice's Claude Code sessions through the hooks of the managed drop-in (every user's)"
  podman cp tools/demo_events.py "$HOST:/usr/local/bin/agentmon-demo-events"
  podman exec "$HOST" chmod 0755 /usr/local/bin/agentmon-demo-events
  podman exec -u alice -w /home/alice "$HOST" /usr/local/bin/agentmon-demo-events --sessions 5
  step "waiting for the events to reach Prometheus (through nginx, scrape every 10 s)"
  local value=""
  for _ in $(seq 60); do
    # Finished invocations: the demo's sessions all end (running work has no series at 0).
    value=$(query 'sum(agentmon_invocations_total)')
    [ -n "$value" ] && [ "$value" != 0 ] && break
    printf '.'
    sleep 3
  done
  echo
  [ -n "$value" ] && [ "$value" != 0 ] || die "no agentmon_invocations_total in Prometheus after 3 minutes"
  local tools
  tools=$(query 'sum(agentmon_tool_uses_total)')
  echo "Prometheus sees $value finished subagent invocations and ${tools:-0} finished tool uses"
  info
  echo
  echo "agentmon demo is up (${SECONDS} s)."
}

down() {
  podman rm -f "$HOST" >/dev/null 2>&1 || true
  podman network rm "$NET" >/dev/null 2>&1 || true
  rm -rf "$STATE"
  echo "demo: removed the container $HOST, the network $NET and $STATE/"
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  info) info ;;
  -h|--help) sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//' ;;
  *) echo "usage: tools/demo.sh up|down|info (--help says more)" >&2; exit 2 ;;
esac
