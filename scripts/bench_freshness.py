#!/usr/bin/env python3
"""Freshness benchmark: how long after event-api acknowledges an event (POST
answered 200) the aggregator shows it, in its answer (`/api/v1/series`) and
in its live stream (`/api/v1/stream`), for each series, idle and under
rising steady loads: a curve of latency against load.

A probe POSTs one event at the current time whose amount marks it: the high
probes' amounts grow (1e6, 1e6 + 1, ...) and the low probes' fall (-1e6,
-1e6 - 1, ...), past anything the load sends. Once the bucket's max (high)
or min (low) has reached the marker, this probe's event is in. The answer is
polled every 2 ms; the stream is read all along by a thread of its own, and
its first `series` event holding the marker after the 200 counts. Probes
alternate between the series, one every --gap seconds.

The load is the event-producer service, a process of its own, at each rate
in turn (--rates, then growing by half until the pipeline saturates: it
accepts less than 90% of the rate, misses a probe, or a p99 passes
--give-up-ms). What each phase reaches is read from event-api's
`events_accepted` counter, not assumed.

Where the time goes comes from the services' own metrics, read before and
after each phase (the mean time from a record's Kafka timestamp until a
consumer read it, of a sink write, of a per-second totals refresh, of the
aggregator's query to each store), plus the probe's own ack (POST round
trip) and how much later than the answer the stream showed the event.

Expects a running stack (event-api, both consumers and the aggregator on the
given ports), for example the one scripts/bench.sh starts. Prints the curve
and the breakdown; --svg draws the curve (matplotlib, from
scripts/requirements-bench.txt); --json writes the figures as rows for
scripts/bench_report.py.
"""

import argparse
import http.client
import json
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
import uuid

import names
from bench_native import cpu_seconds, machine_busy_seconds, peak_rss_mib, tree_cpu_seconds

MARK = 1e6
POLL_SECONDS = 0.002
GOAL_P99_MS = 100
SERIES = ("high", "low")
VIEWS = ("answer", "stream")
ACCEPTED = names.NAMES["EVENTS_ACCEPTED_METRIC"] + "_total"


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


def extreme(series_body: dict, series: str) -> float | None:
    """The high series' largest amount or the low series' smallest, over
    the buckets of one /api/v1/series answer (or stream event)."""
    key, pick = ("max", max) if series == "high" else ("min", min)
    values = [p[key] for p in series_body[series]["points"] if p[key] is not None]
    return pick(values) if values else None


def holds(series: str, value: float | None, marker: float) -> bool:
    if value is None:
        return False
    return value >= marker if series == "high" else value <= marker


class StreamWatch(threading.Thread):
    """Reads the aggregator's live stream for as long as the benchmark
    runs, and keeps when each `series` event arrived with the extremes it
    carried. Reconnects when the server ends a stream."""

    def __init__(self, port: int):
        super().__init__(daemon=True)
        self.port = port
        self.lock = threading.Lock()
        self.seen: list[tuple[float, float | None, float | None]] = []

    def run(self) -> None:
        while True:
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
                conn.request("GET", "/api/v1/stream?step=1s&last=2")
                response = conn.getresponse()
                kind = None
                while True:
                    line = response.readline()
                    if not line:
                        break
                    arrived = time.perf_counter()
                    line = line.decode().rstrip("\r\n")
                    if line.startswith("event:"):
                        kind = line[6:].strip()
                    elif line.startswith("data:") and kind == "series":
                        body = json.loads(line[5:])
                        with self.lock:
                            self.seen.append((arrived, extreme(body, "high"), extreme(body, "low")))
                    elif not line:
                        kind = None
                conn.close()
            except (OSError, http.client.HTTPException, ValueError):
                time.sleep(0.1)

    def first_holding(self, series: str, marker: float, since: float) -> float | None:
        """When the stream first carried `marker`, looking from `since`."""
        index = 1 if series == "high" else 2
        with self.lock:
            for seen in self.seen:
                if seen[0] >= since and holds(series, seen[index], marker):
                    return seen[0]
        return None


def bucket_extreme(aggregator: Client, second_ms: int, series: str) -> float | None:
    status, body = aggregator.request(
        "GET", f"/api/v1/series?from={second_ms}&to={second_ms + 1000}&step=1s")
    return extreme(json.loads(body), series) if status == 200 else None


