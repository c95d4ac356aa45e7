#!/usr/bin/env bash
# Deletes the kind cluster and its registry container made by
# create_kind_cluster.sh (with the images pushed to it).
#
# Usage: scripts/delete_kind_cluster.sh
# CLUSTER_NAME [streamproc].
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
# shellcheck source=scripts/k8s_lib.sh
source "$REPO_ROOT/scripts/k8s_lib.sh"

case ${1:-} in -h | --help) usage; exit 0 ;; "") ;; *) usage >&2; exit 2 ;; esac
require_tools kind
require_docker_engine

kind delete cluster --name "$CLUSTER_NAME"
docker rm -f "$CLUSTER_NAME-registry" >/dev/null 2>&1 || true
if [[ -f $CLUSTER_ENV ]] && grep -qx 'CLUSTER_TOOL=kind' "$CLUSTER_ENV"; then
  rm -f "$CLUSTER_ENV"
fi
log "kind cluster $CLUSTER_NAME and its registry are gone"
