#!/usr/bin/env bash
# Runs the whole StreamProc pipeline on this machine as plain processes:
# installs what is missing, starts the broker and databases, builds the
# services and starts them in the background.
#
# Usage: scripts/local.sh up|down|status|stop SERVICE|restart NAME|rebuild CONSUMER [FROM]|logs [SERVICE]
#   up            install, start infrastructure and every service (idempotent:
#                 starts only what is not running)
#   down          stop every service, then the infrastructure
#   status        what runs, and whether it answers
#   stop SERVICE  stop one service, e.g. to run it from source instead
#   restart NAME  restart one service, or one piece of infrastructure (tansu,
#                 postgres, influxdb: scripts/infra.sh restart NAME); the
#                 services reconnect to restarted infrastructure by themselves
#   rebuild CONSUMER [FROM]
#                 rebuild consumer-high's or consumer-low's store from the
#                 log while everything runs: replays the topic from FROM
#                 (beginning [default], Unix ms, an RFC 3339 time, now-6h)
#                 up to its end, then prints what it did
#   logs          follow the logs (of one SERVICE, or all)
# Stopping returns only once the process has exited and its port is free.
#
# State, logs and pid files live under STREAMPROC_STATE [<repo>/.state/local].
# Ports: KAFKA_PORT [9092], POSTGRES_PORT [5432], INFLUXDB_PORT [8086],
# EVENT_API_PORT [9998], CONSUMER_HIGH_PORT [9996], CONSUMER_LOW_PORT [9997],
# AGGREGATOR_PORT [9995], WEB_UI_PORT [8080], EVENT_PRODUCER_PORT [9999]. Cargo profile: STREAMPROC_PROFILE [dev].
# STREAMPROC_RUN=podman runs the services from their images
# (streamproc/<service>:IMAGE_TAG, made by scripts/build_images.sh --podman)
# instead, hardened as the chart runs them: uid 10001, read-only root
# filesystem, no capabilities, no privilege escalation; on the host's
# network, so the addresses stay the same.
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

export STREAMPROC_STATE=${STREAMPROC_STATE:-$REPO_ROOT/.state/local}
export KAFKA_PORT=${KAFKA_PORT:-9092}
export POSTGRES_PORT=${POSTGRES_PORT:-5432}
export INFLUXDB_PORT=${INFLUXDB_PORT:-8086}
STATE=$STREAMPROC_STATE
EVENT_API_PORT=${EVENT_API_PORT:-$DEFAULT_EVENT_API_PORT}
CONSUMER_HIGH_PORT=${CONSUMER_HIGH_PORT:-$DEFAULT_CONSUMER_HIGH_PORT}
CONSUMER_LOW_PORT=${CONSUMER_LOW_PORT:-$DEFAULT_CONSUMER_LOW_PORT}
AGGREGATOR_PORT=${AGGREGATOR_PORT:-$DEFAULT_AGGREGATOR_PORT}
WEB_UI_PORT=${WEB_UI_PORT:-$DEFAULT_WEB_UI_PORT}
EVENT_PRODUCER_PORT=${EVENT_PRODUCER_PORT:-$DEFAULT_EVENT_PRODUCER_PORT}
# Cargo profile to build and run. dev by default: on a new machine it builds
# in half of release's CPU (301 against 633 s), which a first run waits for
# beside tansu's build; a plain `cargo build` then `restart NAME` runs a
# change; it shares the tests' build; and it keeps up with about 11 000
# events/s end to end (docs/operations.md). Benchmarks and load tests run
# release.
PROFILE=${STREAMPROC_PROFILE:-dev}
BIN=$REPO_ROOT/target/$([[ $PROFILE == dev ]] && echo debug || echo "$PROFILE")
RUN=${STREAMPROC_RUN:-process}
[[ $RUN == process || $RUN == podman ]] || die "STREAMPROC_RUN is '$RUN'; one of: process, podman"

# Start order; stopped in reverse. Each is "name port".
SERVICES=(
  "event-api $EVENT_API_PORT"
  "consumer-high $CONSUMER_HIGH_PORT"
  "consumer-low $CONSUMER_LOW_PORT"
  "aggregator $AGGREGATOR_PORT"
  "web-ui $WEB_UI_PORT"
  "event-producer $EVENT_PRODUCER_PORT"
)

