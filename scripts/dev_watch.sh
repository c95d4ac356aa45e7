#!/usr/bin/env bash
# The "file mounts and watchers" loop on a cluster made by
# create_kind_cluster.sh or create_k3d_cluster.sh, which mount this
# repository into the node at /streamproc. Needs the development images:
# scripts/build_images.sh --dev && scripts/push_images.sh.
#
# Usage: scripts/dev_watch.sh [--source] SERVICE...
#   (default) binary mode: the SERVICE pods run target/release/<service>
#             from the mount and restart when it changes; this script builds
#             once, redeploys, then rebuilds on every source change
#             (watchexec + cargo build --release). The binaries must run in
#             the image's Debian 12: build on a Linux machine with glibc
#             2.36 or older, or use --source.
#   --source  source mode: the pods rebuild from the mounted source
#             themselves (slower, no cross-building); this script
#             redeploys and follows their logs.
# Ctrl-C stops watching; scripts/deploy.sh puts the normal images back.
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
# shellcheck source=scripts/k8s_lib.sh
source "$REPO_ROOT/scripts/k8s_lib.sh"

mode=binary
services=()
for arg in "$@"; do
  case $arg in
    -h | --help) usage; exit 0 ;;
    --source) mode=source ;;
    -*) usage >&2; exit 2 ;;
    *) known_service "$arg"; services+=("$arg") ;;
  esac
done
((${#services[@]} > 0)) || { usage >&2; exit 2; }
require_tools helm kubectl
list=$(IFS=,; echo "${services[*]}")

if [[ $mode == binary ]]; then
  require_tools cargo watchexec
  log "building the services once before the pods start"
  (cd "$REPO_ROOT" && cargo build --release --locked --bins)
fi
"$REPO_ROOT/scripts/deploy.sh" --set "dev.mode=$mode" --set "dev.services={$list}"

if [[ $mode == binary ]]; then
  log "watching the source: every change rebuilds, and the pods of $list restart"
  cd "$REPO_ROOT"
  exec watchexec --watch crates --watch services --exts rs,toml,sql -- cargo build --release --locked --bins
else
  log "the pods of $list rebuild on every change; their logs follow"
  exec kubectl -n "$NAMESPACE" logs -f --max-log-requests 12 --prefix \
    -l "app.kubernetes.io/instance=$RELEASE,app.kubernetes.io/component in ($list)"
fi
