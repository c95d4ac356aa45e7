#!/usr/bin/env bash
# Shared helpers for the scripts in this folder. Source it; do not run it.
# shellcheck disable=SC2034  # variables here are used by the sourcing scripts

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# Topics, groups, tables, measurements and default ports, as the code names
# them (generated from crates/event/src/names.rs).
# shellcheck source=scripts/names.env
source "$REPO_ROOT/scripts/names.env"
# Built tools (tansu, TimescaleDB sources) are cached outside the checkout so
# that fresh clones and CI runs on the same machine reuse them.
CACHE_DIR=${STREAMPROC_CACHE:-$HOME/.cache/streamproc}
TANSU_VERSION=0.6.0
TANSU_BIN=${TANSU_BIN:-$CACHE_DIR/tansu-$TANSU_VERSION/bin/tansu}
# tansu's build (scripts/install.sh): its release profile, but the crates
# on none of the paths the project runs (the command line's generator, perf
# and proxy tools and its parser, schema registries, TLS, DNS,
# OpenTelemetry's exporters, the PostgreSQL storage's client, SASL, progress
# bars) compile without optimization. The first 21 of them took about 120
# of the default build's 1 400 CPU-seconds off, the other 15 another 69
# off a first run (12 min 32 s to 11 min 57 s on two cores), with the
# produce and read rates within the noise (scripts/bench_broker_build.py,
# docs/benchmarks.md, 2026-12-06).
# opt-level 1 for all of tansu saved more but cost SQLite storage 10-35 %
# of its produce rate.
TANSU_UNOPTIMIZED=(rhai rhai-rand tansu-generator tansu-perf tansu-proxy tansu-cat protobuf protobuf-parse
  protobuf-json-mapping apache-avro bigdecimal jsonschema aws-lc-sys aws-lc-rs hickory-proto hickory-resolver
  reqwest opentelemetry-otlp opentelemetry-proto tonic prost clap clap_builder tokio-postgres deadpool-postgres
  postgres-protocol postgres-types tokio-postgres-rustls rustls rustls-webpki tokio-rustls rustls-native-certs ring
  rsasl indicatif console)
TANSU_BUILD_PROFILE=()
for package in "${TANSU_UNOPTIMIZED[@]}"; do
  TANSU_BUILD_PROFILE+=(--config "profile.release.package.$package.opt-level=0")
done
unset package
PG_BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}
VENV=$CACHE_DIR/venv
# Images are tagged with the chart's appVersion, which the chart deploys by
# default; IMAGE_TAG overrides both.
IMAGE_TAG=${IMAGE_TAG:-$(awk '/^appVersion:/ { gsub(/"/, "", $2); print $2 }' "$REPO_ROOT/helm_chart/Chart.yaml")}
IMAGE_SERVICES=(event-api event-producer consumer-high consumer-low aggregator web-ui)
# `podman run` flags for a service container, as the chart's securityContext
# runs the pod: uid 10001, read-only root filesystem (no writable tmpfs
# either), every capability dropped, no privilege escalation.
HARDENED_RUN=(--user 10001:10001 --read-only --read-only-tmpfs=false
  --cap-drop all --security-opt no-new-privileges)

# container_name STATE_DIR SERVICE: the podman container of SERVICE for the
# stack in STATE_DIR; unique per state directory, so the test stacks and the
# developer's stack never share one.
container_name() { echo "streamproc-$(basename "$1")-$2"; }

# Prints the comment block at the top of the running script: its usage.
usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; }

log() { printf '\033[1m[%s]\033[0m %s\n' "$(basename "$0")" "$*" >&2; }
die() { printf '\033[31m[%s] error:\033[0m %s\n' "$(basename "$0")" "$*" >&2; exit 1; }

# Step timing: `timed NAME command…` runs the command and notes how long it
# took; `step_times TITLE` logs the notes on one line, with the total.
STEP_TIMES=()
STEPS_STARTED=$SECONDS
timed() {
  local name=$1 started=$SECONDS
  shift
  "$@"
  STEP_TIMES+=("$name $(minutes_seconds $((SECONDS - started)))")
}
minutes_seconds() {
  if (($1 >= 60)); then printf '%dm%02ds' $(($1 / 60)) $(($1 % 60)); else printf '%ds' "$1"; fi
}
step_times() {
  local joined
  joined=$(printf '%s, ' "${STEP_TIMES[@]}")
  log "$1 $(minutes_seconds $((SECONDS - STEPS_STARTED))): ${joined%, }"
}

