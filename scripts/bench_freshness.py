#!/usr/bin/env python3
"""Freshness benchmark: how long after event-api acknowledges an event (POST
answered 200) the aggregator counts it, for each series, idle and under load.

A probe POSTs one event into a second of its own (an hour back, so the load
never lands in it), then asks the aggregator for that one-second bucket in a
tight loop until its count has grown by one. Probes alternate between the
high and the low series. The load, when asked for, is a steady stream of
small batches from a thread of its own, at the given rate.

Where the time goes comes from the services' own metrics, read before and
after each phase: the mean time from a record's Kafka timestamp until a
consumer read it (broker and fetch wait), of a sink write, of a
per-second totals refresh (consumer-low), and of the aggregator's query to
each store. The rest is batching, offset commits and the probe's polling.

Expects a running stack (event-api, both consumers and the aggregator on the
given ports), for example the one scripts/bench.sh starts. Prints
percentiles and the breakdown per series and phase; with --json writes the
figures as rows for scripts/bench_report.py.
"""

import argparse
import http.client
import json
import os
import statistics
import sys
import threading
import time
import uuid

import names
from bench_native import peak_rss_mib

HIGH_AMOUNT, LOW_AMOUNT = 100.0, 1.0
POLL_SECONDS = 0.002


class Client:
    """One keep-alive HTTP connection, reopened after an error."""

    def __init__(self, port: int):
        self.port = port
        self.conn: http.client.HTTPConnection | None = None

    def request(self, method: str, path: str, body: bytes | None = None) -> tuple[int, bytes]:
        for attempt in range(2):
            if self.conn is None:
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
            try:
                headers = {"content-type": "application/json"} if body is not None else {}
                self.conn.request(method, path, body=body, headers=headers)
                response = self.conn.getresponse()
                return response.status, response.read()
            except (OSError, http.client.HTTPException):
                self.conn.close()
                self.conn = None
                if attempt == 1:
                    raise
        raise AssertionError("unreachable")


def bucket_count(aggregator: Client, second_ms: int, series: str) -> int | None:
    status, body = aggregator.request(
        "GET", f"/api/v1/series?from={second_ms}&to={second_ms + 1000}&step=1s")
    if status != 200:
        return None
    for point in json.loads(body)[series]["points"]:
        if point["time"] == second_ms:
            return point["count"]
    return None


def probe(api: Client, aggregator: Client, second_ms: int, series: str, timeout: float) -> float | None:
    """Seconds from the POST's 200 until the aggregator counts the event."""
    before = bucket_count(aggregator, second_ms, series)
    if before is None:
        return None
    amount = HIGH_AMOUNT if series == "high" else LOW_AMOUNT
    event = {"id": f"fresh-{uuid.uuid4()}", "time": second_ms + 500, "amount": amount}
    status, body = api.request("POST", "/v1/events", json.dumps([event]).encode())
    if status != 200:
        sys.exit(f"probe POST answered {status}: {body[:200]!r}")
    acknowledged = time.perf_counter()
    while time.perf_counter() - acknowledged < timeout:
        count = bucket_count(aggregator, second_ms, series)
        if count is not None and count > before:
            return time.perf_counter() - acknowledged
        time.sleep(POLL_SECONDS)
    return None


class Load(threading.Thread):
    """Posts `rate` events/s as `per_request`-event batches, at now, alternating
    high and low amounts, until stopped."""

    def __init__(self, port: int, rate: float, per_request: int):
        super().__init__(daemon=True)
        self.client = Client(port)
        self.interval = per_request / rate
        self.per_request = per_request
        self.stop = threading.Event()
        self.sent = 0
        self.failed = 0

    def run(self) -> None:
        run = uuid.uuid4().hex[:8]
        due = time.perf_counter()
        while not self.stop.is_set():
            now_ms = int(time.time() * 1000)
            batch = [{"id": f"load-{run}-{self.sent + i}", "time": now_ms,
                      "amount": 1.0 + (self.sent + i) % 2 * 9.0} for i in range(self.per_request)]
            status, _ = self.client.request("POST", "/v1/events", json.dumps(batch).encode())
            if status == 200:
                self.sent += self.per_request
            else:
                self.failed += 1
            due += self.interval
            pause = due - time.perf_counter()
            if pause > 0:
                time.sleep(pause)


