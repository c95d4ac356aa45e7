#!/usr/bin/env python3
"""Ingest benchmark: events/s through event-api (HTTP -> Kafka, acknowledged)
against a baseline measured in the same run, on the same broker: the same
events produced straight to Kafka by confluent-kafka with the same delivery
settings (idempotent, acks=all). Prints figures and the ratio.

Starts its own tansu (memory storage) and a release event-api on free ports;
run through scripts/bench.sh, which builds and installs what it needs.
"""

import argparse
import http.client
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, what: str, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    sys.exit(f"{what} did not listen on port {port}")


def events(n: int, run: str) -> list[dict]:
    now = int(time.time() * 1000)
    return [{"id": f"{run}-{i}", "time": now + i, "amount": (i % 1000) / 100} for i in range(n)]


def baseline(brokers: str, topic: str, batch: list[dict]) -> float:
    producer = Producer({
        "bootstrap.servers": brokers, "enable.idempotence": True, "acks": "all",
        "linger.ms": 5, "broker.address.family": "v4", "log_level": 3,
    })
    failures = []
    def report(err, _msg):
        if err is not None:
            failures.append(err)
    started = time.perf_counter()
    for event in batch:
        while True:
            try:
                producer.produce(topic, json.dumps(event, separators=(",", ":")).encode(), key=event["id"], callback=report)
                break
            except BufferError:
                producer.poll(0.01)
        producer.poll(0)
    producer.flush(60)
    elapsed = time.perf_counter() - started
    if failures:
        sys.exit(f"baseline: {len(failures)} deliveries failed: {failures[0]}")
    return len(batch) / elapsed


def through_api(port: int, batch: list[dict], per_request: int, clients: int) -> tuple[float, list[float]]:
    bodies = [json.dumps(batch[i:i + per_request]).encode() for i in range(0, len(batch), per_request)]
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    def worker(mine: list[bytes]) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        for body in mine:
            started = time.perf_counter()
            connection.request("POST", "/v1/events", body, {"content-type": "application/json"})
            response = connection.getresponse()
            answer = response.read()
            with lock:
                latencies.append(time.perf_counter() - started)
                if response.status != 200:
                    errors.append(f"{response.status} {answer[:200]!r}")
    threads = [threading.Thread(target=worker, args=(bodies[k::clients],)) for k in range(clients)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - started
    if errors:
        sys.exit(f"event-api: {len(errors)} requests failed, first: {errors[0]}")
    return len(batch) / elapsed, latencies


def peak_rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--per-request", type=int, default=500)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--tansu", required=True)
    parser.add_argument("--event-api", required=True)
    args = parser.parse_args()

    kafka_port, api_port = free_port(), free_port()
    brokers = f"127.0.0.1:{kafka_port}"
    workdir = tempfile.mkdtemp(prefix="streamproc-bench-")
    tansu = subprocess.Popen(
        [args.tansu, "broker", "--listener-url", f"tcp://{brokers}", "--advertised-listener-url", f"tcp://{brokers}",
         "--storage-engine", "memory://tansu/"],
        cwd=workdir, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    api = None
    try:
        wait_port(kafka_port, "tansu")
        admin = AdminClient({"bootstrap.servers": brokers})
        for topic in ("baseline", "events"):
            admin.create_topics([NewTopic(topic, 3, 1)])[topic].result(10)
        api = subprocess.Popen(
            [args.event_api, "--port", str(api_port), "--kafka-brokers", brokers],
            env={**os.environ, "RUST_LOG": "warn"}, stdout=subprocess.DEVNULL)
        wait_port(api_port, "event-api")

        run = uuid.uuid4().hex[:8]
        # One warm-up round each, so connections and topic metadata are ready.
        baseline(brokers, "baseline", events(2_000, run + "w"))
        through_api(api_port, events(2_000, run + "w"), args.per_request, args.clients)

        direct = baseline(brokers, "baseline", events(args.events, run + "b"))
        via_api, latencies = through_api(api_port, events(args.events, run + "a"), args.per_request, args.clients)
        latencies.sort()
        p50 = statistics.median(latencies) * 1000
        p99 = latencies[int(len(latencies) * 0.99) - 1] * 1000
        print(f"events: {args.events}, {args.per_request} per request, {args.clients} concurrent clients")
        print(f"baseline  confluent-kafka -> Kafka  {direct:>10,.0f} events/s")
        print(f"event-api HTTP -> Kafka (acked)     {via_api:>10,.0f} events/s   "
              f"request p50 {p50:.1f} ms, p99 {p99:.1f} ms")
        print(f"ratio     event-api / baseline      {via_api / direct:>10.2f}")
        print(f"event-api peak memory (VmHWM)       {peak_rss_mib(api.pid):>10.1f} MiB")
        return 0
    finally:
        if api is not None:
            api.terminate()
            api.wait(10)
        tansu.kill()
        tansu.wait()


if __name__ == "__main__":
    sys.exit(main())
