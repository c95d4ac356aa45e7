#!/usr/bin/env python3
"""Query benchmark: what the aggregator's one-hour window at one-second
resolution costs, first with the window's events alone in the stores, then
with several times more stored outside the window. Baseline, measured in the
same run: the same buckets computed straight from the stored events, as a
query without the per-second totals would.

Both stores are filled the way the consumers leave them: events in
TimescaleDB with their per-second totals; events in InfluxDB marked dirty
per second, whose totals a running consumer-low then computes (its
recovery path). Expects scripts/infra.sh to have started tansu, PostgreSQL
and InfluxDB on the ports given; run through scripts/bench.sh.
"""

import argparse
import json
import os
import random
import re
import socket
import statistics
import subprocess
import sys
import time
import urllib.request

from bench_consume import influx, psql
from confluent_kafka.admin import AdminClient, NewTopic

DATABASE = "bench_query"
HOUR_MS = 3_600_000


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(binary: str, env: dict) -> tuple[subprocess.Popen, str]:
    port = free_port()
    process = subprocess.Popen([binary], env={**os.environ, **env, "PORT": str(port), "RUST_LOG": "warn"},
                               stdout=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/readyz", timeout=5):
                return process, url
        except OSError:
            if process.poll() is not None:
                sys.exit(f"{binary} exited with {process.returncode}")
            time.sleep(0.2)
    process.kill()
    sys.exit(f"{binary} was not ready within 60 s")


def seed_postgres(port: int, start_ms: int, end_ms: int, n: int) -> None:
    """n events evenly over [start, end), with their per-second and per-hour
    totals, as consumer-high's insert statement leaves them. Hours are added
    to: two calls may share the hour at their boundary."""
    window = (f"time >= timestamptz 'epoch' + {start_ms} * interval '1 ms' "
              f"AND time < timestamptz 'epoch' + {end_ms} * interval '1 ms'")
    psql(port, DATABASE, f"""
        INSERT INTO events (time, amount, id)
        SELECT timestamptz 'epoch' + ({start_ms} + i * {end_ms - start_ms}::bigint / {n}) * interval '1 ms',
               5.001 + random() * 4.999, 'q{start_ms}-' || i
        FROM generate_series(0, {n - 1}) AS i;
        INSERT INTO events_per_second (second, events, amount_sum, amount_min, amount_max)
        SELECT floor(extract(epoch FROM time))::bigint, count(*), sum(amount), min(amount), max(amount)
        FROM events WHERE {window}
        GROUP BY 1;
        INSERT INTO events_per_hour AS total (hour, events, amount_sum, amount_min, amount_max)
        SELECT floor(extract(epoch FROM time) / 3600)::bigint, count(*), sum(amount), min(amount), max(amount)
        FROM events WHERE {window}
        GROUP BY 1
        ON CONFLICT (hour) DO UPDATE SET
            events = total.events + excluded.events,
            amount_sum = total.amount_sum + excluded.amount_sum,
            amount_min = least(total.amount_min, excluded.amount_min),
            amount_max = greatest(total.amount_max, excluded.amount_max);
        ANALYZE;""")


def seed_influx(port: int, start_ms: int, end_ms: int, n: int) -> None:
    """n points evenly over [start, end) in consumer-low's shape, and a dirty
    mark per second and per hour, as its sink leaves them before the totals
    are refreshed (consumer-low refreshes the hours after their seconds, and
    before it exits)."""
    lines = []
    for i in range(n):
        ms = start_ms + i * (end_ms - start_ms) // n
        lines.append(f'event,shard={i % 1024} amount={random.random() * 5:.6f},id="q{start_ms}-{i}" '
                     f'{ms * 1_000_000 + i % 1_000_000}')
        if len(lines) == 5000:
            influx(port, "/write", {"db": DATABASE, "precision": "ns"}, "\n".join(lines).encode())
            lines = []
    if lines:
        influx(port, "/write", {"db": DATABASE, "precision": "ns"}, "\n".join(lines).encode())
    marks = [f"event_1s dirty=1i,clean=0i {s}" for s in range(start_ms // 1000, (end_ms + 999) // 1000)]
    marks += [f"event_1h dirty=1i,clean=0i {h * 3600}"
              for h in range(start_ms // HOUR_MS, (end_ms + HOUR_MS - 1) // HOUR_MS)]
    for i in range(0, len(marks), 5000):
        influx(port, "/write", {"db": DATABASE, "precision": "s"}, "\n".join(marks[i:i + 5000]).encode())


def influx_query_seconds(port: int, query: str) -> float:
    started = time.perf_counter()
    influx(port, "/query", {"db": DATABASE, "q": query, "epoch": "ms"})
    return time.perf_counter() - started


def postgres_query_seconds(port: int, sql: str) -> float:
    plan = psql(port, DATABASE, f"EXPLAIN (ANALYZE, TIMING OFF) {sql}")
    return float(re.search(r"Execution Time: ([\d.]+) ms", plan).group(1)) / 1000


def wait_for_totals(port: int) -> float:
    started = time.perf_counter()
    while True:
        answer = json.loads(influx(port, "/query", {
            "db": DATABASE, "q": "SELECT count(dirty) FROM event_1s WHERE dirty <> clean"}))
        series = answer["results"][0].get("series")
        if not series or series[0]["values"][0][1] == 0:
            return time.perf_counter() - started
        if time.perf_counter() - started > 900:
            sys.exit("consumer-low did not refresh the totals within 15 minutes")
        time.sleep(0.5)


def measure(args, aggregator: str, start_ms: int, end_ms: int, expected: int, label: str) -> None:
    pg_window = (f"time >= timestamptz 'epoch' + {start_ms} * interval '1 ms' "
                 f"AND time < timestamptz 'epoch' + {end_ms} * interval '1 ms'")
    queries = {
        "TimescaleDB": (
            lambda: postgres_query_seconds(args.postgres_port, f"""
                SELECT second, sum(events), sum(amount_sum), min(amount_min), max(amount_max)
                FROM events_per_second WHERE second >= {start_ms // 1000} AND second < {end_ms // 1000}
                GROUP BY 1 ORDER BY 1"""),
            lambda: postgres_query_seconds(args.postgres_port, f"""
                SELECT floor(extract(epoch FROM time))::bigint, count(*), sum(amount), min(amount), max(amount)
                FROM events WHERE {pg_window} GROUP BY 1 ORDER BY 1"""),
        ),
        "InfluxDB": (
            lambda: influx_query_seconds(args.influxdb_port, f"""
                SELECT sum(count), sum(sum), min(min), max(max) FROM event_1s
                WHERE time >= {start_ms}ms AND time < {end_ms}ms GROUP BY time(1s) fill(none)"""),
            lambda: influx_query_seconds(args.influxdb_port, f"""
                SELECT count(amount), sum(amount), min(amount), max(amount) FROM event
                WHERE time >= {start_ms}ms AND time < {end_ms}ms GROUP BY time(1s) fill(none)"""),
        ),
    }
    print(f"\n{label}")
    for store, (totals, raw) in queries.items():
        fast = statistics.median(totals() for _ in range(7))
        slow = statistics.median(raw() for _ in range(3))
        print(f"  {store:<12} from per-second totals {fast * 1000:>9.1f} ms   "
              f"baseline from events {slow * 1000:>9.1f} ms   ratio {slow / fast:>7.1f}x")
    url = f"{aggregator}/api/v1/series?from={start_ms}&to={end_ms}&step=1s"
    times = []
    for _ in range(7):
        started = time.perf_counter()
        with urllib.request.urlopen(url, timeout=120) as response:
            body = json.loads(response.read())
        times.append(time.perf_counter() - started)
    counted = sum(p["count"] for series in ("high", "low") for p in body[series]["points"])
    if counted != expected:
        sys.exit(f"the aggregator counted {counted} events in the window, not {expected}")
    print(f"  aggregator   GET /api/v1/series (3 600 buckets, both stores)  median {statistics.median(times) * 1000:.1f} ms,"
          f" max {max(times) * 1000:.1f} ms; counts exact ({counted:,})")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--window-events", type=int, default=1_000_000)
    parser.add_argument("--outside-events", type=int, default=4_000_000)
    parser.add_argument("--kafka-port", type=int, required=True)
    parser.add_argument("--postgres-port", type=int, required=True)
    parser.add_argument("--influxdb-port", type=int, required=True)
    parser.add_argument("--bin-dir", required=True)
    args = parser.parse_args()

    psql(args.postgres_port, "postgres", f"DROP DATABASE IF EXISTS {DATABASE}")
    psql(args.postgres_port, "postgres", f"CREATE DATABASE {DATABASE}")
    influx(args.influxdb_port, "/query", {"q": f'DROP DATABASE "{DATABASE}"'})
    # The consumers only need their topic to exist: nothing is produced.
    admin = AdminClient({"bootstrap.servers": f"127.0.0.1:{args.kafka_port}", "broker.address.family": "v4"})
    for future in admin.create_topics([NewTopic("bench-query", 1, 1)]).values():
        try:
            future.result(30)
        except Exception as error:  # already there from an earlier run
            if "TOPIC_ALREADY_EXISTS" not in str(error):
                raise
    stores = {
        "KAFKA_BROKERS": f"127.0.0.1:{args.kafka_port}", "KAFKA_TOPIC": "bench-query",
        "POSTGRES_PORT": str(args.postgres_port), "POSTGRES_DB": DATABASE,
        "INFLUXDB_HOST": f"http://127.0.0.1:{args.influxdb_port}", "INFLUXDB_DB": DATABASE,
    }
    # TimescaleDB's schema as consumer-high creates it; InfluxDB's totals as
    # consumer-low computes them when it starts and finds seconds dirty.
    high, _ = start(f"{args.bin_dir}/consumer-high", stores)
    high.terminate()
    high.wait(30)
    influx(args.influxdb_port, "/query", {"q": f'CREATE DATABASE "{DATABASE}"'})

    def influx_totals() -> float:
        low, _ = start(f"{args.bin_dir}/consumer-low", stores)
        try:
            return wait_for_totals(args.influxdb_port)
        finally:
            low.terminate()
            low.wait(30)

    aggregator, aggregator_url = start(f"{args.bin_dir}/aggregator", {**stores, "QUERY_TIMEOUT": "120s"})
    try:
        end_ms = int(time.time()) // 60 * 60_000
        start_ms = end_ms - HOUR_MS
        half = args.window_events // 2
        seed_postgres(args.postgres_port, start_ms, end_ms, half)
        seed_influx(args.influxdb_port, start_ms, end_ms, args.window_events - half)
        print(f"consumer-low computed the InfluxDB totals of 3 600 seconds in {influx_totals():.1f} s")
        measure(args, aggregator_url, start_ms, end_ms, args.window_events,
                f"1 h window at 1 s, {args.window_events:,} events stored (all in the window)")

        before = start_ms - 23 * HOUR_MS
        half = args.outside_events // 2
        seed_postgres(args.postgres_port, before, start_ms, half)
        seed_influx(args.influxdb_port, before, start_ms, args.outside_events - half)
        influx_totals()
        total = args.window_events + args.outside_events
        measure(args, aggregator_url, start_ms, end_ms, args.window_events,
                f"the same window, {total:,} events stored ({args.outside_events:,} in the 23 h before it)")
    finally:
        aggregator.terminate()
        aggregator.wait(30)
    return 0


if __name__ == "__main__":
    sys.exit(main())
