#!/usr/bin/env bash
# Installs or upgrades StreamProc on the cluster made by
# create_kind_cluster.sh or create_k3d_cluster.sh (helm upgrade --install),
# with that cluster's registry and ingress class and the image tag
# IMAGE_TAG [the chart's appVersion], and waits until everything is ready.
#
# Usage: scripts/deploy.sh [HELM_ARGS...]
# HELM_ARGS go to helm, for example:
#   --set services.event-api.disable=true           keep the cluster's event-api quiet
#   --set redeployOnUpgrade=true --set image.pullPolicy=Always   restart every pod
# RELEASE [streamproc], NAMESPACE [default].
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
# shellcheck source=scripts/k8s_lib.sh
source "$REPO_ROOT/scripts/k8s_lib.sh"

case ${1:-} in -h | --help) usage; exit 0 ;; esac
require_tools helm kubectl
load_cluster_env

log "helm upgrade --install $RELEASE (registry $REGISTRY, tag $IMAGE_TAG, ingress $INGRESS_CLASS)"
helm upgrade --install "$RELEASE" "$CHART_DIR" \
  --namespace "$NAMESPACE" --create-namespace \
  --set "image.registry=$REGISTRY" \
  --set "image.tag=$IMAGE_TAG" \
  --set "ingress.className=$INGRESS_CLASS" \
  --wait --timeout 10m "$@"
log "deployed; check it with: helm test $RELEASE --namespace $NAMESPACE"
