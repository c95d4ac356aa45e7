#!/usr/bin/env bash
# Benchmarks: builds the services in release mode and runs each benchmark,
# which prints figures and a ratio against a baseline measured in the same
# run. Not part of scripts/test.sh: figures vary with the machine.
#
# Usage: scripts/bench.sh [arguments for bench_ingest.py, e.g. --events 200000]
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

"$REPO_ROOT/scripts/install.sh"
(cd "$REPO_ROOT" && cargo build --release --locked -q -p event-api)
"$VENV/bin/python" "$REPO_ROOT/scripts/bench_ingest.py" \
  --tansu "$TANSU_BIN" --event-api "$REPO_ROOT/target/release/event-api" "$@"
