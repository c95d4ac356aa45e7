#!/usr/bin/env bash
# Starts, stops or reports StreamProc's infrastructure on loopback: the tansu
# Kafka broker (SQLite storage, survives restarts), PostgreSQL 15 with
# TimescaleDB, and InfluxDB 1.x. All state lives under one directory.
#
# Usage: scripts/infra.sh start|stop|status|env
#        scripts/infra.sh restart [tansu|postgres|influxdb]
#   start    start what is not running, wait until each answers
#   stop     stop everything; returns once every process has exited and the
#            broker's port is free
#   restart  stop then start one component (all three without an argument),
#            e.g. to see what a broker restart does to the services: they
#            reconnect by themselves. PostgreSQL stops with `pg_ctl -m fast`.
#   status   what runs and whether it answers (exit status 1 if not all)
#   env      the variables that point the services here
#
# Environment (defaults in brackets):
#   STREAMPROC_STATE  state directory [<repo>/.state/local]
#   KAFKA_PORT        broker port [9092]
#   POSTGRES_PORT     PostgreSQL port [5432]
#   INFLUXDB_PORT     InfluxDB HTTP port [8086]; its RPC port is this + 2
# 'start' is idempotent: what already runs is left alone (a process that is
# just exiting, say after `kill`, is waited for and started again). It fails,
# naming the component, when something does not answer in time. Run
# scripts/install.sh first on a new machine (scripts/local.sh does both).
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

STATE=${STREAMPROC_STATE:-$REPO_ROOT/.state/local}
KAFKA_PORT=${KAFKA_PORT:-9092}
POSTGRES_PORT=${POSTGRES_PORT:-5432}
INFLUXDB_PORT=${INFLUXDB_PORT:-8086}
POSTGRES_DB=${POSTGRES_DB:-streamproc}
LOGS=$STATE/logs
RUN=$STATE/run
PG_DIR=$STATE/postgres

