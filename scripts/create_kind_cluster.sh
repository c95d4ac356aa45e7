#!/usr/bin/env bash
# Creates a local kind cluster for StreamProc: a registry container on
# localhost:REGISTRY_PORT that the cluster pulls from, ports 80/443 of the
# host on the ingress, ingress-nginx installed and waited for, and the
# repository mounted into the node at /streamproc (for scripts/dev_watch.sh).
# Idempotent: an existing cluster or registry is kept.
#
# Usage: scripts/create_kind_cluster.sh
# CLUSTER_NAME [streamproc], REGISTRY_PORT [5001].
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
# shellcheck source=scripts/k8s_lib.sh
source "$REPO_ROOT/scripts/k8s_lib.sh"

case ${1:-} in -h | --help) usage; exit 0 ;; "") ;; *) usage >&2; exit 2 ;; esac
require_tools kind kubectl
require_docker_engine

INGRESS_NGINX_VERSION=controller-v1.12.1
REGISTRY_NAME=$CLUSTER_NAME-registry

if [[ $(docker inspect -f '{{.State.Running}}' "$REGISTRY_NAME" 2>/dev/null || true) != true ]]; then
  log "starting the registry $REGISTRY_NAME on 127.0.0.1:$REGISTRY_PORT"
  docker rm -f "$REGISTRY_NAME" >/dev/null 2>&1 || true
  docker run -d --restart=always --name "$REGISTRY_NAME" -p "127.0.0.1:$REGISTRY_PORT:5000" registry:2 >/dev/null
fi

if kind get clusters 2>/dev/null | grep -x "$CLUSTER_NAME" >/dev/null; then
  log "kind cluster $CLUSTER_NAME exists"
else
  log "creating kind cluster $CLUSTER_NAME"
  kind create cluster --name "$CLUSTER_NAME" --config=- <<KIND
kind: Cluster
apiVersion: kind.x-k8s.io/v1alpha4
containerdConfigPatches:
  - |-
    [plugins."io.containerd.grpc.v1.cri".registry]
      config_path = "/etc/containerd/certs.d"
nodes:
  - role: control-plane
    kubeadmConfigPatches:
      - |
        kind: InitConfiguration
        nodeRegistration:
          kubeletExtraArgs:
            node-labels: "ingress-ready=true"
    extraPortMappings:
      - {containerPort: 80, hostPort: 80, protocol: TCP}
      - {containerPort: 443, hostPort: 443, protocol: TCP}
    extraMounts:
      - {hostPath: "$REPO_ROOT", containerPath: /streamproc}
KIND
fi

# Inside the cluster, localhost:PORT means the registry container.
for node in $(kind get nodes --name "$CLUSTER_NAME"); do
  docker exec "$node" mkdir -p "/etc/containerd/certs.d/localhost:$REGISTRY_PORT"
  printf '[host."http://%s:5000"]\n' "$REGISTRY_NAME" |
    docker exec -i "$node" cp /dev/stdin "/etc/containerd/certs.d/localhost:$REGISTRY_PORT/hosts.toml"
done
if [[ $(docker inspect -f '{{json .NetworkSettings.Networks.kind}}' "$REGISTRY_NAME") == null ]]; then
  docker network connect kind "$REGISTRY_NAME"
fi
kubectl apply -f - >/dev/null <<REGISTRY
apiVersion: v1
kind: ConfigMap
metadata:
  name: local-registry-hosting
  namespace: kube-public
data:
  localRegistryHosting.v1: |
    host: "localhost:$REGISTRY_PORT"
    help: "https://kind.sigs.k8s.io/docs/user/local-registry/"
REGISTRY

log "installing ingress-nginx ($INGRESS_NGINX_VERSION)"
kubectl apply -f "https://raw.githubusercontent.com/kubernetes/ingress-nginx/$INGRESS_NGINX_VERSION/deploy/static/provider/kind/deploy.yaml" >/dev/null
kubectl wait --namespace ingress-nginx --for=condition=ready pod \
  --selector=app.kubernetes.io/component=controller --timeout=300s ||
  die "ingress-nginx did not become ready in 5 minutes (kubectl -n ingress-nginx get pods)"
# The chart's ingress names no class by default, as on k3d, where Traefik is
# the default.
kubectl annotate ingressclass nginx ingressclass.kubernetes.io/is-default-class=true --overwrite >/dev/null

write_cluster_env kind "localhost:$REGISTRY_PORT" nginx
log "cluster ready; next: scripts/build_images.sh && scripts/push_images.sh && scripts/deploy.sh"
