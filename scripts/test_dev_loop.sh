#!/usr/bin/env bash
# The "file mounts and watchers" loop, run for real with podman, in either
# of the chart's two dev modes. event-api runs in a development image with
# this repository mounted at /src; each round edits event-api's source (a
# touch) and waits until the container serves again from a new process (its
# process_start_time_seconds changed and /readyz answers 200). Fails if an
# edit does not reach the container.
#   binary (default, dev.mode=binary): the dev-binary image, the repository
#     read-only, uid 10001; each round rebuilds event-api on the host with
#     cargo. Prints per round and as medians the host build, the restart in
#     the container, and the two together: edit to serving.
#   --source (dev.mode=source): the dev image, as root, rebuilds from the
#     mounted source itself into a cached volume (the first build in a new
#     volume takes minutes). Prints the first start and edit to serving.
#
# Usage: scripts/test_dev_loop.sh [--source] [ROUNDS]
#   ROUNDS  edits to time [3]
# Needs the development images: scripts/build_images.sh --podman --dev
# event-api (run first when one is missing). Its own broker and databases on
# their own ports and state directory (.state/dev-loop).
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

mode=binary
ROUNDS=3
for arg in "$@"; do
  case $arg in
    -h | --help) usage; exit 0 ;;
    --source) mode=source ;;
    -*) usage >&2; exit 2 ;;
    *) ROUNDS=$arg ;;
  esac
done
[[ $ROUNDS =~ ^[1-9][0-9]*$ ]] || die "ROUNDS must be a positive number, not '$ROUNDS'"

export STREAMPROC_STATE=$REPO_ROOT/.state/dev-loop
# Below the ephemeral port range, as every fixed port of the scripts.
export KAFKA_PORT=22092 POSTGRES_PORT=22432 INFLUXDB_PORT=22086
PORT=22998
CONTAINER=$(container_name "$STREAMPROC_STATE" event-api)
# The source mode's cargo target directory, kept between runs.
CARGO_VOLUME=streamproc-dev-loop-cargo
BINARY=$REPO_ROOT/target/release/event-api
SOURCE=$REPO_ROOT/services/event-api/src/main.rs
IMAGE=streamproc/$([[ $mode == binary ]] && echo dev-binary || echo dev):$IMAGE_TAG

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

# As the chart runs a development pod. binary: the repository read-only,
# uid 10001, read-only root filesystem, no capabilities. source: root, the
# repository writable, a volume for cargo's output (the chart's emptyDir).
if [[ $mode == binary ]]; then
  log "building event-api on the host (release)"
  (cd "$REPO_ROOT" && cargo build --release --locked --bin event-api -q)
  run_as=("${HARDENED_RUN[@]}" --volume "$REPO_ROOT:/src:ro")
else
  run_as=(--user 0 --volume "$REPO_ROOT:/src" --volume "$CARGO_VOLUME:/cache")
fi
podman rm --force --ignore "$CONTAINER" >/dev/null
launched=$SECONDS
podman run --detach --name "$CONTAINER" --network host "${run_as[@]}" \
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

# A first build in a new cargo volume compiles every dependency.
first_start=$([[ $mode == binary ]] && echo 60 || echo 1200)
deadline=$((SECONDS + first_start))
until started=$(started_at 2>/dev/null); do
  ((SECONDS < deadline)) || die "event-api in $CONTAINER was not ready within $first_start s"
  sleep 0.2
done
log "event-api serves in $CONTAINER ($mode mode), $((SECONDS - launched)) s after the container started"

rows=()
for ((round = 1; round <= ROUNDS; round++)); do
  edited=$(now)
  touch "$SOURCE"
  built=$edited
  if [[ $mode == binary ]]; then
    (cd "$REPO_ROOT" && cargo build --release --locked --bin event-api -q)
    built=$(now)
    [[ $BINARY -nt $SOURCE ]] || die "cargo did not write a new $BINARY"
  fi
  # The source mode's rebuild runs in the container, inside this wait.
  wait=$([[ $mode == binary ]] && echo 30 || echo 300)
  deadline=$((SECONDS + wait))
  while ! restarted=$(started_at 2>/dev/null) || [[ $restarted == "$started" ]]; do
    ((SECONDS < deadline)) ||
      die "round $round: the container still serves the process started at $started, $wait s after the edit was built"
    sleep 0.05
  done
  serving=$(now)
  started=$restarted
  rows+=("$(awk -v r="$round" -v e="$edited" -v b="$built" -v s="$serving" \
    'BEGIN { printf "%d %.2f %.2f %.2f", r, b - e, s - b, s - e }')")
done

# The table, then the medians of each column. In source mode the rebuild
# is inside the restart: only edit to serving is shown.
printf '%s\n' "${rows[@]}" | awk -v mode="$mode" '
  BEGIN {
    if (mode == "binary") printf "%-6s %14s %22s %18s\n", "round", "host build s", "restart in container s", "edit to serving s"
    else printf "%-6s %40s\n", "round", "edit to serving s (rebuilt in container)"
  }
  {
    if (mode == "binary") printf "%-6s %14s %22s %18s\n", $1, $2, $3, $4
    else printf "%-6s %40s\n", $1, $4
    build[NR] = $2; restart[NR] = $3; total[NR] = $4
  }
  function median(values, n,    i, j, t) {
    for (i = 2; i <= n; i++) for (j = i; j > 1 && values[j - 1] > values[j]; j--) { t = values[j]; values[j] = values[j - 1]; values[j - 1] = t }
    return n % 2 ? values[(n + 1) / 2] : (values[n / 2] + values[n / 2 + 1]) / 2
  }
  END {
    if (mode == "binary") printf "%-6s %14.2f %22.2f %18.2f\n", "median", median(build, NR), median(restart, NR), median(total, NR)
    else printf "%-6s %40.2f\n", "median", median(total, NR)
  }'
echo "dev loop ($mode mode): $ROUNDS of $ROUNDS edits served from the container"