def metric_sums(port: int) -> dict[str, float]:
    """Every `_sum` and `_count` sample of a service's /metrics, by name and labels."""
    client = Client(port)
    status, body = client.request("GET", "/metrics")
    if status != 200:
        sys.exit(f"/metrics on port {port} answered {status}")
    samples = {}
    for line in body.decode().splitlines():
        if line.startswith("#") or " " not in line:
            continue
        name, value = line.rsplit(" ", 1)
        if "_sum" in name or "_count" in name:
            samples[name] = float(value)
    return samples


# (stage, service, histogram) for the breakdown, in the order an event meets them.
STAGES = {
    "high": [("broker and fetch wait", "consumer_high", "record_wait_seconds"),
             ("sink write (events and totals, one transaction)", "consumer_high", "sink_write_seconds"),
             ("aggregator query", "aggregator", 'store_query_seconds{store="timescaledb"}')],
    "low": [("broker and fetch wait", "consumer_low", "record_wait_seconds"),
            ("sink write (events, then marks)", "consumer_low", "sink_write_seconds"),
            ("per-second totals refresh", "consumer_low", "rollup_refresh_seconds"),
            ("aggregator query", "aggregator", 'store_query_seconds{store="influxdb"}')],
}


def means_ms(before: dict, after: dict) -> dict[str, dict[str, float | None]]:
    """Mean of each breakdown histogram over a phase, in ms."""
    result: dict[str, dict[str, float | None]] = {}
    for series, stages in STAGES.items():
        result[series] = {}
        for stage, service, histogram in stages:
            name, _, labels = histogram.partition("{")
            labels = "{" + labels if labels else ""
            sum_key, count_key = f"{name}_sum{labels}", f"{name}_count{labels}"
            count = after[service].get(count_key, 0) - before[service].get(count_key, 0)
            total = after[service].get(sum_key, 0) - before[service].get(sum_key, 0)
            result[series][stage] = round(total / count * 1000, 1) if count > 0 else None
    return result


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def phase(args, label: str, base_ms: int, rate: float) -> dict:
    api, aggregator = Client(args.event_api_port), Client(args.aggregator_port)
    load = None
    if rate > 0:
        load = Load(args.event_api_port, rate, args.per_request)
        load.start()
        time.sleep(args.warmup)
    ports = {"consumer_high": args.consumer_high_port, "consumer_low": args.consumer_low_port,
             "aggregator": args.aggregator_port}
    before = {service: metric_sums(port) for service, port in ports.items()}
    found: dict[str, list[float]] = {"high": [], "low": []}
    missed = {"high": 0, "low": 0}
    for i in range(args.samples * 2):
        series = "high" if i % 2 == 0 else "low"
        latency = probe(api, aggregator, base_ms + i * 1000, series, args.timeout)
        if latency is None:
            missed[series] += 1
        else:
            found[series].append(latency * 1000)
        time.sleep(args.gap)
    if load is not None:
        load.stop.set()
        load.join()
        if load.failed:
            print(f"  load: {load.failed} requests failed", file=sys.stderr)
    after = {service: metric_sums(port) for service, port in ports.items()}
    result = {"phase": label, "rate": rate, "breakdown_ms": means_ms(before, after)}
    for series, values in found.items():
        result[series] = {
            "samples": len(values), "missed": missed[series],
            "p50_ms": round(statistics.median(values), 1) if values else None,
            "p99_ms": round(percentile(values, 0.99), 1) if values else None,
            "max_ms": round(max(values), 1) if values else None,
        }
    return result


SERVICES = ("event-api", "consumer-high", "consumer-low", "aggregator", "web-ui", "event-producer")


