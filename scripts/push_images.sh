#!/usr/bin/env bash
# Pushes the images build_images.sh made to the local registry of the
# cluster made by create_kind_cluster.sh or create_k3d_cluster.sh, under the
# name the chart pulls: <registry>/streamproc/<service>:TAG.
#
# Usage: scripts/push_images.sh [SERVICE...]   (default: every image built)
# IMAGE_TAG [the chart's appVersion] sets the tag.
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
# shellcheck source=scripts/k8s_lib.sh
source "$REPO_ROOT/scripts/k8s_lib.sh"

case ${1:-} in -h | --help) usage; exit 0 ;; esac
require_docker_engine
load_cluster_env

images=("$@")
if ((${#images[@]} == 0)); then
  for image in "${IMAGE_SERVICES[@]}" dev dev-binary; do
    docker image inspect "streamproc/$image:$IMAGE_TAG" >/dev/null 2>&1 && images+=("$image")
  done
  ((${#images[@]} > 0)) || die "no image streamproc/*:$IMAGE_TAG; run scripts/build_images.sh first"
fi
for image in "${images[@]}"; do
  docker image inspect "streamproc/$image:$IMAGE_TAG" >/dev/null 2>&1 ||
    die "streamproc/$image:$IMAGE_TAG is not built; run scripts/build_images.sh $image"
  docker tag "streamproc/$image:$IMAGE_TAG" "$REGISTRY/streamproc/$image:$IMAGE_TAG"
  docker push --quiet "$REGISTRY/streamproc/$image:$IMAGE_TAG"
done
log "pushed ${images[*]} to $REGISTRY (tag $IMAGE_TAG); next: scripts/deploy.sh"