# The environment each service runs with (the Go version's variable names),
# as words on one line.
service_env() {
  local name=$1 port=$2
  local vars=("PORT=$port" "KAFKA_BROKERS=127.0.0.1:$KAFKA_PORT" "KAFKA_TOPIC=events")
  local postgres=("POSTGRES_HOST=127.0.0.1" "POSTGRES_PORT=$POSTGRES_PORT" "POSTGRES_USER=postgres"
    "POSTGRES_DB=streamproc")
  local influxdb=("INFLUXDB_HOST=http://127.0.0.1:$INFLUXDB_PORT" "INFLUXDB_DB=streamproc")
  case $name in
    consumer-high) vars+=("${postgres[@]}") ;;
    consumer-low) vars+=("${influxdb[@]}") ;;
    # The pipeline watch reads Kafka (above) and probes event-api and the consumers.
    aggregator) vars+=("${postgres[@]}" "${influxdb[@]}" "API_HOST=127.0.0.1" "API_PORT=$EVENT_API_PORT"
      "CONSUMER_HIGH_URL=http://127.0.0.1:$CONSUMER_HIGH_PORT" "CONSUMER_LOW_URL=http://127.0.0.1:$CONSUMER_LOW_PORT") ;;
    web-ui) vars+=("AGGREGATOR_URL=http://127.0.0.1:$AGGREGATOR_PORT") ;;
    event-producer) vars+=("API_HOST=127.0.0.1" "API_PORT=$EVENT_API_PORT") ;;
  esac
  echo "${vars[*]}"
}

start_service() {
  local name=$1 port=$2 pidfile=$STATE/run/$1.pid
  if pid_alive "$pidfile"; then
    log "$name already running on port $port"
    return
  fi
  port_open "$port" && die "port $port is taken by another program; set the ${name^^} port variable (see --help)"
  local env_vars
  read -r -a env_vars <<<"$(service_env "$name" "$port")"
  if [[ $RUN == podman ]]; then
    # `podman run` in the foreground passes SIGTERM on to the service, so
    # stopping works as for a process; --rm cleans up after it. --env-host:
    # settings exported here (RETRY_MAX, RUST_LOG, ...) reach the service as
    # they reach a process; the addresses below still win.
    local container
    container=$(container_name "$STATE" "$name")
    podman rm --force --ignore "$container" >/dev/null
    nohup podman run --rm --name "$container" --network host "${HARDENED_RUN[@]}" \
      --env-host --env HOST=127.0.0.1 "${env_vars[@]/#/--env=}" \
      "streamproc/$name:$IMAGE_TAG" >>"$STATE/logs/$name.log" 2>&1 &
  else
    env "${env_vars[@]}" nohup "$BIN/$name" >>"$STATE/logs/$name.log" 2>&1 &
  fi
  echo $! >"$pidfile"
  wait_until 30 "$name (http://127.0.0.1:$port)" http_ok "http://127.0.0.1:$port/readyz" ||
    die "$name did not become ready within 30 s; see $STATE/logs/$name.log"
}

# The services compile beside install.sh: on a new machine both it and
# tansu's build leave a core idle for minutes (downloads, one-crate
# stretches, C builds), and the services need nothing it installs. Only the
# services: the benchmarks' native baselines are bench.sh's to build. Run
# as a background step (start_step): exec, so that stopping the step stops
# cargo itself.
build_services() {
  local service packages=()
  for service in "${SERVICES[@]}"; do
    packages+=(--package "${service%% *}")
  done
  cd "$REPO_ROOT" && exec cargo build --profile "$PROFILE" --locked "${packages[@]}"
}

start_services() {
  local service
  for service in "${SERVICES[@]}"; do
    # shellcheck disable=SC2086  # "name port" splits into two arguments
    start_service $service
  done
}

