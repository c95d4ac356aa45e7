#!/usr/bin/env bash
# Runs every test: script, Dockerfile, Helm chart and Rust lints, the
# local-stack smoke test, schemathesis against the OpenAPI documents, and the
# Rust unit, integration, browser and end-to-end tests (each starts its own
# broker and stores on free ports).
# Installs what is missing first.
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO_ROOT"

"$REPO_ROOT/scripts/install.sh"

log "shellcheck"
shellcheck -x scripts/*.sh .ci/run
log "hadolint Dockerfile"
"$VENV/bin/hadolint" --config .hadolint.yaml Dockerfile
log "helm chart: lint and render with Helm's engine for every values file, objects validated, references and pod scripts checked, invalid values refused"
"$VENV/bin/python" scripts/check_chart.py
log "cargo fmt --check"
cargo fmt --all -- --check
log "cargo clippy"
cargo clippy --workspace --all-targets --locked -q -- -D warnings

log "smoke test of the local stack"
"$REPO_ROOT/scripts/smoke_test.sh"

log "fault-injection suite, short: restarts, kills, outages, a rebalance; reconciled from the stores"
"$VENV/bin/python" "$REPO_ROOT/scripts/fault_suite.py" --short

log "schemathesis: each service against its OpenAPI document"
"$REPO_ROOT/scripts/schemathesis.sh"

log "fuzzing: every cargo-fuzz target for 20 s"
"$REPO_ROOT/scripts/fuzz.sh" 20

log "cargo test"
results=$(mktemp)
trap 'rm -f "$results"' EXIT
TANSU_BIN=$TANSU_BIN cargo test --workspace --locked 2>&1 | tee "$results"
# One closing line for the whole run: cargo's own last line is that of the
# last crate's doc-tests, which may hold none.
awk '/^test result:/ { passed += $4; failed += $6 } END { printf "all tests: %d passed, %d failed\n", passed, failed }' "$results"