def service_peaks_mib(state: str) -> dict[str, float]:
    """Each running service's peak RSS, found by the pid files under run/."""
    peaks = {}
    for service in SERVICES:
        try:
            with open(os.path.join(state, "run", f"{service}.pid")) as f:
                peaks[service] = peak_rss_mib(int(f.read().strip()))
        except (OSError, ValueError):
            continue
    return peaks


def rows(results: list[dict], args) -> list[dict]:
    """The figures as bench_report rows: each percentile against its goal."""
    goals = {("idle", "p50_ms"): 100, ("load", "p99_ms"): 250}
    out = []
    for result in results:
        kind = "idle" if result["rate"] == 0 else "load"
        for series in ("high", "low"):
            for stat in ("p50_ms", "p99_ms"):
                out.append({
                    "name": f"freshness {series} {stat[:3]}, {result['phase']}",
                    "figure": result[series][stat], "unit": "ms",
                    "limit": goals.get((kind, stat)),
                    "settings": f"{args.samples} probes, POST 200 -> counted by the aggregator",
                    "breakdown_ms": result["breakdown_ms"][series],
                })
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split("\n\n", 1)[1])
    parser.add_argument("--event-api-port", type=int, default=names.EVENT_API_PORT)
    parser.add_argument("--aggregator-port", type=int, default=names.AGGREGATOR_PORT)
    parser.add_argument("--consumer-high-port", type=int, default=names.CONSUMER_HIGH_PORT)
    parser.add_argument("--consumer-low-port", type=int, default=names.CONSUMER_LOW_PORT)
    parser.add_argument("--samples", type=int, default=100, help="probes per series and phase [100]")
    parser.add_argument("--rate", type=float, default=1000, help="events/s of the loaded phase [1000]")
    parser.add_argument("--per-request", type=int, default=10, help="events per load request [10]")
    parser.add_argument("--warmup", type=float, default=3, help="seconds of load before probing [3]")
    parser.add_argument("--gap", type=float, default=0.05, help="seconds between probes [0.05]")
    parser.add_argument("--timeout", type=float, default=10, help="seconds a probe waits at most [10]")
    parser.add_argument("--state", help="the stack's state directory: report each service's peak RSS "
                        "(VmHWM) from the pids under run/")
    parser.add_argument("--max-rss-mib", type=float, default=64, help="goal for each service's peak RSS [64]")
    parser.add_argument("--json", help="write the figures here, as rows for scripts/bench_report.py")
    args = parser.parse_args()

    # Each run probes its own seconds, an hour back and clear of earlier runs'.
    base_ms = (int(time.time()) - 3600 - 4 * args.samples * 2) // 1 * 1000
    results = [phase(args, "idle", base_ms, 0)]
    results.append(phase(args, f"{args.rate:g} events/s", base_ms + args.samples * 2 * 1000, args.rate))
    print(f"{'phase':<18} {'series':<6} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} {'missed':>7}")
    for result in results:
        for series in ("high", "low"):
            r = result[series]
            print(f"{result['phase']:<18} {series:<6} {r['p50_ms']!s:>8} {r['p99_ms']!s:>8} "
                  f"{r['max_ms']!s:>8} {r['missed']:>7}")
    print("\nwhere the time goes (mean ms per record, write, refresh or query):")
    for result in results:
        for series in ("high", "low"):
            for stage, ms in result["breakdown_ms"][series].items():
                print(f"  {result['phase']:<16} {series:<5} {stage:<50} {ms!s:>7}")
    table = rows(results, args)
    if args.state:
        for service, mib in service_peaks_mib(args.state).items():
            print(f"  peak RSS {service:<15} {mib:6.1f} MiB")
            table.append({"name": f"{service} peak RSS", "figure": round(mib, 1), "unit": "MiB",
                          "limit": args.max_rss_mib, "settings": "VmHWM over the freshness run"})
    if args.json:
        with open(args.json, "w") as f:
            json.dump(table, f, indent=2)
    return 1 if any(r[s]["missed"] for r in results for s in ("high", "low")) else 0


if __name__ == "__main__":
    sys.exit(main())
