"""Schemathesis hooks for scripts/schemathesis.sh: what JSON Schema cannot say.

event-api's document states every static bound; JSON Schema cannot say:

- An event's `time` must lie in a window around the time of receipt
  (EVENT_MAX_AGE back, EVENT_MAX_AHEAD ahead). The document says
  `integer, minimum 0` and describes the window in words, so a generated
  time is moved into the last day before now. Only times the document
  allows (integers >= 0) are moved: an invalid one stays invalid.
- JSON Schema's `integer` takes 962.0; the server wants 962 (a float
  `time` is refused even when it is whole): whole floats are sent as ints.
- The line formats (`application/x-ndjson`, `application/text`) are text,
  which schemathesis only knows how to send as `text/plain`.
"""

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


# Before every request, not as a generation hook: the examples and coverage
# phases build their cases without the generation hooks.
@schemathesis.hook
def before_call(context, case, kwargs):
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