up() {
  if [[ $RUN == process ]]; then
    log "building the services ($PROFILE profile) in the background; log: $STATE/logs/build.log"
    start_step "services' build" "$STATE/logs/build.log" build_services
  fi
  timed install "$REPO_ROOT/scripts/install.sh"
  timed "broker and stores" "$REPO_ROOT/scripts/infra.sh" start
  if [[ $RUN == podman ]]; then
    local service missing=()
    for service in "${SERVICES[@]}"; do
      podman image exists "streamproc/${service%% *}:$IMAGE_TAG" || missing+=("${service%% *}")
    done
    ((${#missing[@]} == 0)) ||
      die "no image streamproc/<service>:$IMAGE_TAG for ${missing[*]}: scripts/build_images.sh --podman"
  else
    log "waiting for the services' build"
    finish_step "services' build"
  fi
  mkdir -p "$STATE/logs" "$STATE/run"
  timed "services' start" start_services
  step_times "up in"
  cat >&2 <<DONE

StreamProc is running. Logs: $STATE/logs/   Stop: scripts/local.sh down
  web-ui          http://127.0.0.1:$WEB_UI_PORT  (the live chart)
  event-api       http://127.0.0.1:$EVENT_API_PORT  (POST events; /metrics, /openapi.json)
  consumer-high   http://127.0.0.1:$CONSUMER_HIGH_PORT/metrics (amount > 5 -> TimescaleDB)
  consumer-low    http://127.0.0.1:$CONSUMER_LOW_PORT/metrics (amount <= 5 -> InfluxDB)
  aggregator      http://127.0.0.1:$AGGREGATOR_PORT/api/v1/series (/api, /api/v1/totals, /api/v1/pipeline, /openapi.json)
  event-producer  http://127.0.0.1:$EVENT_PRODUCER_PORT/metrics (1 event/s, sent every 2 s)
  Kafka           127.0.0.1:$KAFKA_PORT, topic "$EVENTS_TOPIC"
Read the topic:   scripts/read_topic.py --brokers 127.0.0.1:$KAFKA_PORT --topic events
Stored events:    scripts/counts.sh
DONE
}

down() {
  local i name
  for ((i = ${#SERVICES[@]} - 1; i >= 0; i--)); do
    # shellcheck disable=SC2086  # "name port" splits into two arguments
    stop_service ${SERVICES[i]}
  done
  "$REPO_ROOT/scripts/infra.sh" stop
}

status() {
  local ok=0 name port
  "$REPO_ROOT/scripts/infra.sh" status || ok=1
  for service in "${SERVICES[@]}"; do
    name=${service%% *} port=${service##* }
    if http_ok "http://127.0.0.1:$port/readyz"; then
      printf '%-16s up    http://127.0.0.1:%s\n' "$name" "$port"
    else
      printf '%-16s down\n' "$name"; ok=1
    fi
  done
  return "$ok"
}

stop_service() {
  # The container first, so that a service that will not stop is killed in
  # it, not left running behind a killed `podman run`.
  if [[ $RUN == podman ]]; then
    podman stop --ignore --time 15 "$(container_name "$STATE" "$1")" >/dev/null
  fi
  stop_pid "$STATE/run/$1.pid" "$1" "$2"
}

# service_entry NAME [OTHER...]: the "name port" entry of SERVICES for NAME;
# an unknown NAME fails, listing the services and the OTHER names allowed.
service_entry() {
  local name=$1 service
  shift
  for service in "${SERVICES[@]}"; do
    if [[ ${service%% *} == "$name" ]]; then
      echo "$service"
      return
    fi
  done
  die "unknown name '$name'; one of: ${SERVICES[*]%% *}${*:+ $*}"
}

stop_one() {
  local entry
  entry=$(service_entry "${1:-}")
  # shellcheck disable=SC2086  # "name port" splits into two arguments
  stop_service $entry
}

restart_one() {
  local name=${1:-} entry
  case $name in
    tansu | kafka | postgres | postgresql | influxdb)
      "$REPO_ROOT/scripts/infra.sh" restart "$name"
      return
      ;;
  esac
  entry=$(service_entry "$name" tansu postgres influxdb)
  mkdir -p "$STATE/logs" "$STATE/run"
  # shellcheck disable=SC2086  # "name port" splits into two arguments
  stop_service $entry
  # shellcheck disable=SC2086
  start_service $entry
}

rebuild() {
  local name=${1:-} from=${2:-beginning} entry env_vars
  case $name in
    high | consumer-high) name=consumer-high ;;
    low | consumer-low) name=consumer-low ;;
    *) die "rebuild what? consumer-high or consumer-low, not '$name'" ;;
  esac
  entry=$(service_entry "$name")
  read -r -a env_vars <<<"$(service_env "$name" "${entry#* }")"
  log "$name: rebuilding its store from the log, from $from (the running consumers go on)"
  if [[ $RUN == podman ]]; then
    podman run --rm --network host "${HARDENED_RUN[@]}" --env-host "${env_vars[@]/#/--env=}" \
      "streamproc/$name:$IMAGE_TAG" --rebuild-from "$from"
  else
    env "${env_vars[@]}" "$BIN/$name" --rebuild-from "$from"
  fi
}

case ${1:-} in
  up) up ;;
  down) down ;;
  status) status ;;
  stop) stop_one "${2:-}" ;;
  restart) restart_one "${2:-}" ;;
  rebuild) rebuild "${2:-}" "${3:-}" ;;
  logs)
    if [[ -n ${2:-} ]]; then tail -F "$STATE/logs/$2.log"; else tail -F "$STATE"/logs/*.log; fi
    ;;
  -h | --help) usage ;;
  *) usage >&2; exit 2 ;;
esac
