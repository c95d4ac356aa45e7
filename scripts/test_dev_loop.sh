#!/usr/bin/env bash
# The "file mounts and watchers" loop, run for real with podman: event-api
# runs in the dev-binary image with this repository mounted read-only at
# /src, as the chart's dev.mode=binary runs it; each round edits event-api's
# source (a touch), rebuilds it on the host with cargo, and waits until the
# container serves again from a new process (its process_start_time_seconds
# changed and /readyz answers 200). Prints, per round and as medians, the
# host build, the restart in the container, and the two together:
# edit-to-serving. Fails if a rebuild does not reach the container.
#
# Usage: scripts/test_dev_loop.sh [ROUNDS]
#   ROUNDS  rebuilds to time [3]
# Needs the dev-binary image: scripts/build_images.sh --podman --dev event-api
# (run first when the image is missing). Its own broker and databases on
# their own ports and state directory (.state/dev-loop).
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

case ${1:-} in
  -h | --help) usage; exit 0 ;;
esac
ROUNDS=${1:-3}
[[ $ROUNDS =~ ^[1-9][0-9]*$ ]] || die "ROUNDS must be a positive number, not '$ROUNDS'"

export STREAMPROC_STATE=$REPO_ROOT/.state/dev-loop
export KAFKA_PORT=39092 POSTGRES_PORT=35432 INFLUXDB_PORT=38086
PORT=39998
CONTAINER=streamproc-dev-loop-event-api
IMAGE=streamproc/dev-binary:$IMAGE_TAG
BINARY=$REPO_ROOT/target/release/event-api
SOURCE=$REPO_ROOT/services/event-api/src/main.rs

podman image exists "$IMAGE" || "$REPO_ROOT/scripts/build_images.sh" --podman --dev event-api

finish() {
  local status=$?
  if ((status != 0)); then
    echo "--- the container's last lines" >&2
    podman logs --tail 20 "$CONTAINER" >&2 2>&1 || true
  fi
  podman rm --force --ignore "$CONTAINER" >/dev/null 2>&1 || true
  "$REPO_ROOT/scripts/infra.sh" stop >/dev/null 2>&1 || true
  return "$status"
}
trap finish EXIT
"$REPO_ROOT/scripts/infra.sh" stop >/dev/null 2>&1 || true
rm -rf "$STREAMPROC_STATE"
"$REPO_ROOT/scripts/infra.sh" start

log "building event-api on the host (release)"
(cd "$REPO_ROOT" && cargo build --release --locked --bin event-api -q)

# As the chart runs a dev.mode=binary pod: the repository read-only at /src,
# uid 10001, read-only root filesystem, no capabilities.
podman rm --force --ignore "$CONTAINER" >/dev/null
podman run --detach --name "$CONTAINER" --network host \
  --user 10001:10001 --read-only --read-only-tmpfs=false \
  --cap-drop all --security-opt no-new-privileges \
  --volume "$REPO_ROOT:/src:ro" \
  --env SERVICE=event-api --env HOST=127.0.0.1 --env "PORT=$PORT" \
  --env "KAFKA_BROKERS=127.0.0.1:$KAFKA_PORT" --env KAFKA_TOPIC=events \
  "$IMAGE" >/dev/null

# started_at: the serving process's start time, once it is ready; fails
# while nothing (or a process that is not ready) answers.
started_at() {
  http_ok "http://127.0.0.1:$PORT/readyz" || return 1
  curl -fsS --max-time 2 "http://127.0.0.1:$PORT/metrics" |
    awk '$1 == "process_start_time_seconds" { print $2; found = 1 } END { exit !found }'
}
now() { date +%s.%N; }

deadline=$((SECONDS + 60))
until started=$(started_at 2>/dev/null); do
  ((SECONDS < deadline)) || die "event-api in $CONTAINER was not ready within 60 s"
  sleep 0.2
done
log "event-api serves from the mounted binary in $CONTAINER"

rows=()
for ((round = 1; round <= ROUNDS; round++)); do
  edited=$(now)
  touch "$SOURCE"
  (cd "$REPO_ROOT" && cargo build --release --locked --bin event-api -q)
  built=$(now)
  [[ $BINARY -nt $SOURCE ]] || die "cargo did not write a new $BINARY"
  deadline=$((SECONDS + 30))
  while ! restarted=$(started_at 2>/dev/null) || [[ $restarted == "$started" ]]; do
    ((SECONDS < deadline)) ||
      die "round $round: the container still serves the process started at $started, 30 s after the rebuild"
    sleep 0.05
  done
  serving=$(now)
  started=$restarted
  rows+=("$(awk -v r="$round" -v e="$edited" -v b="$built" -v s="$serving" \
    'BEGIN { printf "%d %.2f %.2f %.2f", r, b - e, s - b, s - e }')")
done

# The table, then the medians of each column.
printf '%s\n' "${rows[@]}" | awk '
  BEGIN { printf "%-6s %14s %22s %18s\n", "round", "host build s", "restart in container s", "edit to serving s" }
  { printf "%-6s %14s %22s %18s\n", $1, $2, $3, $4; build[NR] = $2; restart[NR] = $3; total[NR] = $4 }
  function median(values, n,    i, j, t) {
    for (i = 2; i <= n; i++) for (j = i; j > 1 && values[j - 1] > values[j]; j--) { t = values[j]; values[j] = values[j - 1]; values[j - 1] = t }
    return n % 2 ? values[(n + 1) / 2] : (values[n / 2] + values[n / 2 + 1]) / 2
  }
  END { printf "%-6s %14.2f %22.2f %18.2f\n", "median", median(build, NR), median(restart, NR), median(total, NR) }'
echo "dev loop: $ROUNDS of $ROUNDS rebuilds served from the container"