class Probe:
    """One probe: its marker, when it was sent and acknowledged, and when
    the answer showed it."""

    def __init__(self, series: str, number: int):
        self.series = series
        self.marker = MARK + number if series == "high" else -(MARK + number)
        self.sent = self.acknowledged = 0.0
        self.answer: float | None = None
        self.stream: float | None = None

    def run(self, api: Client, aggregator: Client, timeout: float) -> None:
        now_ms = int(time.time() * 1000)
        event = {"id": f"fresh-{uuid.uuid4()}", "time": now_ms, "amount": self.marker}
        self.sent = time.perf_counter()
        status, body = api.request("POST", "/v1/events", json.dumps([event]).encode())
        if status != 200:
            sys.exit(f"probe POST answered {status}: {body[:200]!r}")
        self.acknowledged = time.perf_counter()
        second_ms = now_ms // 1000 * 1000
        while time.perf_counter() - self.acknowledged < timeout:
            if holds(self.series, bucket_extreme(aggregator, second_ms, self.series), self.marker):
                self.answer = time.perf_counter()
                return
            time.sleep(POLL_SECONDS)


class Load:
    """event-producer at `rate` events/s, sending every `interval`, as a
    process of its own (the load generator shares the machine)."""

    def __init__(self, args, rate: float):
        env = dict(os.environ, RATE=f"{rate:g}", SEND_INTERVAL=args.load_interval,
                   API_HOST="127.0.0.1", API_PORT=str(args.event_api_port), PORT=str(args.load_port),
                   MAX_BUFFERED_EVENTS=str(max(10_000, int(rate * 4))), RUST_LOG="warn")
        log = open(os.path.join(args.log_dir, f"load-{rate:g}.log"), "wb")
        self.process = subprocess.Popen([os.path.join(args.bin_dir, "event-producer")], env=env,
                                        stdout=log, stderr=subprocess.STDOUT)
        log.close()

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def metric_samples(port: int) -> dict[str, float]:
    """Every sample of a service's /metrics, by name and labels."""
    status, body = Client(port).request("GET", "/metrics")
    if status != 200:
        sys.exit(f"/metrics on port {port} answered {status}")
    samples = {}
    for line in body.decode().splitlines():
        if not line.startswith("#") and " " in line:
            name, value = line.rsplit(" ", 1)
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


def summary(values: list[float], missed: int) -> dict:
    return {
        "samples": len(values), "missed": missed,
        "p50_ms": round(statistics.median(values), 1) if values else None,
        "p99_ms": round(percentile(values, 0.99), 1) if values else None,
        "max_ms": round(max(values), 1) if values else None,
    }


SERVICES = ("event-api", "consumer-high", "consumer-low", "aggregator", "web-ui", "event-producer")


def service_pids(state: str | None) -> dict[str, int]:
    """Each running service's pid, from the pid files under run/."""
    pids = {}
    for service in SERVICES if state else ():
        try:
            with open(os.path.join(state, "run", f"{service}.pid")) as f:
                pids[service] = int(f.read().strip())
        except (OSError, ValueError):
            continue
    return pids


def infra_pids(state: str | None) -> dict[str, int]:
    """The broker's and the stores' pids (scripts/infra.sh's pid files and
    PostgreSQL's postmaster.pid)."""
    pids = {}
    files = {"tansu": ("run", "tansu.pid"), "influxdb": ("run", "influxdb.pid"),
             "postgresql": ("postgres", "data", "postmaster.pid")}
    for name, parts in files.items() if state else ():
        try:
            with open(os.path.join(state, *parts)) as f:
                pids[name] = int(f.readline().strip())
        except (OSError, ValueError):
            continue
    return pids


def cpu_of(name: str, pid: int) -> float:
    # PostgreSQL works in a process per connection, children of the postmaster.
    return tree_cpu_seconds(pid) if name == "postgresql" else cpu_seconds(pid)


