#!/usr/bin/env python3
"""Reads a Kafka topic with an independent client (confluent-kafka, not the
project's own code) and prints each record as a JSON line.

Run it with the venv that scripts/install.sh sets up; it re-executes itself
there when started with another Python.
"""

import argparse
import json
import sys
import time

import in_venv  # first: it may start this script again under the venv

in_venv.require("confluent_kafka")
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition  # noqa: E402

import names  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--brokers", default="127.0.0.1:9092")
    parser.add_argument("--topic", default=names.EVENTS_TOPIC)
    parser.add_argument("--count", type=int, help="stop after this many records")
    parser.add_argument("--idle", type=float, default=3.0, help="stop after this many seconds without a record")
    parser.add_argument("--timeout", type=float, default=10.0, help="stop after this many seconds in all")
    parser.add_argument("--summary", action="store_true", help="print only the count of records per partition")
    args = parser.parse_args()

    consumer = Consumer({
        "bootstrap.servers": args.brokers,
        "group.id": "streamproc-read-topic",
        "enable.auto.commit": False,
        "broker.address.family": "v4",
    })
    metadata = consumer.list_topics(args.topic, timeout=10)
    topic = metadata.topics.get(args.topic)
    if topic is None or topic.error is not None or not topic.partitions:
        print(f"topic {args.topic!r} not found on {args.brokers}", file=sys.stderr)
        return 1
    consumer.assign([TopicPartition(args.topic, p, OFFSET_BEGINNING) for p in topic.partitions])

    per_partition: dict[int, int] = {}
    seen = 0
    started = last = time.monotonic()
    while (
        (args.count is None or seen < args.count)
        and time.monotonic() - last < args.idle
        and time.monotonic() - started < args.timeout
    ):
        message = consumer.poll(0.2)
        if message is None:
            continue
        if message.error():
            print(f"error: {message.error()}", file=sys.stderr)
            continue
        last = time.monotonic()
        seen += 1
        per_partition[message.partition()] = per_partition.get(message.partition(), 0) + 1
        if not args.summary:
            print(json.dumps({
                "partition": message.partition(),
                "offset": message.offset(),
                "key": message.key().decode() if message.key() else None,
                "value": json.loads(message.value()),
            }))
    consumer.close()
    if args.summary:
        print(json.dumps({"records": seen, "per_partition": per_partition}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
