#!/usr/bin/env bash
# Checks that each service does what its OpenAPI document says, with
# schemathesis (every check, a bounded number of cases, a fixed seed) against
# the /openapi.json each one serves. Brings the local stack up on its own
# ports and state directory (like scripts/smoke_test.sh, so a running
# developer stack is not touched) and takes it down afterwards. Exits
# non-zero on any failure, server error or schemathesis error.
#
# Usage: scripts/schemathesis.sh [SERVICE...]   (default: event-api aggregator)
#   SCHEMATHESIS_EXAMPLES [50]  cases per operation and generation phase
#   SCHEMATHESIS_SEED [20240601]
# Settings and hooks: scripts/schemathesis.toml, scripts/schemathesis_hooks.py.
# Reports (JUnit) go to $STREAMPROC_STATE/schemathesis.
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

if [[ ${1:-} == -h || ${1:-} == --help ]]; then
  usage
  exit 0
fi
services=("$@")
((${#services[@]})) || services=(event-api aggregator)

export STREAMPROC_STATE=$REPO_ROOT/.state/schemathesis
# Below the ephemeral range (32768 and up), where test ports come from.
export KAFKA_PORT=27092 POSTGRES_PORT=27432 INFLUXDB_PORT=27086
export EVENT_API_PORT=27998 EVENT_PRODUCER_PORT=27999 CONSUMER_HIGH_PORT=27996 CONSUMER_LOW_PORT=27997
export AGGREGATOR_PORT=27995 WEB_UI_PORT=27080
export STREAMPROC_PROFILE=${STREAMPROC_PROFILE:-dev}
examples=${SCHEMATHESIS_EXAMPLES:-50}
seed=${SCHEMATHESIS_SEED:-20240601}

port_of() {
  case $1 in
    event-api) echo "$EVENT_API_PORT" ;;
    aggregator) echo "$AGGREGATOR_PORT" ;;
    *) die "no OpenAPI document for $1; known: event-api aggregator" ;;
  esac
}
for service in "${services[@]}"; do port_of "$service" >/dev/null; done

[[ -x $VENV/bin/schemathesis ]] || "$REPO_ROOT/scripts/install.sh" --tests

up_own_stack
reports=$STREAMPROC_STATE/schemathesis
mkdir -p "$reports"

cd "$REPO_ROOT"
failed=()
for service in "${services[@]}"; do
  url="http://127.0.0.1:$(port_of "$service")"
  wait_until 60 "$service ready" http_ok "$url/readyz" || die "$service is not ready at $url"
  log "schemathesis against $service ($url/openapi.json)"
  if ! "$VENV/bin/schemathesis" --config-file scripts/schemathesis.toml run "$url/openapi.json" \
    --checks all --max-examples "$examples" --seed "$seed" --workers 1 \
    --report junit --report-junit-path "$reports/$service.xml"; then
    failed+=("$service")
  fi
done
((${#failed[@]} == 0)) || die "schemathesis found failures in: ${failed[*]} (reports in $reports)"
log "schemathesis: ${services[*]} conform to their documents"
