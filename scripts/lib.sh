#!/usr/bin/env bash
# Shared helpers for the scripts in this folder. Source it; do not run it.
# shellcheck disable=SC2034  # variables here are used by the sourcing scripts

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# Built tools (tansu, TimescaleDB sources) are cached outside the checkout so
# that fresh clones and CI runs on the same machine reuse them.
CACHE_DIR=${STREAMPROC_CACHE:-$HOME/.cache/streamproc}
TANSU_VERSION=0.6.0
TANSU_BIN=${TANSU_BIN:-$CACHE_DIR/tansu-$TANSU_VERSION/bin/tansu}
PG_BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}
VENV=$CACHE_DIR/venv

# Prints the comment block at the top of the running script: its usage.
usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; }

log() { printf '\033[1m[%s]\033[0m %s\n' "$(basename "$0")" "$*" >&2; }
die() { printf '\033[31m[%s] error:\033[0m %s\n' "$(basename "$0")" "$*" >&2; exit 1; }

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

# stop_pid PIDFILE NAME: SIGTERM, wait up to 15 s, then SIGKILL.
stop_pid() {
  local pidfile=$1 name=$2 pid
  if ! pid_alive "$pidfile"; then
    rm -f "$pidfile"
    return 0
  fi
  pid=$(cat "$pidfile")
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 75); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.2
  done
  if kill -0 "$pid" 2>/dev/null; then
    log "$name did not stop in 15 s; killing it"
    kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$pidfile"
  log "$name stopped"
}
