#!/usr/bin/env bash
# Benchmarks: builds the services in release mode and runs each benchmark,
# which prints figures and a ratio against a baseline measured in the same
# run. Not part of scripts/test.sh: figures vary with the machine.
#
# Usage: scripts/bench.sh
# The consume and query benchmarks run their own infrastructure on other ports, under
# .state/bench, so a running local stack is not disturbed.
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

"$REPO_ROOT/scripts/install.sh"
(cd "$REPO_ROOT" && cargo build --release --locked -q --bins)
BIN=$REPO_ROOT/target/release

log "ingest benchmark"
"$VENV/bin/python" "$REPO_ROOT/scripts/bench_ingest.py" --tansu "$TANSU_BIN" --event-api "$BIN/event-api"

log "consume benchmark"
export STREAMPROC_STATE=$REPO_ROOT/.state/bench KAFKA_PORT=39092 POSTGRES_PORT=35432 INFLUXDB_PORT=38086
trap '"$REPO_ROOT/scripts/infra.sh" stop >/dev/null 2>&1 || true' EXIT
"$REPO_ROOT/scripts/infra.sh" start
"$VENV/bin/python" "$REPO_ROOT/scripts/bench_consume.py" --kafka-port "$KAFKA_PORT" \
  --postgres-port "$POSTGRES_PORT" --influxdb-port "$INFLUXDB_PORT" --bin-dir "$BIN"

log "query benchmark"
"$VENV/bin/python" "$REPO_ROOT/scripts/bench_query.py" --kafka-port "$KAFKA_PORT" \
  --postgres-port "$POSTGRES_PORT" --influxdb-port "$INFLUXDB_PORT" --bin-dir "$BIN"
