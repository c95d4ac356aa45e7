"""Schemathesis hooks for scripts/schemathesis.sh: what JSON Schema cannot say.

event-api's document states every static bound; JSON Schema cannot say:

- An event's `time` must lie in a window around the time of receipt
  (EVENT_MAX_AGE back, EVENT_MAX_AHEAD ahead). The document says
  `integer, minimum 0` and describes the window in words, so a generated
  time is moved into the last day before now. Only times the document
  allows (integers >= 0) are moved: an invalid one stays invalid.
- JSON Schema's `integer` takes 962.0; the server takes it too, but the
  window below is computed on ints, so whole floats are sent as ints.
- The line formats (`application/x-ndjson`, `application/text`) are text,
  which schemathesis only knows how to send as `text/plain`.

The aggregator's document states each parameter's bounds; it cannot say
that a series has at most MAX_BUCKETS buckets (range / step), that `from`
comes before `to`, or bound a duration's value through its pattern. For a
case the document allows, a step above the longest one is replaced, `from`
and `to` are put in order, and a step that would make too many buckets of
the range is widened, as a client reading the words would.
"""

import json
import math
import re
import time

import schemathesis

DAY_MS = 86_400_000


def _into_window(event):
    if isinstance(event, dict):
        moment = event.get("time")
        if isinstance(moment, float) and moment.is_integer():
            moment = int(moment)
        if isinstance(moment, int) and not isinstance(moment, bool) and moment >= 0:
            event["time"] = int(time.time() * 1000) - moment % DAY_MS
    return event


# crates/grid/src/lib.rs: MAX_POINTS and the longest step.
MAX_BUCKETS = 10_000
MAX_STEP_MS = 4_102_444_800_000
AGGREGATOR_PARAMETERS = {"from", "to", "step", "max_points", "last"}
UNIT_MS = {"ms": 1, "s": 1_000, "m": 60_000, "h": 3_600_000, "d": DAY_MS}
DURATION = re.compile(r"([0-9]+)(ms|s|m|h|d)")


def _duration_ms(text):
    parts = DURATION.findall(text)
    return sum(int(n) * UNIT_MS[unit] for n, unit in parts) if parts else None


def _time_ms(value, now_ms):
    if value is None:
        return now_ms
    text = str(value)
    if text.isdigit():
        return int(text)
    if text.startswith("now"):
        back = _duration_ms(text[3:]) or 0
        return now_ms - back
    return None


def _within_bucket_limit(query):
    now_ms = int(time.time() * 1000)
    start, end = _time_ms(query.get("from", "now-10m"), now_ms), _time_ms(query.get("to"), now_ms)
    if start is None or end is None:
        return
    if end <= start:
        # The words say `from` comes before `to`; the patterns cannot.
        start, end = max(min(start, end), 0), max(start, end)
        if start == end:
            start = max(start - 600_000, 0)
        query["from"], query["to"] = str(start), str(end)
    step = query.get("step")
    step_ms = _duration_ms(step) if isinstance(step, str) else None
    if step_ms is None:
        return
    if step_ms == 0:
        # The words say a step is at least a second; `00d` fits the pattern.
        query["step"], step_ms = "1s", 1_000
    if step_ms > MAX_STEP_MS:
        query["step"], step_ms = "1d", DAY_MS
    if (end - start) / step_ms > MAX_BUCKETS - 2:
        seconds = math.ceil((end - start) / (MAX_BUCKETS - 2) / 1000)
        query["step"] = f"{seconds}s"


def _objects_as_text(query):
    """A query parameter holding an object has no form encoding:
    schemathesis flattens `from: {a: 1}` to `from[a]=1`, which names another
    parameter and leaves `from` out, so the server rightly ignores it. The
    parameter is sent as the invalid text it stands for instead."""
    for key in list(query):
        name = key.split("[", 1)[0]
        if "[" in key and name in AGGREGATOR_PARAMETERS:
            value = query.pop(key)
            query.setdefault(name, json.dumps({key: value}, default=str))


# Before every request, not as a generation hook: the examples and coverage
# phases build their cases without the generation hooks.
@schemathesis.hook
def before_call(context, case, kwargs):
    meta = getattr(case, "meta", None)
    query = getattr(case, "query", None)
    if meta is not None and isinstance(query, dict):
        if meta.generation.mode.is_positive:
            _within_bucket_limit(query)
        else:
            _objects_as_text(query)
    body = getattr(case, "body", None)
    if isinstance(body, list):
        case.body = [_into_window(item) for item in body]
    elif isinstance(body, dict):
        case.body = _into_window(body)


@schemathesis.serializer("application/x-ndjson", "application/text")
def lines(context, value):
    if isinstance(value, bytes):
        return value
    return str(value).encode("utf-8")
