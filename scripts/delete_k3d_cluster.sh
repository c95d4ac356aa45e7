#!/usr/bin/env bash
# Deletes the k3d cluster and its registry made by create_k3d_cluster.sh.
#
# Usage: scripts/delete_k3d_cluster.sh
# CLUSTER_NAME [streamproc].
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
# shellcheck source=scripts/k8s_lib.sh
source "$REPO_ROOT/scripts/k8s_lib.sh"

case ${1:-} in -h | --help) usage; exit 0 ;; "") ;; *) usage >&2; exit 2 ;; esac
require_tools k3d

k3d cluster delete "$CLUSTER_NAME"
k3d registry delete "k3d-$CLUSTER_NAME-registry.localhost" 2>/dev/null || true
if [[ -f $CLUSTER_ENV ]] && grep -qx 'CLUSTER_TOOL=k3d' "$CLUSTER_ENV"; then
  rm -f "$CLUSTER_ENV"
fi
log "k3d cluster $CLUSTER_NAME and its registry are gone"
