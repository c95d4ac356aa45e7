#!/usr/bin/env python3
"""Send dead letters back into the pipeline once their cause is fixed.

Each dead letter is named by its place in the dead-letter topic, as
/api/v1/dead-letters and /api/v1/events/{id} show it (partition:offset).
Its payload is read from the aggregator and posted to event-api as it was:
event-api checks it again like any event, and its id keeps it from being
stored twice however often it is sent. A payload that is not a valid event
(a record that never was one) is refused by event-api with the reason, and
nothing is sent.

    scripts/requeue.py 0:17 0:18
    scripts/requeue.py --aggregator http://127.0.0.1:9995 --event-api http://127.0.0.1:9998 0:17

Only the Python standard library is used, so it runs wherever python3 does.
Exits non-zero when any dead letter was not sent back.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.error
import urllib.request

from names import AGGREGATOR_PORT, EVENT_API_PORT

TIMEOUT_SECONDS = 10


class RequeueError(Exception):
    pass


def request(url: str, token: str | None, body: bytes | None = None, content_type: str | None = None) -> dict:
    """The JSON answer of a GET (or a POST of `body`); RequeueError with the
    service's own message when it answers an error."""
    req = urllib.request.Request(url, data=body, method="POST" if body is not None else "GET")
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    if content_type:
        req.add_header("Content-Type", content_type)
    try:
        with urllib.request.urlopen(req, timeout=TIMEOUT_SECONDS) as answer:
            return json.load(answer)
    except urllib.error.HTTPError as error:
        try:
            message = json.load(error).get("message", "")
        except ValueError:
            message = ""
        raise RequeueError(f"{url} answered {error.code}: {message}") from None
    except (urllib.error.URLError, OSError) as error:
        raise RequeueError(f"{url}: {error}") from None


def place(text: str) -> tuple[int, int]:
    partition, sep, offset = text.partition(":")
    if not sep or not partition.isdigit() or not offset.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r}: expected partition:offset, such as 0:17")
    return int(partition), int(offset)


def requeue(args: argparse.Namespace, partition: int, offset: int) -> str:
    aggregator = args.aggregator.rstrip("/")
    letter = request(f"{aggregator}/api/v1/dead-letters/{partition}/{offset}", args.aggregator_token)
    payload = letter.get("payload")
    if payload is None:
        raise RequeueError("it has no payload: there is nothing to send back")
    if letter.get("truncated"):
        raise RequeueError(
            f"its payload is {letter.get('payload_bytes')} bytes, longer than any event: it cannot be one"
        )
    api = args.event_api.rstrip("/")
    # One JSON event per line, as event-api reads application/text; the
    # receipt says where the event now is.
    answer = request(
        f"{api}/?receipts=true",
        args.api_token,
        body=payload.encode() + b"\n",
        content_type="application/text",
    )
    receipt = (answer.get("receipts") or [{}])[0]
    return (
        f"event {receipt.get('id')} (time {receipt.get('time')}) is back in the topic at "
        f"partition {receipt.get('partition')}, offset {receipt.get('offset')}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "letters", nargs="+", type=place, metavar="PARTITION:OFFSET", help="a dead letter's place in the dead-letter topic"
    )
    parser.add_argument(
        "--aggregator",
        default=os.environ.get("AGGREGATOR_URL", f"http://127.0.0.1:{AGGREGATOR_PORT}"),
        help="the aggregator's URL (AGGREGATOR_URL)",
    )
    parser.add_argument(
        "--event-api",
        default=os.environ.get("EVENT_API_URL", f"http://127.0.0.1:{EVENT_API_PORT}"),
        help="event-api's URL (EVENT_API_URL)",
    )
    parser.add_argument(
        "--aggregator-token", default=os.environ.get("AGGREGATOR_TOKEN"), help="the aggregator's API_TOKEN (AGGREGATOR_TOKEN)"
    )
    parser.add_argument("--api-token", default=os.environ.get("API_TOKEN"), help="event-api's API_TOKEN (API_TOKEN)")
    args = parser.parse_args()

    failed = 0
    for partition, offset in args.letters:
        try:
            print(f"{partition}:{offset}: {requeue(args, partition, offset)}")
        except RequeueError as error:
            failed += 1
            print(f"{partition}:{offset}: not sent back: {error}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
