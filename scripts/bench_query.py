#!/usr/bin/env python3
"""Query benchmark: what the aggregator's one-hour window at one-second
resolution and its totals cost, first with 100 000 events stored (all in
the window), then with 10 000 000 (the rest in the 23 hours before): the
first measurement is the baseline of the second, and the goal is that
neither grows by more than half. Also measured in the same run: the same
buckets computed straight from the stored events, as a query without the
per-second totals would; and tracing one event by id
(/api/v1/events/{id}), whose p99 must stay under 50 ms with 10 000 000
stored: events of TimescaleDB by id alone, events of InfluxDB by id and
time (TRACED low events written by consumer-low itself, a day before the
seeded ones, so that their points sit where consumer-low puts them).

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
import statistics
import subprocess
import sys
import time
import urllib.request

from bench_consume import influx, psql
from bench_native import cpu_seconds, free_port
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

DATABASE = "bench_query"
HOUR_MS = 3_600_000
# Low events written through Kafka and consumer-low for the trace lookups.
TRACED = 200
TRACE_GOAL_MS = 50


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
        INSERT INTO event_ids (id, time) SELECT id, time FROM events WHERE {window};
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
    """Seconds until no second and no hour is left dirty."""
    started = time.perf_counter()
    while True:
        dirty = 0
        for measurement in ("event_1s", "event_1h"):
            answer = json.loads(influx(port, "/query", {
                "db": DATABASE, "q": f"SELECT count(dirty) FROM {measurement} WHERE dirty <> clean"}))
            series = answer["results"][0].get("series")
            dirty += series[0]["values"][0][1] if series else 0
        if dirty == 0:
            return time.perf_counter() - started
        if time.perf_counter() - started > 900:
            sys.exit("consumer-low did not refresh the totals within 15 minutes")
        time.sleep(0.5)


def settle(label: str) -> None:
    """Waits (at most 5 minutes) until InfluxDB has finished the background
    work a bulk load leaves (cache snapshots, TSM compactions): until it
    uses under 5% of a core for 3 s. Queries timed during that work measure
    the compactions, not the query."""
    pid_file = os.path.join(os.environ.get("STREAMPROC_STATE", ""), "run", "influxdb.pid")
    try:
        with open(pid_file) as f:
            pid = int(f.read().strip())
    except (OSError, ValueError):
        print(f"  ({pid_file} not found: timing without waiting for InfluxDB to settle)")
        return
    started = time.perf_counter()
    while time.perf_counter() - started < 300:
        before = cpu_seconds(pid)
        time.sleep(3)
        if (cpu_seconds(pid) - before) / 3 < 0.05:
            break
    print(f"  InfluxDB settled after {label} in {time.perf_counter() - started:.0f} s")


def p95(samples: list[float]) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]


def timed_get(url: str, repeats: int) -> tuple[list[float], dict]:
    times, body = [], {}
    for _ in range(repeats):
        started = time.perf_counter()
        with urllib.request.urlopen(url, timeout=120) as response:
            body = json.loads(response.read())
        times.append(time.perf_counter() - started)
    return times, body


def measure(args, aggregator: str, start_ms: int, end_ms: int, expected: int, stored: int, label: str) -> dict:
    """The aggregator's series and totals p95, and each store's buckets from
    the totals against from the events, in ms."""
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
    result: dict = {"stores": {}}
    for store, (totals, raw) in queries.items():
        fast = statistics.median(totals() for _ in range(7)) * 1000
        slow = statistics.median(raw() for _ in range(3)) * 1000
        result["stores"][store] = (fast, slow)
        print(f"  {store:<12} from per-second totals {fast:>9.1f} ms   "
              f"baseline from events {slow:>9.1f} ms   ratio {slow / fast:>7.1f}x")
    times, body = timed_get(f"{aggregator}/api/v1/series?from={start_ms}&to={end_ms}&step=1s", args.repeats)
    counted = sum(p["count"] for series in ("high", "low") for p in body[series]["points"])
    if counted != expected:
        sys.exit(f"the aggregator counted {counted} events in the window, not {expected}")
    result["series_p95"] = p95(times) * 1000
    print(f"  aggregator   GET /api/v1/series (3 600 buckets, both stores)  p95 {result['series_p95']:.1f} ms,"
          f" median {statistics.median(times) * 1000:.1f} ms; counts exact ({counted:,})")
    times, body = timed_get(f"{aggregator}/api/v1/totals", args.repeats)
    counted = body["high"]["count"] + body["low"]["count"] - TRACED
    if counted != stored:
        sys.exit(f"the aggregator's totals count {counted} events, not {stored}")
    result["totals_p95"] = p95(times) * 1000
    print(f"  aggregator   GET /api/v1/totals  p95 {result['totals_p95']:.1f} ms,"
          f" median {statistics.median(times) * 1000:.1f} ms; counts exact ({counted:,})")
    return result


def produce_traced(kafka_port: int, topic: str, at_ms: int) -> list[tuple[str, int]]:
    """TRACED low events, one ms apart from `at_ms`, on the consumers' topic:
    their ids and times."""
    producer = Producer({"bootstrap.servers": f"127.0.0.1:{kafka_port}", "broker.address.family": "v4",
                         "acks": "all"})
    traced = [(f"traced-{at_ms}-{i}", at_ms + i) for i in range(TRACED)]
    for event_id, ms in traced:
        producer.produce(topic, key=event_id, value=json.dumps({"id": event_id, "time": ms, "amount": 1.5}))
    if producer.flush(30) != 0:
        sys.exit("the traced events were not all acknowledged")
    return traced


def trace_times(aggregator: str, lookups: list[str], repeats: int) -> list[float]:
    """Seconds per GET of each path, `repeats` rounds over them all; each
    must answer 200 with the event stored."""
    times = []
    for _ in range(repeats):
        for path in lookups:
            started = time.perf_counter()
            with urllib.request.urlopen(f"{aggregator}{path}", timeout=60) as response:
                body = json.loads(response.read())
            times.append(time.perf_counter() - started)
            if len(body.get("stored", [])) != 1:
                sys.exit(f"{path}: not stored: {body}")
    return times


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def measure_trace(aggregator: str, high_ids: list[str], traced: list[tuple[str, int]], label: str) -> dict:
    """p50 and p99 of /api/v1/events/{id} in ms: TimescaleDB by id alone,
    InfluxDB by id and time."""
    lookups = {
        "TimescaleDB, by id": [f"/api/v1/events/{event_id}" for event_id in high_ids],
        "InfluxDB, by id and time": [f"/api/v1/events/{event_id}?time={ms}" for event_id, ms in traced],
    }
    result = {}
    print(f"  trace one event ({label})")
    for name, paths in lookups.items():
        times = trace_times(aggregator, paths, 2)
        p50, p99 = percentile(times, 0.5) * 1000, percentile(times, 0.99) * 1000
        result[name] = (p50, p99)
        print(f"  aggregator   GET /api/v1/events/{{id}}, {name}: p50 {p50:.1f} ms, p99 {p99:.1f} ms"
              f" ({len(times)} requests; goal p99 < {TRACE_GOAL_MS} ms)")
    return result


def rows(small: dict, large: dict, args) -> list[dict]:
    settings = (f"one hour at 1 s; {args.window_events:,} events in the hour, then "
                f"{args.total_events:,} stored; {args.repeats} requests")
    out = [{"name": f"/api/v1/{what} p95, {args.total_events:,} stored", "figure": round(large[key], 1),
            "unit": "ms", "baseline_name": f"{args.window_events:,} stored", "baseline": round(small[key], 1),
            "ratio": round(large[key] / small[key], 2), "max_ratio": 1.5, "settings": settings}
           for what, key in (("series", "series_p95"), ("totals", "totals_p95"))]
    for name, (_, p99) in large["trace"].items():
        baseline = small["trace"][name][1]
        out.append({"name": f"/api/v1/events/{{id}} p99, {name}, {args.total_events:,} stored",
                    "figure": round(p99, 1), "unit": "ms", "baseline_name": f"{args.window_events:,} stored",
                    "baseline": round(baseline, 1), "ratio": round(p99 / baseline, 2),
                    "settings": f"goal p99 < {TRACE_GOAL_MS} ms; {TRACED} events looked up twice each"})
    for store, (fast, slow) in large["stores"].items():
        out.append({"name": f"{store}: one hour at 1 s from the totals, {args.total_events:,} stored",
                    "figure": round(fast, 1), "unit": "ms", "baseline_name": "from the events",
                    "baseline": round(slow, 1), "ratio": round(slow / fast, 1),
                    "settings": "speed-up over computing the buckets from the events"})
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--window-events", type=int, default=100_000,
                        help="events in the measured hour, the first measurement [100 000]")
    parser.add_argument("--total-events", type=int, default=10_000_000,
                        help="events stored for the second measurement; the rest in the 23 h before [10 000 000]")
    parser.add_argument("--repeats", type=int, default=60, help="requests per figure [60]")
    parser.add_argument("--kafka-port", type=int, required=True)
    parser.add_argument("--postgres-port", type=int, required=True)
    parser.add_argument("--influxdb-port", type=int, required=True)
    parser.add_argument("--bin-dir", required=True)
    parser.add_argument("--json", help="write the figures here, as rows for scripts/bench_report.py")
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

    def traced_stored() -> int:
        first, last = traced[0][1], traced[-1][1]
        answer = json.loads(influx(args.influxdb_port, "/query", {
            "db": DATABASE, "q": f"SELECT count(amount) FROM event WHERE time >= {first}ms AND time < {last + 1}ms"}))
        series = answer["results"][0].get("series")
        return series[0]["values"][0][1] if series else 0

    def influx_totals() -> float:
        """Runs consumer-low until it has stored the traced events and no
        total is left dirty: seconds taken."""
        low, _ = start(f"{args.bin_dir}/consumer-low", stores)
        try:
            started = time.perf_counter()
            while traced_stored() < TRACED:
                if time.perf_counter() - started > 120:
                    sys.exit(f"consumer-low stored {traced_stored()} of the {TRACED} traced events in 2 minutes")
                time.sleep(0.2)
            wait_for_totals(args.influxdb_port)
            return time.perf_counter() - started
        finally:
            low.terminate()
            low.wait(30)

    end_ms = int(time.time()) // 60 * 60_000
    start_ms = end_ms - HOUR_MS
    # A day before the 24 seeded hours, out of every measured window.
    traced = produce_traced(args.kafka_port, "bench-query", start_ms - 48 * HOUR_MS)
    # The pipeline watch would add its own queries to the ones timed here.
    aggregator, aggregator_url = start(f"{args.bin_dir}/aggregator",
                                       {**stores, "QUERY_TIMEOUT": "120s", "REQUEST_TIMEOUT": "180s",
                                        "PIPELINE_WATCH": "false"})
    try:
        half = args.window_events // 2
        seed_postgres(args.postgres_port, start_ms, end_ms, half)
        seed_influx(args.influxdb_port, start_ms, end_ms, args.window_events - half)
        print(f"consumer-low computed the InfluxDB totals of 3 600 seconds in {influx_totals():.1f} s")
        settle("the first load")
        small = measure(args, aggregator_url, start_ms, end_ms, args.window_events, args.window_events,
                        f"1 h window at 1 s, {args.window_events:,} events stored (all in the window)")
        high_ids = [f"q{start_ms}-{i}" for i in random.sample(range(args.window_events // 2), TRACED)]
        small["trace"] = measure_trace(aggregator_url, high_ids, traced, f"{args.window_events:,} stored")

        before = start_ms - 23 * HOUR_MS
        outside = args.total_events - args.window_events
        half = outside // 2
        seed_postgres(args.postgres_port, before, start_ms, half)
        seed_influx(args.influxdb_port, before, start_ms, outside - half)
        print(f"consumer-low computed the InfluxDB totals of 23 more hours in {influx_totals():.1f} s")
        settle("the second load")
        large = measure(args, aggregator_url, start_ms, end_ms, args.window_events, args.total_events,
                        f"the same window, {args.total_events:,} events stored ({outside:,} in the 23 h before it)")
        high_ids = [f"q{before}-{i}" for i in random.sample(range(half), TRACED // 2)] + high_ids[:TRACED // 2]
        large["trace"] = measure_trace(aggregator_url, high_ids, traced, f"{args.total_events:,} stored")
        worst = max(p99 for _, p99 in large["trace"].values())
        if worst >= TRACE_GOAL_MS:
            print(f"  MISSED: tracing one event took {worst:.1f} ms at p99 (goal < {TRACE_GOAL_MS} ms)")
    finally:
        aggregator.terminate()
        aggregator.wait(30)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows(small, large, args), f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
