#!/usr/bin/env bash
# Builds the services' container images from the one Dockerfile: the
# workspace is compiled once (dependencies in their own cached layer), then
# each service gets a small non-root runtime image streamproc/<service>:TAG.
# Prints how long each image took and its size.
#
# Usage: scripts/build_images.sh [--podman] [--dev] [SERVICE...]
#   SERVICE   only these (default: all six)
#   --dev     also the development images streamproc/dev and
#             streamproc/dev-binary (see scripts/dev_watch.sh)
#   --podman  build with podman instead of a Docker engine, from base images
#             made on this machine (scripts/install.sh --podman and
#             scripts/base_images.sh run first; both keep what they made)
# IMAGE_TAG [the chart's appVersion] sets the tag.
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
# shellcheck source=scripts/k8s_lib.sh
source "$REPO_ROOT/scripts/k8s_lib.sh"

targets=()
engine=docker
for arg in "$@"; do
  case $arg in
    -h | --help) usage; exit 0 ;;
    --dev) targets+=(dev dev-binary) ;;
    --podman) engine=podman ;;
    -*) usage >&2; exit 2 ;;
    *) known_service "$arg"; targets+=("$arg") ;;
  esac
done
only_dev=1
for target in "${targets[@]}"; do
  [[ $target == dev || $target == dev-binary ]] || only_dev=0
done
((only_dev)) && targets=("${IMAGE_SERVICES[@]}" "${targets[@]}")

if [[ $engine == podman ]]; then
  "$REPO_ROOT/scripts/install.sh" --podman
  "$REPO_ROOT/scripts/base_images.sh"
else
  require_docker_engine
  export DOCKER_BUILDKIT=1
fi

report=()
for target in "${targets[@]}"; do
  image=streamproc/$target:$IMAGE_TAG
  log "building $image with $engine"
  started=$SECONDS
  "$engine" build --target "$target" --tag "$image" "$REPO_ROOT"
  size=$("$engine" image inspect --format '{{.Size}}' "$image")
  report+=("$(awk -v t="$target" -v s=$((SECONDS - started)) -v b="$size" \
    'BEGIN { printf "%-16s %5d s %8.1f MB", t, s, b / 1e6 }')")
done
log "built (tag $IMAGE_TAG; the first image's time includes the workspace build):"
printf '  %s\n' "${report[@]}" >&2
if [[ $engine == docker ]]; then
  log "next: scripts/push_images.sh"
fi
