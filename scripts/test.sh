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
# The whole `cargo test` run (build included) takes 8-10 minutes here.
CARGO_TEST_TIMEOUT=${CARGO_TEST_TIMEOUT:-30m}

"$REPO_ROOT/scripts/install.sh" --tests

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

log "cargo test (at most $CARGO_TEST_TIMEOUT)"
results=$(mktemp)
trap 'rm -f "$results"' EXIT
# A hung test would otherwise hold CI until its own limit. libtest names a
# test that runs longer than 60 s ("has been running for over 60
# seconds"); the bound turns the hang into a failure soon after. timeout
# signals the whole process group: the test binaries and the brokers and
# stores they started.
status=0
TANSU_BIN=$TANSU_BIN timeout --kill-after=30s "$CARGO_TEST_TIMEOUT" \
  cargo test --workspace --locked 2>&1 | tee "$results" || status=$?
if ((status == 124 || status == 137)); then
  die "cargo test ran past $CARGO_TEST_TIMEOUT (CARGO_TEST_TIMEOUT); the tests still running are named above"
fi
((status == 0)) || exit "$status"
# One closing line for the whole run: cargo's own last line is that of the
# last crate's doc-tests, which may hold none.
awk '/^test result:/ { passed += $4; failed += $6 } END { printf "all tests: %d passed, %d failed\n", passed, failed }' "$results"
