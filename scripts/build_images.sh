#!/usr/bin/env bash
# Builds the services' container images from the one Dockerfile: the
# workspace is compiled once (dependencies in their own cached layer), then
# each service gets a small non-root runtime image streamproc/<service>:TAG.
#
# Usage: scripts/build_images.sh [--dev] [SERVICE...]
#   SERVICE   only these (default: all six)
#   --dev     also the development images streamproc/dev and
#             streamproc/dev-binary (see scripts/dev_watch.sh)
# IMAGE_TAG [the chart's appVersion] sets the tag.
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
# shellcheck source=scripts/k8s_lib.sh
source "$REPO_ROOT/scripts/k8s_lib.sh"

targets=()
for arg in "$@"; do
  case $arg in
    -h | --help) usage; exit 0 ;;
    --dev) targets+=(dev dev-binary) ;;
    -*) usage >&2; exit 2 ;;
    *) known_service "$arg"; targets+=("$arg") ;;
  esac
done
only_dev=1
for target in "${targets[@]}"; do
  [[ $target == dev || $target == dev-binary ]] || only_dev=0
done
((only_dev)) && targets=("${IMAGE_SERVICES[@]}" "${targets[@]}")

require_docker_engine
export DOCKER_BUILDKIT=1
for target in "${targets[@]}"; do
  log "building streamproc/$target:$IMAGE_TAG"
  docker build --target "$target" --tag "streamproc/$target:$IMAGE_TAG" "$REPO_ROOT"
done
log "built: ${targets[*]} (tag $IMAGE_TAG); next: scripts/push_images.sh"
