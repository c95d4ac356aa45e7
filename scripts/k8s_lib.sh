#!/usr/bin/env bash
# Shared by the Kubernetes scripts (build_images, push_images, the cluster
# scripts, deploy, port_forward, dev_watch). Source it after lib.sh.
# shellcheck disable=SC2034  # variables here are used by the sourcing scripts

CLUSTER_NAME=${CLUSTER_NAME:-streamproc}
RELEASE=${RELEASE:-streamproc}
NAMESPACE=${NAMESPACE:-default}
REGISTRY_PORT=${REGISTRY_PORT:-5001}
CHART_DIR=$REPO_ROOT/helm_chart
# What the cluster scripts made: its tool, registry and ingress class.
CLUSTER_ENV=$REPO_ROOT/.state/cluster.env

# require_tools TOOL...: dies naming every missing tool and where to get it.
require_tools() {
  local missing=() tool
  for tool in "$@"; do
    command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
  done
  ((${#missing[@]} == 0)) && return 0
  for tool in "${missing[@]}"; do
    case $tool in
      docker) echo "  docker:     https://docs.docker.com/engine/install/ (and a running engine)" ;;
      kind) echo "  kind:       https://kind.sigs.k8s.io/docs/user/quick-start/#installation" ;;
      k3d) echo "  k3d:        https://k3d.io/#installation" ;;
      helm) echo "  helm:       https://helm.sh/docs/intro/install/" ;;
      kubectl) echo "  kubectl:    https://kubernetes.io/docs/tasks/tools/" ;;
      watchexec) echo "  watchexec:  cargo install watchexec-cli --locked" ;;
      telepresence) echo "  telepresence: https://www.telepresence.io/docs/latest/quick-start/" ;;
      *) echo "  $tool" ;;
    esac
  done >&2
  die "missing: ${missing[*]} (see above)"
}

# require_docker_engine: the docker client alone is not enough.
require_docker_engine() {
  require_tools docker
  docker info >/dev/null 2>&1 || die "docker cannot reach a Docker engine (is it running, and may this user use it?)"
}

# load_cluster_env: REGISTRY, INGRESS_CLASS and CLUSTER_TOOL of the cluster
# that create_kind_cluster.sh or create_k3d_cluster.sh made.
load_cluster_env() {
  [[ -f $CLUSTER_ENV ]] ||
    die "no cluster made by scripts/create_kind_cluster.sh or scripts/create_k3d_cluster.sh ($CLUSTER_ENV is missing)"
  # shellcheck source=/dev/null
  source "$CLUSTER_ENV"
}

# write_cluster_env TOOL REGISTRY INGRESS_CLASS
write_cluster_env() {
  mkdir -p "$(dirname "$CLUSTER_ENV")"
  printf 'CLUSTER_TOOL=%s\nREGISTRY=%s\nINGRESS_CLASS=%s\n' "$1" "$2" "$3" >"$CLUSTER_ENV"
  log "wrote $CLUSTER_ENV (registry $2, ingress class $3)"
}

# known_service NAME: dies unless NAME is one of the services.
known_service() {
  local service
  for service in "${IMAGE_SERVICES[@]}"; do
    [[ $service == "$1" ]] && return 0
  done
  die "unknown service '$1'; one of: ${IMAGE_SERVICES[*]}"
}
