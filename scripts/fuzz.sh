#!/usr/bin/env bash
# Runs every cargo-fuzz target in fuzz/ for a bounded time and fails on the
# first crash, panic, timeout or out-of-memory. Installs cargo-fuzz into the
# cache if it is missing.
#
# Usage: scripts/fuzz.sh [SECONDS-PER-TARGET] [TARGET...]
#   SECONDS-PER-TARGET  how long each target runs (default 20, as in CI);
#                       a longer run, e.g. ten minutes each: scripts/fuzz.sh 600
#   TARGET              run only these (default: all; `cargo fuzz list`)
#
# Each target starts from its seed corpus in fuzz/corpus/<target>/ (read
# only) and keeps what it finds in fuzz/target/corpus/<target>/, so the next
# run on this checkout starts from there. A crashing input is written to
# fuzz/artifacts/<target>/; replay it with
#   RUSTC_BOOTSTRAP=1 cargo fuzz run -s none <target> fuzz/artifacts/<target>/<file>
# (from fuzz/), then turn it into a unit test in the crate where the bug is.
#
# The machine has stable Rust only: RUSTC_BOOTSTRAP=1 lets it accept the -Z
# flags cargo-fuzz passes. No sanitizer (-s none): every fuzzed crate forbids
# unsafe code, so AddressSanitizer would find nothing a panic does not, and
# it roughly doubles the build time and halves the executions per second.
# Debug assertions and overflow checks stay on (cargo-fuzz's default), so an
# integer overflow on client input is a crash.
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

if [[ ${1:-} == -h || ${1:-} == --help ]]; then
  usage
  exit 0
fi

seconds=${1:-20}
[[ $seconds =~ ^[1-9][0-9]*$ ]] || die "seconds per target must be a positive whole number, got '$seconds'"
shift $(($# > 0 ? 1 : 0))

# A test-only tool: installed here, on first use, not by scripts/install.sh.
CARGO_FUZZ_ROOT=$CACHE_DIR/cargo-fuzz
CARGO_FUZZ_VERSION=0.13.2
if [[ ! -x $CARGO_FUZZ_ROOT/bin/cargo-fuzz ]]; then
  log "cargo-fuzz: installing $CARGO_FUZZ_VERSION into $CARGO_FUZZ_ROOT (about 2 minutes, once)"
  cargo install --root "$CARGO_FUZZ_ROOT" cargo-fuzz --version "$CARGO_FUZZ_VERSION" --locked
fi
export PATH=$CARGO_FUZZ_ROOT/bin:$PATH
export RUSTC_BOOTSTRAP=1

cd "$REPO_ROOT/fuzz"
mapfile -t all_targets < <(cargo fuzz list)
((${#all_targets[@]} > 0)) || die "no fuzz targets found in fuzz/"
targets=("$@")
((${#targets[@]} > 0)) || targets=("${all_targets[@]}")
for target in "${targets[@]}"; do
  [[ " ${all_targets[*]} " == *" $target "* ]] || die "no fuzz target '$target'; there are: ${all_targets[*]}"
done

log "cargo fmt --check (fuzz/)"
cargo fmt -- --check

# The fuzz workspace builds from its own lock file as it stands: cargo-fuzz
# has no --locked, so a fetch that may not change the lock goes first.
cargo fetch --locked

build_flags=(-s none)
log "building the fuzz targets"
started=$SECONDS
cargo fuzz build "${build_flags[@]}"
log "built in $((SECONDS - started)) s"

for target in "${targets[@]}"; do
  seeds=corpus/$target
  work=target/corpus/$target
  [[ -d $seeds ]] || die "no seed corpus for $target: add a few inputs to fuzz/$seeds/"
  mkdir -p "$work"
  log "$target: fuzzing for $seconds s"
  # -timeout: one input taking longer than 10 s is a hang, and a failure.
  # -rss_limit_mb: a body parser whose memory grows with its input fails.
  if ! cargo fuzz run "${build_flags[@]}" "$target" "$work" "$seeds" -- \
    -max_total_time="$seconds" -timeout=10 -rss_limit_mb=1024 -print_final_stats=1 \
    2>"$work.log"; then
    tail -n 60 "$work.log" >&2
    die "$target failed: the crashing input is in fuzz/artifacts/$target/ (full log: fuzz/$work.log)"
  fi
  grep -E '^stat::number_of_executed_units|Done [0-9]+ runs' "$work.log" | tail -n 1 >&2 || true
done
log "all ${#targets[*]} targets ran $seconds s each without a crash"
