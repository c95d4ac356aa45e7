"""Schemathesis hooks for scripts/schemathesis.sh: what JSON Schema cannot say.

event-api's documents state every static bound; two rules are not static:

- An event's `time` must lie in a window around the time of receipt
  (EVENT_MAX_AGE back, EVENT_MAX_AHEAD ahead). The document says
  `integer, minimum 0` and describes the window in words, so a generated
  time is moved into the last day before now. Only times the document
  allows (integers >= 0) are moved: an invalid one stays invalid.
- The line formats (`application/x-ndjson`, `application/text`) are text,
  which schemathesis only knows how to send as `text/plain`.
"""

import time

import schemathesis

DAY_MS = 86_400_000


def _into_window(event):
    if isinstance(event, dict):
        moment = event.get("time")
        if isinstance(moment, int) and not isinstance(moment, bool) and moment >= 0:
            event["time"] = int(time.time() * 1000) - moment % DAY_MS
    return event


@schemathesis.hook
def map_body(context, body):
    if isinstance(body, list):
        return [_into_window(item) for item in body]
    return _into_window(body)


@schemathesis.serializer("application/x-ndjson", "application/text")
def lines(context, value):
    if isinstance(value, bytes):
        return value
    return str(value).encode("utf-8")
