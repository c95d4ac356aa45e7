#!/usr/bin/env bash
# Runs every test: script and Rust lints, the local-stack smoke test, and the
# Rust unit and integration tests (each integration test starts its own tansu
# broker on a free port). Installs what is missing first.
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO_ROOT"

"$REPO_ROOT/scripts/install.sh"

log "shellcheck"
shellcheck -x scripts/*.sh .ci/run
log "cargo fmt --check"
cargo fmt --all -- --check
log "cargo clippy"
cargo clippy --workspace --all-targets --locked -q -- -D warnings

log "smoke test of the local stack"
"$REPO_ROOT/scripts/smoke_test.sh"

log "cargo test"
TANSU_BIN=$TANSU_BIN cargo test --workspace --locked