def phase(args, rate: float, stream: StreamWatch, numbers) -> dict:
    api, aggregator = Client(args.event_api_port), Client(args.aggregator_port)
    load = Load(args, rate) if rate > 0 else None
    if load is not None:
        time.sleep(args.warmup)
    ports = {"consumer_high": args.consumer_high_port, "consumer_low": args.consumer_low_port,
             "aggregator": args.aggregator_port, "event_api": args.event_api_port}
    pids = service_pids(args.state) | infra_pids(args.state)
    if load is not None:
        pids["load (event-producer)"] = load.process.pid
    before = {service: metric_samples(port) for service, port in ports.items()}
    cpu_before = {name: cpu_of(name, pid) for name, pid in pids.items()}
    busy_before, started = machine_busy_seconds(), time.perf_counter()
    probes = []
    for i in range(args.samples * 2):
        # A saturated pipeline takes seconds per probe: fewer samples then.
        if time.perf_counter() - started > args.phase_seconds and i % 2 == 0:
            break
        probe = Probe(SERIES[i % 2], next(numbers))
        probe.run(api, aggregator, args.timeout)
        probes.append(probe)
        time.sleep(args.gap)
    elapsed = time.perf_counter() - started
    busy = (machine_busy_seconds() - busy_before) / elapsed
    cpu = {name: round((cpu_of(name, pid) - cpu_before[name]) / elapsed, 2) for name, pid in pids.items()}
    after = {service: metric_samples(port) for service, port in ports.items()}
    # The stream's last events may still be on their way.
    deadline = time.perf_counter() + min(args.timeout, 3)
    while time.perf_counter() < deadline:
        if all(stream.first_holding(p.series, p.marker, p.sent) for p in probes):
            break
        time.sleep(0.05)
    if load is not None:
        load.stop()
    accepted = after["event_api"].get(ACCEPTED, 0) - before["event_api"].get(ACCEPTED, 0)
    result = {"rate": rate, "accepted_per_s": round(accepted / elapsed), "cores_busy": round(busy, 2),
              "cores": cpu, "breakdown_ms": means_ms(before, after)}
    for series in SERIES:
        mine = [p for p in probes if p.series == series]
        for probe in mine:
            seen = stream.first_holding(series, probe.marker, probe.sent)
            probe.stream = seen if seen is not None and seen - probe.acknowledged < args.timeout else None
        answers = [max(0.0, p.answer - p.acknowledged) * 1000 for p in mine if p.answer]
        streams = [max(0.0, p.stream - p.acknowledged) * 1000 for p in mine if p.stream]
        result[series] = {
            "answer": summary(answers, sum(1 for p in mine if p.answer is None)),
            "stream": summary(streams, sum(1 for p in mine if p.stream is None)),
        }
        ack = [(p.acknowledged - p.sent) * 1000 for p in mine]
        behind = [(p.stream - p.answer) * 1000 for p in mine if p.stream and p.answer]
        result["breakdown_ms"][series] = {
            "ack (probe's POST)": round(statistics.median(ack), 1),
            **result["breakdown_ms"][series],
            "stream after answer (median)": round(statistics.median(behind), 1) if behind else None,
        }
    return result


def saturated(result: dict, give_up_ms: float) -> str | None:
    """Why the pipeline cannot take this rate, if it cannot."""
    if result["rate"] and result["accepted_per_s"] < 0.9 * result["rate"]:
        return f"accepted {result['accepted_per_s']:,} of {result['rate']:,.0f} events/s"
    for series in SERIES:
        for view in VIEWS:
            figures = result[series][view]
            if figures["missed"]:
                return f"{series} {view}: {figures['missed']} probes not shown within the timeout"
            if figures["p99_ms"] is not None and figures["p99_ms"] > give_up_ms:
                return f"{series} {view}: p99 {figures['p99_ms']} ms"
    return None


def rates(args):
    """--rates, then growing by half up to --max-rate."""
    for rate in args.rates:
        yield rate
    rate = args.rates[-1] if args.rates else 1000
    while rate * 1.5 <= args.max_rate:
        rate = round(rate * 1.5, -3)
        yield rate


def headline(results: list[dict], view: str) -> float | None:
    """The highest load at which both series' p99 stayed within the goal,
    every lower load included."""
    best = None
    for result in results:
        if result["rate"] == 0:
            continue
        if all(result[s][view]["p99_ms"] is not None and result[s][view]["p99_ms"] <= GOAL_P99_MS
               and not result[s][view]["missed"] for s in SERIES):
            best = result["accepted_per_s"]
        else:
            break
    return best