# Steps in the background, for the long builds of a first run:
# `start_step NAME LOG command…` runs the command with its output in LOG;
# `finish_step NAME` waits for it, stops the script with the log's end if
# it failed, and notes its time for step_times: until the step's last
# output, since a step waited for late may have ended well before (the
# services' build ends minutes before tansu's). A script that stops before
# it finishes a step stops the step too, rather than leave it running (the
# EXIT trap: not for scripts that need one of their own).
declare -A STEP_PID=() STEP_LOG=() STEP_STARTED=()
start_step() {
  local name=$1 log_file=$2
  shift 2
  mkdir -p "$(dirname "$log_file")"
  "$@" >"$log_file" 2>&1 &
  STEP_PID[$name]=$! STEP_LOG[$name]=$log_file STEP_STARTED[$name]=$EPOCHSECONDS
  trap stop_steps EXIT
}
stop_steps() {
  local pid
  for pid in "${STEP_PID[@]}"; do
    [[ -z $pid ]] || kill "$pid" 2>/dev/null || true
  done
}
finish_step() {
  local name=$1
  if ! wait "${STEP_PID[$name]}"; then
    tail -n 30 "${STEP_LOG[$name]}" >&2
    die "$name failed; full log in ${STEP_LOG[$name]}"
  fi
  STEP_PID[$name]=""
  local ended
  ended=$(stat -c %Y "${STEP_LOG[$name]}")
  STEP_TIMES+=("$name $(minutes_seconds $((ended - STEP_STARTED[$name]))) (in the background)")
}

# wait_until SECONDS DESCRIPTION COMMAND...: retries COMMAND every 0.2 s.
wait_until() {
  local seconds=$1 what=$2
  shift 2
  local deadline=$((SECONDS + seconds))
  until "$@" >/dev/null 2>&1; do
    if ((SECONDS >= deadline)); then
      return 1
    fi
    sleep 0.2
  done
  log "$what: ok"
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

http_ok() { curl -fs -o /dev/null --max-time 2 "$1"; }

# pid_alive PIDFILE: the process named in PIDFILE is running.
pid_alive() { [[ -f $1 ]] && kill -0 "$(cat "$1")" 2>/dev/null; }

# wait_gone PID SECONDS: waits until process PID has exited; fails if it
# still runs after SECONDS.
wait_gone() {
  local pid=$1 deadline=$((SECONDS + $2))
  while kill -0 "$pid" 2>/dev/null; do
    ((SECONDS < deadline)) || return 1
    sleep 0.2
  done
}

# wait_port_free PORT SECONDS: waits until nothing accepts connections on
# PORT; fails if something still does after SECONDS.
wait_port_free() {
  local port=$1 deadline=$((SECONDS + $2))
  while port_open "$port"; do
    ((SECONDS < deadline)) || return 1
    sleep 0.2
  done
}

# stop_pid PIDFILE NAME [PORT]: SIGTERM, wait up to 15 s, then SIGKILL. Returns
# only once the process has exited and, given PORT, nothing listens there
# any more, so that starting it again at once cannot find the old copy (alive,
# or holding its port). Fails, naming NAME, if that does not happen.
stop_pid() {
  local pidfile=$1 name=$2 port=${3:-} pid
  if pid_alive "$pidfile"; then
    pid=$(cat "$pidfile")
    kill -TERM "$pid" 2>/dev/null || true
    if ! wait_gone "$pid" 15; then
      log "$name did not stop in 15 s; killing it"
      kill -KILL "$pid" 2>/dev/null || true
      wait_gone "$pid" 10 || die "$name (pid $pid) is still running after SIGKILL"
    fi
    if [[ -n $port ]] && ! wait_port_free "$port" 10; then
      die "$name stopped, but port $port still accepts connections: another program holds it"
    fi
    log "$name stopped"
  fi
  rm -f "$pidfile"
}

# running_steadily PIDFILE PORT NAME: the process in PIDFILE runs, and a
# second later still runs and accepts connections on PORT. A process that
# was just sent SIGTERM (`kill` followed at once by a start) keeps its pid,
# and for a moment its port, while it exits: it is waited for until it has
# gone, and then this fails so that the caller starts a new copy, instead of
# reporting as running what is about to be gone.
running_steadily() {
  local pidfile=$1 port=$2 name=$3 pid deadline
  pid_alive "$pidfile" || return 1
  pid=$(cat "$pidfile")
  sleep 1
  deadline=$((SECONDS + 15))
  while kill -0 "$pid" 2>/dev/null; do
    port_open "$port" && return 0
    ((SECONDS < deadline)) ||
      die "$name (pid $pid) neither accepts connections on port $port nor exits; see its log"
    sleep 0.2
  done
  log "$name (pid $pid) has just exited; starting a new one"
  rm -f "$pidfile"
  return 1
}

# up_own_stack: brings a fresh local stack up on the ports and state
# directory the caller exported (a test's own, never the developer's), and
# takes it down when the script exits, showing each log's last lines first
# if the script failed.
up_own_stack() {
  "$REPO_ROOT/scripts/local.sh" down >/dev/null 2>&1 || true
  rm -rf "$STREAMPROC_STATE"
  trap own_stack_down EXIT
  "$REPO_ROOT/scripts/local.sh" up
}

own_stack_down() {
  local status=$?
  if ((status != 0)) && [[ -d $STREAMPROC_STATE/logs ]]; then
    for file in "$STREAMPROC_STATE"/logs/*.log; do
      echo "--- last lines of $file" >&2
      tail -n 15 "$file" >&2 || true
    done
  fi
  "$REPO_ROOT/scripts/local.sh" down >/dev/null 2>&1 || true
  return "$status"
}
