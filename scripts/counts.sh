#!/usr/bin/env bash
# Reconciles the local stack: events event-api accepted (since it started)
# and records on the topic (since the stack's state was created) against
# rows in TimescaleDB and points in InfluxDB. On a stack whose consumers have
# caught up, topic records = rows + points (+ dead letters, + duplicates a
# client sent). Ports as for scripts/local.sh.
#
# Usage: scripts/counts.sh [--json]
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

POSTGRES_PORT=${POSTGRES_PORT:-5432}
INFLUXDB_PORT=${INFLUXDB_PORT:-8086}
EVENT_API_PORT=${EVENT_API_PORT:-$DEFAULT_EVENT_API_PORT}
KAFKA_PORT=${KAFKA_PORT:-9092}

http_ok "http://127.0.0.1:$EVENT_API_PORT/healthz" ||
  die "event-api does not answer on port $EVENT_API_PORT (scripts/local.sh status)"
# events_accepted_total counts since event-api started.
accepted=$(curl -fsS --max-time 5 "http://127.0.0.1:$EVENT_API_PORT/metrics" |
  awk -v name="${EVENTS_ACCEPTED_METRIC}_total" '$1 == name { print $2 }')
high=$("$PG_BIN/psql" -h 127.0.0.1 -p "$POSTGRES_PORT" -U postgres -d streamproc -qtA \
  -c "select count(*) from $EVENTS_TABLE" 2>/dev/null || echo 0)
low=$(curl -fsS --max-time 5 "http://127.0.0.1:$INFLUXDB_PORT/query" \
  --data-urlencode "db=streamproc" --data-urlencode "q=SELECT count(amount) FROM $EVENT_MEASUREMENT" |
  python3 -c 'import json, sys; s = json.load(sys.stdin)["results"][0].get("series"); print(s[0]["values"][0][1] if s else 0)')
topic=$("$REPO_ROOT/scripts/read_topic.py" --brokers "127.0.0.1:$KAFKA_PORT" --topic "$EVENTS_TOPIC" \
  --summary --idle 2 --timeout 20 | python3 -c 'import json, sys; print(json.load(sys.stdin)["records"])')
if [[ ${1:-} == --json ]]; then
  printf '{"accepted":%s,"topic":%s,"high":%s,"low":%s}\n' "${accepted:-0}" "$topic" "$high" "$low"
else
  printf 'accepted by event-api  %s (since it started)\nrecords on the topic   %s\nrows in TimescaleDB    %s\npoints in InfluxDB     %s\nstored in all          %s\n' \
    "${accepted:-0}" "$topic" "$high" "$low" "$((high + low))"
fi
