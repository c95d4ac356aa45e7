#!/usr/bin/env python3
"""Consume benchmark: how fast each consumer drains a topic of N events into
its store (read, route, write, commit), against baselines measured in the
same run: reading the same topic with confluent-kafka (the broker's read
rate, the ceiling for any consumer), and writing the same rows straight to
each store (psql COPY; line protocol POSTs of 1 000 points to InfluxDB).
Rates are timed from the first stored event to the last, so the consumer
group's join time is left out. Each consumer reads all N records and stores
the half that is its own.

Expects scripts/infra.sh to have started tansu, PostgreSQL and InfluxDB on
the ports given; run through scripts/bench.sh.
"""

import argparse
import json
import os
import subprocess
import sys
import time
import urllib.parse
import urllib.request
import uuid

from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic


def produce(brokers: str, topic: str, events: list[dict]) -> None:
    producer = Producer({"bootstrap.servers": brokers, "linger.ms": 5, "broker.address.family": "v4", "log_level": 3})
    for event in events:
        while True:
            try:
                producer.produce(topic, json.dumps(event).encode(), key=event["id"])
                break
            except BufferError:
                producer.poll(0.01)
    producer.flush(120)


def read_rate(brokers: str, topic: str, expected: int) -> float:
    consumer = Consumer({"bootstrap.servers": brokers, "group.id": "bench-reader", "enable.auto.commit": False,
                         "broker.address.family": "v4", "log_level": 3})
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(3)])
    seen, started = 0, None
    while seen < expected:
        for message in consumer.consume(1000, 1.0):
            if message.error() is None:
                started = started or time.perf_counter()
                seen += 1
    elapsed = time.perf_counter() - started
    consumer.close()
    return expected / elapsed


def psql(port: int, database: str, sql: str, stdin: str | None = None) -> str:
    result = subprocess.run(
        ["psql", "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "-d", database, "-qtAc", sql],
        input=stdin, capture_output=True, text=True, check=True)
    return result.stdout.strip()


def influx(port: int, path: str, params: dict, body: bytes | None = None) -> bytes:
    url = f"http://127.0.0.1:{port}{path}?{urllib.parse.urlencode(params)}"
    with urllib.request.urlopen(urllib.request.Request(url, data=body, method="POST")) as response:
        return response.read()


def influx_count(port: int, database: str, measurement: str) -> int:
    answer = json.loads(influx(port, "/query", {"db": database, "q": f"SELECT count(amount) FROM {measurement}"}))
    series = answer["results"][0].get("series")
    return series[0]["values"][0][1] if series else 0


def drain(binary: str, args: list[str], count, expected: int, env: dict) -> float:
    """Starts a consumer; records read per second from its first stored event
    until its store holds `expected` (half of the records it reads)."""
    process = subprocess.Popen([binary, *args], env={**os.environ, **env, "RUST_LOG": "warn"}, stdout=subprocess.DEVNULL)
    try:
        launched = time.perf_counter()
        started = None
        while (stored := count()) < expected:
            if stored > 0 and started is None:
                started, first = time.perf_counter(), stored
            if process.poll() is not None:
                sys.exit(f"{binary} exited with {process.returncode}")
            if time.perf_counter() - launched > 600:
                sys.exit(f"{binary} did not store {expected} events in 10 minutes")
            time.sleep(0.05)
        if started is None:
            sys.exit(f"{binary} stored everything in one batch: use more events")
        return 2 * (expected - first) / (time.perf_counter() - started)
    finally:
        process.terminate()
        process.wait(30)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--kafka-port", type=int, required=True)
    parser.add_argument("--postgres-port", type=int, required=True)
    parser.add_argument("--influxdb-port", type=int, required=True)
    parser.add_argument("--bin-dir", required=True)
    args = parser.parse_args()

    run = uuid.uuid4().hex[:8]
    brokers = f"127.0.0.1:{args.kafka_port}"
    topic = f"bench-{run}"
    admin = AdminClient({"bootstrap.servers": brokers})
    admin.create_topics([NewTopic(topic, 3, 1)])[topic].result(10)
    now = int(time.time() * 1000)
    # Half high, half low: each consumer stores N/2 and skips N/2.
    events = [{"id": f"{run}-{i}", "time": now + i, "amount": 2.5 if i % 2 else 7.5} for i in range(args.events)]
    produce(brokers, topic, events)
    half = args.events // 2
    topic_rate = read_rate(brokers, topic, args.events)
    database = f"bench_{run}"
    psql(args.postgres_port, "postgres", f"CREATE DATABASE {database}")
    common = ["--port", "0", "--kafka-brokers", brokers, "--kafka-topic", topic]

    # TimescaleDB: baseline COPY of the same rows, then consumer-high.
    psql(args.postgres_port, database, "CREATE TABLE baseline (time timestamptz, amount float8, id text)")
    rows = "".join(f"{e['time']}\t{e['amount']}\t{e['id']}\n" for e in events if e["amount"] > 5)
    started = time.perf_counter()
    psql(args.postgres_port, database,
         "CREATE TEMP TABLE raw (ms bigint, amount float8, id text); COPY raw FROM STDIN; "
         "INSERT INTO baseline SELECT to_timestamp(ms / 1000.0), amount, id FROM raw", stdin=rows)
    copy_rate = half / (time.perf_counter() - started)
    high_rate = drain(
        os.path.join(args.bin_dir, "consumer-high"),
        common + ["--kafka-group-id", f"bench-high-{run}", "--postgres-port", str(args.postgres_port),
                  "--postgres-db", database],
        lambda: int(psql(args.postgres_port, database, "SELECT count(*) FROM events") or 0)
        if psql(args.postgres_port, database, "SELECT to_regclass('events') IS NOT NULL") == "t" else 0,
        half, {})

    # InfluxDB: baseline POSTs of the same points, then consumer-low.
    influx(args.influxdb_port, "/query", {"q": f'CREATE DATABASE "{database}"'})
    lines = [f"baseline,shard={i % 1024} amount={e['amount']},id=\"{e['id']}\" {e['time'] * 1_000_000 + i % 1_000_000}"
             for i, e in enumerate(events) if e["amount"] <= 5]
    started = time.perf_counter()
    for i in range(0, len(lines), 1000):
        influx(args.influxdb_port, "/write", {"db": database, "precision": "ns"}, "\n".join(lines[i:i + 1000]).encode())
    write_rate = len(lines) / (time.perf_counter() - started)
    low_rate = drain(
        os.path.join(args.bin_dir, "consumer-low"),
        common + ["--kafka-group-id", f"bench-low-{run}", "--influxdb-host", f"http://127.0.0.1:{args.influxdb_port}",
                  "--influxdb-db", database],
        lambda: influx_count(args.influxdb_port, database, "event"), half, {})

    print(f"events on the topic: {args.events} ({half} high, {half} low), 3 partitions")
    print(f"baseline      confluent-kafka reads the topic   {topic_rate:>10,.0f} records/s")
    print(f"baseline      psql COPY -> PostgreSQL           {copy_rate:>10,.0f} rows/s")
    print(f"baseline      HTTP /write -> InfluxDB           {write_rate:>10,.0f} points/s")
    print(f"consumer-high read, store half, commit          {high_rate:>10,.0f} records/s   "
          f"ratio to topic read {high_rate / topic_rate:.2f}")
    print(f"consumer-low  read, store half, commit          {low_rate:>10,.0f} records/s   "
          f"ratio to topic read {low_rate / topic_rate:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