def label(result: dict) -> str:
    return "idle" if result["rate"] == 0 else f"{result['rate']:,.0f}/s"


def print_curve(results: list[dict]) -> None:
    print(f"{'load':>9} {'accepted/s':>10} {'cores':>5}  {'series':<6} "
          f"{'answer p50 / p99 / max ms':>27}   {'stream p50 / p99 / max ms':>27}")
    for result in results:
        for series in SERIES:
            cells = []
            for view in VIEWS:
                r = result[series][view]
                text = f"{r['p50_ms']!s} / {r['p99_ms']!s} / {r['max_ms']!s}"
                cells.append(text + (f" ({r['missed']} missed)" if r["missed"] else ""))
            print(f"{label(result):>9} {result['accepted_per_s']:>10,} {result['cores_busy']:>5}  "
                  f"{series:<6} {cells[0]:>27}   {cells[1]:>27}")
    print("\nwhere the time goes (ack and stream: median per probe; the rest: mean ms per record, "
          "write, refresh or query):")
    for result in results:
        for series in SERIES:
            for stage, ms in result["breakdown_ms"][series].items():
                print(f"  {label(result):>9} {series:<5} {stage:<50} {ms!s:>7}")
    print("\ncores used over each phase (2 = the whole machine):")
    for result in results:
        used = ", ".join(f"{name} {cores}" for name, cores in result["cores"].items())
        print(f"  {label(result):>9} all {result['cores_busy']}: {used}")


def draw(results: list[dict], path: str) -> None:
    """p99 (solid) and p50 (dotted) against the load reached, one colour per
    series, answer and stream apart, the goal drawn across."""
    import matplotlib
    matplotlib.use("svg")
    # Text as text (a smaller file, readable in a diff) and fixed ids, so
    # that the same figures draw the same file.
    matplotlib.rcParams["svg.fonttype"] = "none"
    matplotlib.rcParams["svg.hashsalt"] = "streamproc"
    import matplotlib.pyplot as plt

    loaded = [r for r in results if r["rate"] > 0]
    figure, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
    colours = {"high": "#d95f02", "low": "#1b9e77"}
    for axis, view in zip(axes, VIEWS):
        for series in SERIES:
            points = [(r["accepted_per_s"], r[series][view]) for r in loaded if r[series][view]["p99_ms"]]
            xs = [x for x, _ in points]
            axis.plot(xs, [f["p99_ms"] for _, f in points], marker="o", color=colours[series],
                      label=f"{series} p99")
            axis.plot(xs, [f["p50_ms"] for _, f in points], linestyle=":", marker=".",
                      color=colours[series], label=f"{series} p50")
        axis.axhline(GOAL_P99_MS, color="#444444", linestyle="--", linewidth=1, label="goal: p99 100 ms")
        axis.set_xscale("log")
        axis.set_yscale("log")
        reached = [r["accepted_per_s"] for r in loaded]
        axis.set_xticks(reached, [f"{x / 1000:.3g}k" for x in reached])
        axis.minorticks_off()
        axis.set_title(f"POST 200 -> in the aggregator's {view}")
        axis.set_xlabel("load reached, events/s")
        axis.grid(True, which="both", alpha=0.3)
    axes[0].set_ylabel("latency, ms")
    axes[1].legend(loc="upper left", fontsize="small")
    figure.tight_layout()
    figure.savefig(path, metadata={"Date": None})
    plt.close(figure)