# PostgreSQL refuses to run as root: run its tools as the 'postgres' user then.
as_postgres() {
  if ((EUID == 0)); then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

start_tansu() {
  [[ -x $TANSU_BIN ]] || die "tansu is not installed at $TANSU_BIN: run scripts/install.sh"
  if running_steadily "$RUN/tansu.pid" "$KAFKA_PORT" tansu; then
    log "tansu already running on port $KAFKA_PORT"
    return
  fi
  port_open "$KAFKA_PORT" && die "port $KAFKA_PORT is taken by another program; set KAFKA_PORT"
  mkdir -p "$STATE/tansu"
  local url=tcp://127.0.0.1:$KAFKA_PORT
  # The SQLite path is relative to tansu's working directory.
  # exec, so that the recorded pid is tansu's own.
  (cd "$STATE/tansu" && exec nohup "$TANSU_BIN" broker --listener-url "$url" \
    --advertised-listener-url "$url" --storage-engine sqlite://tansu.db) \
    >>"$LOGS/tansu.log" 2>&1 &
  echo $! >"$RUN/tansu.pid"
  wait_until 30 "tansu (Kafka on 127.0.0.1:$KAFKA_PORT)" port_open "$KAFKA_PORT" ||
    die "tansu did not listen on port $KAFKA_PORT within 30 s; see $LOGS/tansu.log"
}

# As root, PostgreSQL runs as 'postgres', which may not be able to reach the
# state directory (a checkout under /root, say). Its files then live in a
# directory of their own under /var/tmp, named after the state directory.
choose_pg_dir() {
  ((EUID == 0)) || return 0
  mkdir -p "$STATE"
  if ! runuser -u postgres -- test -x "$STATE"; then
    PG_DIR=/var/tmp/streamproc-$(printf '%s' "$STATE" | md5sum | cut -c1-12)/postgres
  fi
}

start_postgres() {
  local data=$PG_DIR/data sockets=$PG_DIR/run pg_log=$PG_DIR/postgres.log
  if as_postgres "$PG_BIN/pg_ctl" -D "$data" status >/dev/null 2>&1; then
    log "PostgreSQL already running on port $POSTGRES_PORT"
    return
  fi
  port_open "$POSTGRES_PORT" && die "port $POSTGRES_PORT is taken by another program; set POSTGRES_PORT"
  mkdir -p "$PG_DIR" "$sockets"
  touch "$pg_log"
  ln -sf "$pg_log" "$LOGS/postgres.log"
  ((EUID == 0)) && chown -R postgres:postgres "$PG_DIR"
  if [[ ! -f $data/PG_VERSION ]]; then
    log "PostgreSQL: creating a cluster in $data"
    # Trust on loopback only: a local development database, never exposed.
    as_postgres "$PG_BIN/initdb" -D "$data" --username=postgres --auth=trust --encoding=UTF8 >/dev/null
    cat >>"$data/postgresql.conf" <<CONF
listen_addresses = '127.0.0.1'
shared_preload_libraries = 'timescaledb'
timescaledb.telemetry_level = off
CONF
  fi
  as_postgres "$PG_BIN/pg_ctl" -D "$data" -l "$pg_log" -w -t 60 \
    -o "-p $POSTGRES_PORT -k $sockets" start >/dev/null ||
    die "PostgreSQL did not start; see $LOGS/postgres.log"
  wait_until 30 "PostgreSQL (127.0.0.1:$POSTGRES_PORT)" \
    "$PG_BIN/pg_isready" -h 127.0.0.1 -p "$POSTGRES_PORT" ||
    die "PostgreSQL did not answer on port $POSTGRES_PORT; see $LOGS/postgres.log"
  local psql=("$PG_BIN/psql" -h 127.0.0.1 -p "$POSTGRES_PORT" -U postgres -v ON_ERROR_STOP=1 -qtA)
  if [[ -z $("${psql[@]}" -d postgres -c "select 1 from pg_database where datname = '$POSTGRES_DB'") ]]; then
    "${psql[@]}" -d postgres -c "create database $POSTGRES_DB" >/dev/null
  fi
  "${psql[@]}" -d "$POSTGRES_DB" -c "create extension if not exists timescaledb" >/dev/null 2>&1 ||
    die "the timescaledb extension cannot be created; run scripts/install.sh"
}

start_influxdb() {
  if running_steadily "$RUN/influxdb.pid" "$INFLUXDB_PORT" InfluxDB; then
    log "InfluxDB already running on port $INFLUXDB_PORT"
    return
  fi
  command -v influxd >/dev/null || die "influxd is not installed: run scripts/install.sh"
  port_open "$INFLUXDB_PORT" && die "port $INFLUXDB_PORT is taken by another program; set INFLUXDB_PORT"
  mkdir -p "$STATE/influxdb"
  INFLUXDB_DATA_DIR=$STATE/influxdb/data \
    INFLUXDB_META_DIR=$STATE/influxdb/meta \
    INFLUXDB_DATA_WAL_DIR=$STATE/influxdb/wal \
    INFLUXDB_HTTP_BIND_ADDRESS=127.0.0.1:$INFLUXDB_PORT \
    INFLUXDB_BIND_ADDRESS=127.0.0.1:$((INFLUXDB_PORT + 2)) \
    INFLUXDB_REPORTING_DISABLED=true \
    INFLUXDB_HTTP_LOG_ENABLED=false \
    INFLUXDB_DATA_QUERY_LOG_ENABLED=false \
    nohup influxd run >>"$LOGS/influxdb.log" 2>&1 &
  echo $! >"$RUN/influxdb.pid"
  wait_until 30 "InfluxDB (127.0.0.1:$INFLUXDB_PORT)" http_ok "http://127.0.0.1:$INFLUXDB_PORT/ping" ||
    die "InfluxDB did not answer on port $INFLUXDB_PORT within 30 s; see $LOGS/influxdb.log"
}

start() {
  mkdir -p "$LOGS" "$RUN"
  start_tansu
  start_postgres
  start_influxdb
}

stop_tansu() { stop_pid "$RUN/tansu.pid" tansu "$KAFKA_PORT"; }

stop_influxdb() { stop_pid "$RUN/influxdb.pid" InfluxDB "$INFLUXDB_PORT"; }

# -m fast: roll back open transactions and disconnect the clients at once
# rather than wait for them to leave (consumers hold pooled connections).
stop_postgres() {
  as_postgres "$PG_BIN/pg_ctl" -D "$PG_DIR/data" status >/dev/null 2>&1 || return 0
  as_postgres "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -m fast -w -t 60 stop >/dev/null ||
    die "PostgreSQL did not stop within 60 s; see $LOGS/postgres.log"
  log "PostgreSQL stopped"
}

stop() {
  [[ -d $STATE ]] || return 0
  stop_influxdb
  stop_postgres
  stop_tansu
}

restart() {
  mkdir -p "$LOGS" "$RUN"
  case ${1:-all} in
    tansu | kafka) stop_tansu; start_tansu ;;
    postgres | postgresql) stop_postgres; start_postgres ;;
    influxdb) stop_influxdb; start_influxdb ;;
    all) stop; start ;;
    *) die "unknown component '$1'; one of: tansu, postgres, influxdb" ;;
  esac
}

status() {
  local ok=0
  if pid_alive "$RUN/tansu.pid" && port_open "$KAFKA_PORT"; then
    echo "kafka      up    127.0.0.1:$KAFKA_PORT"
  else
    echo "kafka      down"; ok=1
  fi
  if "$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$POSTGRES_PORT"; then
    echo "postgres   up    127.0.0.1:$POSTGRES_PORT (database $POSTGRES_DB)"
  else
    echo "postgres   down"; ok=1
  fi
  if http_ok "http://127.0.0.1:$INFLUXDB_PORT/ping"; then
    echo "influxdb   up    127.0.0.1:$INFLUXDB_PORT"
  else
    echo "influxdb   down"; ok=1
  fi
  return "$ok"
}

# The variables that point the services at this infrastructure.
print_env() {
  cat <<ENV
export KAFKA_BROKERS=127.0.0.1:$KAFKA_PORT
export POSTGRES_HOST=127.0.0.1 POSTGRES_PORT=$POSTGRES_PORT POSTGRES_USER=postgres POSTGRES_DB=$POSTGRES_DB
export INFLUXDB_HOST=http://127.0.0.1:$INFLUXDB_PORT
ENV
}

choose_pg_dir
case ${1:-} in
  start) start ;;
  stop) stop ;;
  restart) restart "${2:-all}" ;;
  status) status ;;
  env) print_env ;;
  -h | --help) usage ;;
  *) usage >&2; exit 2 ;;
esac
