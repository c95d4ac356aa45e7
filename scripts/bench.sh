#!/usr/bin/env bash
# The benchmark suite: builds the services and the native baselines in
# release mode, runs each benchmark against a baseline measured in the same
# run, and prints one table (figure, baseline, ratio, goal, settings). Not
# part of scripts/test.sh: figures depend on the machine.
#
# Usage: scripts/bench.sh [ingest|consume|query|freshness ...]   (default: all)
#
# Everything runs on loopback, on its own ports and state (.state/bench*),
# so a running local stack is not disturbed. Each benchmark bounds its own
# time; the whole suite takes about 25 minutes on two cores.
# Writes target/bench/results.json (every row, the date and the machine) and
# target/bench/results.md (the table, as in the README). Naming some
# benchmarks runs those again and reports them with the last figures of the
# others.
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

benchmarks=("$@")
((${#benchmarks[@]})) || benchmarks=(ingest consume query freshness)
OUT=$REPO_ROOT/target/bench
mkdir -p "$OUT"
for benchmark in "${benchmarks[@]}"; do
  rm -f "$OUT/$benchmark.json"
done

"$REPO_ROOT/scripts/install.sh"
(cd "$REPO_ROOT" && cargo build --release --locked -q --bins)
BIN=$REPO_ROOT/target/release
PY=$VENV/bin/python
# Benchmark-only tools (matplotlib for the freshness curve), kept out of
# the install that running and testing need.
if ! "$PY" -c 'import matplotlib' 2>/dev/null; then
  log "benchmark tools: installing into $VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check -r "$REPO_ROOT/scripts/requirements-bench.txt"
fi

# The consume and query benchmarks share one set of infrastructure. Fixed
# ports stay below Linux's ephemeral range (32768-60999): a test running
# beside the benchmarks is given ports from that range, and could take one.
infra_env() {
  export STREAMPROC_STATE=$REPO_ROOT/.state/bench KAFKA_PORT=24092 POSTGRES_PORT=24432 INFLUXDB_PORT=24086
}
infra_started=false
stop_infra() {
  if $infra_started; then
    (infra_env && "$REPO_ROOT/scripts/infra.sh" stop >/dev/null 2>&1) || true
  fi
}
trap stop_infra EXIT

for benchmark in "${benchmarks[@]}"; do
  case $benchmark in
    ingest)
      log "ingest benchmark"
      "$PY" "$REPO_ROOT/scripts/bench_ingest.py" --tansu "$TANSU_BIN" --bin-dir "$BIN" --json "$OUT/ingest.json"
      ;;
    consume | query)
      infra_env
      if ! $infra_started; then
        # From empty stores every run: earlier runs' topics, databases and
        # InfluxDB's background compactions of them slowed the broker's
        # reads and took CPU from what was measured (the native read ranged
        # 21 800-33 900 records/s over one day's runs on kept state).
        "$REPO_ROOT/scripts/infra.sh" stop >/dev/null 2>&1 || true
        rm -rf "$STREAMPROC_STATE"
        "$REPO_ROOT/scripts/infra.sh" start
        infra_started=true
      fi
      log "$benchmark benchmark"
      "$PY" "$REPO_ROOT/scripts/bench_$benchmark.py" --kafka-port "$KAFKA_PORT" --postgres-port "$POSTGRES_PORT" \
        --influxdb-port "$INFLUXDB_PORT" --bin-dir "$BIN" --json "$OUT/$benchmark.json"
      ;;
    freshness)
      log "freshness benchmark: the whole pipeline on its own ports"
      # A subshell, so the stack's ports and state stay its own and its
      # EXIT trap (own_stack_down) takes it down when the benchmark ends.
      (
        export STREAMPROC_STATE=$REPO_ROOT/.state/bench-freshness STREAMPROC_PROFILE=release \
          KAFKA_PORT=23092 POSTGRES_PORT=23432 INFLUXDB_PORT=23086 EVENT_API_PORT=23998 \
          CONSUMER_HIGH_PORT=23996 CONSUMER_LOW_PORT=23997 AGGREGATOR_PORT=23995 WEB_UI_PORT=23080 \
          EVENT_PRODUCER_PORT=23999
        up_own_stack >/dev/null
        "$PY" "$REPO_ROOT/scripts/bench_freshness.py" --event-api-port "$EVENT_API_PORT" \
          --aggregator-port "$AGGREGATOR_PORT" --consumer-high-port "$CONSUMER_HIGH_PORT" \
          --consumer-low-port "$CONSUMER_LOW_PORT" --load-port 23989 --bin-dir "$BIN" --log-dir "$OUT" \
          --state "$STREAMPROC_STATE" --json "$OUT/freshness.json" --curve-json "$OUT/freshness-curve.json" \
          --svg "$REPO_ROOT/docs/freshness-curve.svg"
      )
      ;;
    *)
      echo "unknown benchmark: $benchmark (ingest, consume, query or freshness)" >&2
      exit 2
      ;;
  esac
done

log "results"
rows=()
for benchmark in ingest consume query freshness; do
  [[ -f $OUT/$benchmark.json ]] && rows+=("$OUT/$benchmark.json")
done
"$PY" "$REPO_ROOT/scripts/bench_report.py" "${rows[@]}" --out "$OUT/results.json" --markdown "$OUT/results.md"