def rows(results: list[dict], args) -> list[dict]:
    """The figures as bench_report rows: each p99 against the goal, and the
    headline rate."""
    out = []
    for result in results:
        for series in SERIES:
            for view in VIEWS:
                figures = result[series][view]
                out.append({
                    "name": f"freshness {series} {view} p50 / p99, {label(result)}",
                    "figure": figures["p99_ms"], "unit": "ms", "p50_ms": figures["p50_ms"],
                    "limit": GOAL_P99_MS if result["rate"] <= 10_000 else None,
                    "settings": f"{figures['samples'] + figures['missed']} probes, "
                                f"reached {result['accepted_per_s']:,}/s, "
                                f"{result['cores_busy']} cores busy",
                    "breakdown_ms": result["breakdown_ms"][series],
                })
    for view in VIEWS:
        best = headline(results, view)
        out.append({"name": f"highest load with p99 <= {GOAL_P99_MS} ms in the {view}, both series",
                    "figure": best, "unit": "events/s", "settings": "the rates tried, in order"})
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split("\n\n", 1)[1])
    parser.add_argument("--event-api-port", type=int, default=names.EVENT_API_PORT)
    parser.add_argument("--aggregator-port", type=int, default=names.AGGREGATOR_PORT)
    parser.add_argument("--consumer-high-port", type=int, default=names.CONSUMER_HIGH_PORT)
    parser.add_argument("--consumer-low-port", type=int, default=names.CONSUMER_LOW_PORT)
    parser.add_argument("--load-port", type=int, default=23989, help="the load generator's own port [23989]")
    parser.add_argument("--bin-dir", default="target/release", help="where event-producer is [target/release]")
    parser.add_argument("--log-dir", default="target/bench", help="the load generator's logs [target/bench]")
    parser.add_argument("--samples", type=int, default=100, help="probes per series and phase [100]")
    parser.add_argument("--rates", type=lambda s: [float(r) for r in s.split(",") if r],
                        default=[1000, 2000, 5000, 10000, 20000],
                        help="events/s of the loaded phases, in order [1000,2000,5000,10000,20000]")
    parser.add_argument("--max-rate", type=float, default=100_000,
                        help="past --rates, grow the load by half up to this, until saturated [100000]")
    parser.add_argument("--give-up-ms", type=float, default=2000,
                        help="a p99 past this counts as saturated and ends the curve [2000]")
    parser.add_argument("--load-interval", default="50ms", help="the load's SEND_INTERVAL [50ms]")
    parser.add_argument("--phase-seconds", type=float, default=60,
                        help="stop probing a phase after this long, whatever the samples [60]")
    parser.add_argument("--warmup", type=float, default=3, help="seconds of load before probing [3]")
    parser.add_argument("--gap", type=float, default=0.05, help="seconds between probes [0.05]")
    parser.add_argument("--timeout", type=float, default=10, help="seconds a probe waits at most [10]")
    parser.add_argument("--state", help="the stack's state directory: report each service's CPU and "
                        "peak RSS (VmHWM) from the pids under run/")
    parser.add_argument("--max-rss-mib", type=float, default=64, help="goal for each service's peak RSS [64]")
    parser.add_argument("--svg", help="draw the curve here")
    parser.add_argument("--json", help="write the figures here, as rows for scripts/bench_report.py")
    parser.add_argument("--curve-json", help="write every phase's figures here, breakdown and cores included")
    args = parser.parse_args()
    os.makedirs(args.log_dir, exist_ok=True)

    stream = StreamWatch(args.aggregator_port)
    stream.start()
    numbers = iter(range(10**9))
    results = [phase(args, 0, stream, numbers)]
    for rate in rates(args):
        result = phase(args, rate, stream, numbers)
        results.append(result)
        print(f"  {label(result)}: reached {result['accepted_per_s']:,}/s, high answer p99 "
              f"{result['high']['answer']['p99_ms']} ms, low {result['low']['answer']['p99_ms']} ms",
              file=sys.stderr)
        why = saturated(result, args.give_up_ms)
        if why:
            print(f"  saturated at {label(result)}: {why}", file=sys.stderr)
            break
    print_curve(results)
    for view in VIEWS:
        best = headline(results, view)
        print(f"highest load with both series' p99 <= {GOAL_P99_MS} ms in the {view}: "
              f"{'none' if best is None else f'{best:,} events/s'}")
    table = rows(results, args)
    for service, pid in service_pids(args.state).items():
        mib = peak_rss_mib(pid)
        print(f"  peak RSS {service:<15} {mib:6.1f} MiB")
        table.append({"name": f"{service} peak RSS", "figure": round(mib, 1), "unit": "MiB",
                      "limit": args.max_rss_mib, "settings": "VmHWM over the freshness run"})
    if args.svg:
        draw(results, args.svg)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(table, f, indent=2)
    if args.curve_json:
        with open(args.curve_json, "w") as f:
            json.dump(results, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
