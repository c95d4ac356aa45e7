#!/usr/bin/env bash
# Forwards cluster services to this machine, for running a service locally
# against the cluster (kubectl port-forward), until Ctrl-C.
#
# Usage: scripts/port_forward.sh SERVICE [LOCAL_PORT]
#        scripts/port_forward.sh infra
#   SERVICE  one of event-api, event-producer, consumer-high, consumer-low,
#            aggregator, web-ui; LOCAL_PORT defaults to its usual port
#            (web-ui: 8080)
#   infra    Kafka on 9092, TimescaleDB on 5432 and InfluxDB on 8086, and
#            how to point local services at them
# RELEASE [streamproc], NAMESPACE [default].
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
# shellcheck source=scripts/k8s_lib.sh
source "$REPO_ROOT/scripts/k8s_lib.sh"

service_port() {
  case $1 in
    event-api) echo "$DEFAULT_EVENT_API_PORT" ;;
    event-producer) echo "$DEFAULT_EVENT_PRODUCER_PORT" ;;
    consumer-high) echo "$DEFAULT_CONSUMER_HIGH_PORT" ;;
    consumer-low) echo "$DEFAULT_CONSUMER_LOW_PORT" ;;
    aggregator) echo "$DEFAULT_AGGREGATOR_PORT" ;;
    web-ui) echo 80 ;;
  esac
}

forward_infra() {
  local pids=()
  trap 'kill "${pids[@]}" 2>/dev/null || true' EXIT
  kubectl -n "$NAMESPACE" port-forward "svc/$RELEASE-kafka" 9092:9092 & pids+=($!)
  kubectl -n "$NAMESPACE" port-forward "svc/$RELEASE-timescaledb" 5432:5432 & pids+=($!)
  kubectl -n "$NAMESPACE" port-forward "svc/$RELEASE-influxdb" 8086:8086 & pids+=($!)
  local secret=$RELEASE-credentials
  cat >&2 <<HELP

Kafka advertises itself as $RELEASE-kafka:9092: make that name this machine
    echo "127.0.0.1 $RELEASE-kafka" | sudo tee -a /etc/hosts
The stores' credentials (a Secret; another name if credentials.existingSecret is set):
    export POSTGRES_PASSWORD=\$(kubectl -n $NAMESPACE get secret $secret -o jsonpath='{.data.postgres-password}' | base64 -d)
    export INFLUXDB_USER=\$(kubectl -n $NAMESPACE get secret $secret -o jsonpath='{.data.influxdb-user}' | base64 -d)
    export INFLUXDB_PASSWORD=\$(kubectl -n $NAMESPACE get secret $secret -o jsonpath='{.data.influxdb-password}' | base64 -d)
Then, for example:  KAFKA_BROKERS=$RELEASE-kafka:9092 cargo run -p consumer-high
HELP
  wait
}

case ${1:-} in
  -h | --help) usage; exit 0 ;;
  "") usage >&2; exit 2 ;;
esac
require_tools kubectl
if [[ $1 == infra ]]; then
  forward_infra
else
  known_service "$1"
  remote=$(service_port "$1")
  local_port=${2:-$([[ $1 == web-ui ]] && echo 8080 || echo "$remote")}
  log "svc/$RELEASE-$1:$remote on http://127.0.0.1:$local_port"
  exec kubectl -n "$NAMESPACE" port-forward "svc/$RELEASE-$1" "$local_port:$remote"
fi
