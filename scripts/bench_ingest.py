#!/usr/bin/env python3
"""Ingest benchmark: events/s through event-api (HTTP -> Kafka, answered
once acknowledged) against a native librdkafka producer measured in the same
run, on the same broker, with event-api's own producer settings (acks=all,
linger.ms 5, its idempotence default) and the same number of events in
flight. Two phases:

- batch ingest: 20 connections POSTing 500 events a request, against the
  native producer keeping the same 10 000 events in flight;
- single-event POSTs: 64 keep-alive connections, one event per request,
  against the native producer with 64 in flight.

Both sides are driven by crates/bench's `native-baseline` (`post` is the
load client, `produce` the baseline), so no Python code is on the hot path.
Each pair runs --rounds times, interleaved, and the medians are compared;
the CPU used by the broker, event-api and the client is reported in cores
so that a ratio below its goal can be told to be bound by the broker, the
service or the client. Also reports event-api's peak RSS.

Starts its own tansu (memory storage) and a release event-api on free ports;
run through scripts/bench.sh, which builds what it needs.
"""

import argparse
import os
import subprocess
import sys
import tempfile
import time
import urllib.request

from bench_native import (cores_text, free_port, median_run, native, print_table, rates, ratio_row, rss_row, spread,
                          start_tansu, wait_port, write_rows)


def wait_ready(port: int, seconds: float = 30) -> None:
    """event-api is ready once its topic exists and Kafka answers."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1) as answer:
                if answer.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.1)
    sys.exit("event-api did not become ready")


def pair(args, phase: str, produce: dict, post: dict, watch: dict) -> tuple[list[dict], list[dict]]:
    """Runs the baseline and the service --rounds times, alternately, so a
    disturbance on the shared machine hits both."""
    baselines, services = [], []
    for _ in range(args.rounds):
        baselines.append(native(args.bin_dir, "produce", {"tansu": watch["tansu"]}, **produce))
        services.append(native(args.bin_dir, "post", watch, **post))
        print(f"  {phase}: native producer {baselines[-1]['rate']:,.0f} events/s, "
              f"event-api {services[-1]['rate']:,.0f} events/s", file=sys.stderr)
    return baselines, services


def phase_row(name: str, baselines: list[dict], services: list[dict], in_flight: int, how: str,
              goal: float) -> dict:
    base, service = median_run(baselines), median_run(services)
    latency = service["request_ms"]
    settings = (f"{how}; native producer {in_flight} in flight; median of {len(services)} rounds "
                f"(event-api {rates(services)}; native {rates(baselines)}); {spread(baselines, services)}; "
                f"request p50 {latency['p50']:.1f} ms, p99 {latency['p99']:.1f} ms; "
                f"cores: {cores_text(service['cores'])} | native: {cores_text(base['cores'])}")
    return ratio_row(name, service["rate"], "events/s", f"native producer, {in_flight} in flight",
                     base["rate"], goal, settings)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000, help="events per batch-ingest run [100000]")
    parser.add_argument("--per-request", type=int, default=500, help="events per batch request [500]")
    parser.add_argument("--clients", type=int, default=20,
                        help="connections for batch ingest; the native producer keeps clients x per-request "
                             "events in flight, as many as event-api then has [20]")
    parser.add_argument("--single-events", type=int, default=20_000, help="events per single-event run [20000]")
    parser.add_argument("--connections", type=int, default=64,
                        help="connections for single-event POSTs, and the native producer's in flight [64]")
    parser.add_argument("--rounds", type=int, default=5, help="runs of each side per phase; medians compared [5]")
    parser.add_argument("--max-rss-mib", type=float, default=64, help="goal for event-api's peak RSS [64]")
    parser.add_argument("--tansu", required=True)
    parser.add_argument("--bin-dir", required=True, help="release binaries: event-api, native-baseline")
    parser.add_argument("--json", help="write the figures here, as rows for scripts/bench_report.py")
    args = parser.parse_args()

    batch_in_flight = args.clients * args.per_request
    api_port = free_port()
    url = f"http://127.0.0.1:{api_port}/v1/events"
    tansu, brokers = start_tansu(args.tansu, "memory://tansu/", tempfile.mkdtemp(prefix="streamproc-bench-"))
    api = None
    try:
        api = subprocess.Popen(
            [os.path.join(args.bin_dir, "event-api"), "--port", str(api_port), "--kafka-brokers", brokers],
            env={**os.environ, "RUST_LOG": "warn"}, stdout=subprocess.DEVNULL)
        wait_port(api_port, "event-api")
        wait_ready(api_port)
        watch = {"tansu": tansu.pid, "event-api": api.pid}

        batch = pair(
            args, "batch",
            {"brokers": brokers, "topic": "baseline", "events": args.events, "in_flight": batch_in_flight},
            {"url": url, "connections": args.clients, "per_request": args.per_request, "events": args.events,
             "warmup_requests": 20},
            watch)
        single = pair(
            args, "single",
            {"brokers": brokers, "topic": "baseline", "events": args.single_events, "in_flight": args.connections},
            {"url": url, "connections": args.connections, "per_request": 1, "events": args.single_events,
             "warmup_requests": 1_000},
            watch)

        rows = [
            phase_row("event-api batch ingest", *batch, batch_in_flight,
                      f"{args.events} events, {args.per_request} per request, {args.clients} connections", 0.9),
            phase_row("event-api single-event POSTs", *single, args.connections,
                      f"{args.single_events} events, 1 per request, {args.connections} keep-alive connections",
                      0.8),
            rss_row("event-api", api.pid, args.max_rss_mib, "VmHWM over the ingest benchmark"),
        ]
        print_table(rows)
        write_rows(args.json, rows)
        return 0
    finally:
        if api is not None:
            api.terminate()
            api.wait(10)
        tansu.kill()
        tansu.wait()


if __name__ == "__main__":
    sys.exit(main())
