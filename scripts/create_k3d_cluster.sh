#!/usr/bin/env bash
# Creates a local k3d cluster for StreamProc: a k3d registry on
# REGISTRY_PORT that the cluster pulls from, port 80 of the host on the
# ingress (k3s's bundled Traefik, waited for), and the repository mounted
# into the node at /streamproc (for scripts/dev_watch.sh). Idempotent.
#
# Usage: scripts/create_k3d_cluster.sh
# CLUSTER_NAME [streamproc], REGISTRY_PORT [5001]. The registry is
# k3d-streamproc-registry.localhost:PORT: *.localhost names resolve to this
# machine on most systems; otherwise add it to /etc/hosts.
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
# shellcheck source=scripts/k8s_lib.sh
source "$REPO_ROOT/scripts/k8s_lib.sh"

case ${1:-} in -h | --help) usage; exit 0 ;; "") ;; *) usage >&2; exit 2 ;; esac
require_tools k3d kubectl
require_docker_engine

REGISTRY_NAME=$CLUSTER_NAME-registry.localhost
REGISTRY=k3d-$REGISTRY_NAME:$REGISTRY_PORT

if ! k3d registry list 2>/dev/null | grep "k3d-$REGISTRY_NAME" >/dev/null; then
  log "creating the registry $REGISTRY"
  k3d registry create "$REGISTRY_NAME" --port "$REGISTRY_PORT"
fi
if k3d cluster list 2>/dev/null | awk 'NR > 1 { print $1 }' | grep -x "$CLUSTER_NAME" >/dev/null; then
  log "k3d cluster $CLUSTER_NAME exists"
else
  log "creating k3d cluster $CLUSTER_NAME"
  k3d cluster create "$CLUSTER_NAME" \
    --registry-use "$REGISTRY" \
    --port "80:80@loadbalancer" \
    --volume "$REPO_ROOT:/streamproc@server:0" \
    --wait
fi
kubectl config use-context "k3d-$CLUSTER_NAME" >/dev/null

# k3s installs Traefik with a Job shortly after start: wait for it to exist,
# then to be ready.
wait_until 300 "Traefik deployed" kubectl -n kube-system get deployment traefik ||
  die "Traefik was not deployed in 5 minutes (kubectl -n kube-system get pods)"
kubectl -n kube-system rollout status deployment/traefik --timeout=300s ||
  die "Traefik did not become ready in 5 minutes"

write_cluster_env k3d "$REGISTRY" traefik
log "cluster ready; next: scripts/build_images.sh && scripts/push_images.sh && scripts/deploy.sh"
