#!/usr/bin/env bash
# The service images, run for real: builds them with podman (reusing what is
# built; scripts/build_images.sh --podman), then runs the smoke test with
# every service in its own container, hardened as the chart runs it, against
# the test's own broker and databases on this machine. The smoke test's
# end-to-end checks then pass through the containers: events posted to
# event-api reach the topic, each is stored once, and the aggregator, asked
# through web-ui, counts them all.
#
# Usage: scripts/test_images.sh
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

if [[ ${1:-} == -h || ${1:-} == --help ]]; then
  usage
  exit 0
fi
"$REPO_ROOT/scripts/build_images.sh" --podman
STREAMPROC_RUN=podman "$REPO_ROOT/scripts/smoke_test.sh"
