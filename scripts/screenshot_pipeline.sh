#!/usr/bin/env bash
# Makes docs/pipeline-degraded.png, the READMEs' picture of a degraded
# pipeline, from the real thing: brings up its own local stack (its own
# ports and state directory, like scripts/schemathesis.sh, so a developer's
# stack is not touched), lets events flow, stops consumer-high, and has the
# browser test services/web-ui/tests/pipeline.mjs (headless Chromium) check
# the strip, the words and the shaded period and take the screenshots once
# the stage is behind. Takes the stack down afterwards.
#
# Usage: scripts/screenshot_pipeline.sh
#   SCREENSHOT_WARMUP [120]  seconds of flowing events before the stop
#   SCREENSHOT_RATE [20]     events per second from event-producer
#   SCREENSHOT_HOLD [8]      seconds between the stage turning amber and the
#                            screenshot (the shaded period grows meanwhile;
#                            past 30 s of lag the stage turns red)
# Also writes pipeline-degraded-narrow-dark.png to $STREAMPROC_STATE/screenshots.
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

if [[ ${1:-} == -h || ${1:-} == --help ]]; then
  usage
  exit 0
fi
warmup=${SCREENSHOT_WARMUP:-120}
hold=${SCREENSHOT_HOLD:-8}
for setting in "SCREENSHOT_WARMUP=$warmup" "SCREENSHOT_HOLD=$hold"; do
  [[ ${setting#*=} =~ ^[0-9]+$ ]] || die "${setting%%=*} must be a whole number of seconds, not '${setting#*=}'"
done

export STREAMPROC_STATE=$REPO_ROOT/.state/screenshot
# Below the ephemeral range (32768 and up), apart from the other scripts' stacks.
export KAFKA_PORT=26092 POSTGRES_PORT=26432 INFLUXDB_PORT=26086
export EVENT_API_PORT=26998 EVENT_PRODUCER_PORT=26999 CONSUMER_HIGH_PORT=26996 CONSUMER_LOW_PORT=26997
export AGGREGATOR_PORT=26995 WEB_UI_PORT=26080
export STREAMPROC_PROFILE=${STREAMPROC_PROFILE:-dev}
# event-producer's events per second (the services inherit the environment).
export RATE=${SCREENSHOT_RATE:-20}

up_own_stack
log "events flowing for ${warmup} s"
sleep "$warmup"
"$REPO_ROOT/scripts/local.sh" stop consumer-high
shots=$STREAMPROC_STATE/screenshots
(cd "$REPO_ROOT/services/web-ui" &&
  node tests/pipeline.mjs --url "http://127.0.0.1:$WEB_UI_PORT" --stage consumer-high --hold "$hold" --screenshots "$shots") ||
  die "the pipeline page test failed"
cp "$shots/pipeline-degraded.png" "$REPO_ROOT/docs/pipeline-degraded.png"
log "wrote docs/pipeline-degraded.png (and $shots/pipeline-degraded-narrow-dark.png)"
