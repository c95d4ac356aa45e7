#!/usr/bin/env bash
# Brings the local stack up on its own ports and state directory (so a
# running developer stack is not touched), checks that every component
# answers and that produced events reach the topic as seen by an independent
# client, then takes the stack down.
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

export STREAMPROC_STATE=$REPO_ROOT/.state/smoke
export KAFKA_PORT=29092 POSTGRES_PORT=25432 INFLUXDB_PORT=28086
export EVENT_API_PORT=29998 EVENT_PRODUCER_PORT=29999 CONSUMER_HIGH_PORT=29996 CONSUMER_LOW_PORT=29997
export AGGREGATOR_PORT=29995 WEB_UI_PORT=28080
export STREAMPROC_PROFILE=${STREAMPROC_PROFILE:-dev}

up_own_stack
"$REPO_ROOT/scripts/local.sh" status
checks=3

# With STREAMPROC_RUN=podman (scripts/test_images.sh) each service runs from
# its image: check that it does, hardened as the chart runs it.
if [[ ${STREAMPROC_RUN:-process} == podman ]]; then
  for service in "${IMAGE_SERVICES[@]}"; do
    container=$(container_name "$STREAMPROC_STATE" "$service")
    facts=$(podman inspect --format '{{.State.Running}} {{.HostConfig.ReadonlyRootfs}} {{.HostConfig.CapDrop}}' "$container") ||
      die "$service does not run in a container"
    [[ $facts == "true true [CAP_"* ]] || die "$container: running, read-only, dropped capabilities: $facts"
    uid=$(podman exec "$container" id -u)
    ((uid == 10001)) || die "$container runs as uid $uid"
    podman exec "$container" touch /written 2>/dev/null && die "$container can write to its root filesystem"
  done
  log "each service runs in its container as uid 10001, read-only, without capabilities"
  checks=4
fi

# Infrastructure answers: TimescaleDB is loaded, InfluxDB takes queries.
timescale=$("$PG_BIN/psql" -h 127.0.0.1 -p "$POSTGRES_PORT" -U postgres -d streamproc -qtA \
  -c "select extversion from pg_extension where extname = 'timescaledb'")
[[ -n $timescale ]] || die "TimescaleDB extension missing"
log "TimescaleDB $timescale"
curl -fsS --max-time 5 "http://127.0.0.1:$INFLUXDB_PORT/query" --data-urlencode "q=SHOW DATABASES" >/dev/null ||
  die "InfluxDB does not answer queries"

# A known event through event-api, then the producer's events: both must be
# on the topic.
answer=$(curl -fsS --max-time 10 -H 'content-type: application/json' \
  -d '[{"id":"smoke-1","time":1700000000000,"amount":"6.5"}]' "http://127.0.0.1:$EVENT_API_PORT/")
[[ $answer == *'"ingested":1'* ]] || die "event-api answered: $answer"
sleep 3
records=$("$REPO_ROOT/scripts/read_topic.py" --brokers "127.0.0.1:$KAFKA_PORT" --topic events --idle 2 --timeout 10)
grep -q '"key": "smoke-1"' <<<"$records" || die "the posted event is not on the topic"
produced=$(grep -vc '"key": "smoke-1"' <<<"$records" || true)
((produced >= 1)) || die "no event from event-producer reached the topic"
log "topic holds the posted event and $produced produced events"

# Stop the producer (it drains first), then every accepted event must be
# stored exactly once: rows in TimescaleDB plus points in InfluxDB.
"$REPO_ROOT/scripts/local.sh" stop event-producer
reconciled() {
  local counts
  counts=$("$REPO_ROOT/scripts/counts.sh" --json)
  python3 -c 'import json, sys; c = json.loads(sys.argv[1]); sys.exit(0 if c["accepted"] == c["high"] + c["low"] > 0 else 1)' "$counts"
}
wait_until 30 "every accepted event stored once" reconciled || {
  "$REPO_ROOT/scripts/counts.sh" >&2
  die "stored events do not add up to accepted events"
}
"$REPO_ROOT/scripts/counts.sh"

# The page is served, and the aggregator, asked through web-ui, counts every
# accepted event (InfluxDB's per-second totals follow within a second).
# The page is read whole before it is searched: `curl | grep -q` fails under
# pipefail once grep stops reading early and curl cannot write the rest.
page="$(curl -fsS --max-time 5 "http://127.0.0.1:$WEB_UI_PORT/")" ||
  die "web-ui does not serve the page"
[[ "$page" == *'<title>StreamProc</title>'* ]] ||
  die "web-ui serves a page without the StreamProc title"
http_ok "http://127.0.0.1:$WEB_UI_PORT/vendor/uPlot.esm.js" ||
  die "web-ui does not serve the charting library the page imports (vendor/uPlot.esm.js)"
aggregated() {
  local counts totals
  counts=$("$REPO_ROOT/scripts/counts.sh" --json)
  totals=$(curl -fsS --max-time 5 "http://127.0.0.1:$WEB_UI_PORT/api/v1/totals") || return 1
  python3 -c 'import json, sys; c, t = json.loads(sys.argv[1]), json.loads(sys.argv[2]); sys.exit(0 if t["high"]["count"] == c["high"] and t["low"]["count"] == c["low"] else 1)' "$counts" "$totals"
}
wait_until 15 "the aggregator's totals equal the stored events" aggregated ||
  die "aggregator totals: $(curl -sS "http://127.0.0.1:$WEB_UI_PORT/api/v1/totals")"

# TimescaleDB loses everything; one command puts it back from the log while
# the rest runs, and every accepted event is stored once again.
"$PG_BIN/psql" -h 127.0.0.1 -p "$POSTGRES_PORT" -U postgres -d streamproc -qtA \
  -c "truncate events, event_ids, events_per_second, events_per_hour"
rebuilt=$("$REPO_ROOT/scripts/local.sh" rebuild consumer-high beginning)
[[ $rebuilt == *"rebuilt: "* ]] || die "the rebuild said: $rebuilt"
log "${rebuilt##*$'\n'}"
wait_until 15 "every accepted event stored once after the rebuild" reconciled || {
  "$REPO_ROOT/scripts/counts.sh" >&2
  die "the rebuilt store does not hold every accepted event once"
}
checks=$((checks + 1))

# Each HTTP service under a connection flood (5,000 connections that never
# finish their headers) still answers a normal client within 1 s, closes the
# flood within HEADER_READ_TIMEOUT and gives its file descriptors back. The
# open file counts are read from /proc, so only for plain processes.
if [[ ${STREAMPROC_RUN:-process} == process ]]; then
  log "connection flood against event-api, the aggregator and web-ui"
  flood() { "$VENV/bin/python" "$REPO_ROOT/scripts/flood.py" --pid-file "$STREAMPROC_STATE/run/$1.pid" --name "$@"; }
  flood event-api --url "http://127.0.0.1:$EVENT_API_PORT" --post 500
  flood aggregator --url "http://127.0.0.1:$AGGREGATOR_PORT" --path /api/v1/totals
  flood web-ui --url "http://127.0.0.1:$WEB_UI_PORT" --path /api/v1/totals
  checks=$((checks + 3))
fi
echo "smoke: $checks passed, 0 failed"
