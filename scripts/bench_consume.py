#!/usr/bin/env python3
"""Consume benchmark: how fast each consumer drains a topic of N events into
its store (read, route, write, commit), against native baselines measured in
the same run by crates/bench's `native-baseline`: librdkafka reading the same
topic (the broker's read rate, the ceiling for any consumer), and writing
the same rows straight to each store (binary COPY into a table like
consumer-high's; consumer-low's points in bulk line-protocol requests).
Each consumer is compared with the lower of the two, in records/s: each
stores one record in two, so a sink writing R rows/s lets it drain 2R
records/s. Rates are timed from the first stored event to the last, so the
consumer group's join time is left out. The native read and both drains run
in rounds (--rounds, 3), each drain into new databases; the medians are
compared and each round's ratio printed, since the broker's read rate alone
moved by a fifth between runs on this machine. Also reports each consumer's
peak RSS and the CPU it and the whole machine used while it drained.

In the first round TimescaleDB is then rebuilt from the log: its tables are
truncated and `consumer-high --rebuild-from beginning` replays the topic
into them; every second's count and sum must come back as they were, and
the rebuild's rate (records read per second over its whole run, start
included) is compared with consumer-high's drain rate measured just before
(goal: at least 0.8).

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

from bench_native import (cores_text, cpu_seconds, free_port, machine_busy_seconds, median_run, native,
                          peak_rss_mib, print_table, rates, ratio_row, spread, tree_cpu_seconds, write_rows)


def psql(port: int, database: str, sql: str, stdin: str | None = None) -> str:
    result = subprocess.run(
        ["psql", "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "-d", database, "-qtAc", sql],
        input=stdin, capture_output=True, text=True, check=True)
    return result.stdout.strip()


class PsqlSession:
    """One psql process for many queries. A poll every 50 ms that started
    psql each time would take about a core of this machine (~40 ms of CPU
    a start) away from what it measures."""

    def __init__(self, port: int, database: str):
        self.process = subprocess.Popen(
            ["psql", "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "-d", database, "-qtA"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)

    def query(self, sql: str) -> list[str]:
        """The result's lines; none when the query failed (psql goes on)."""
        self.process.stdin.write(f"{sql};\n\\echo END-OF-RESULT\n")
        self.process.stdin.flush()
        lines = []
        while (line := self.process.stdout.readline()) and line.rstrip("\n") != "END-OF-RESULT":
            lines.append(line.rstrip("\n"))
        return lines

    def close(self) -> None:
        self.process.stdin.close()
        self.process.wait(10)


def influx(port: int, path: str, params: dict, body: bytes | None = None) -> bytes:
    url = f"http://127.0.0.1:{port}{path}?{urllib.parse.urlencode(params)}"
    with urllib.request.urlopen(urllib.request.Request(url, data=body, method="POST")) as response:
        return response.read()


def influx_count(port: int, database: str, measurement: str) -> int:
    answer = json.loads(influx(port, "/query", {"db": database, "q": f"SELECT count(amount) FROM {measurement}"}))
    series = answer["results"][0].get("series")
    return series[0]["values"][0][1] if series else 0


def infra_pid(state: str | None, name: str) -> int | None:
    try:
        with open(os.path.join(state or "", "run", f"{name}.pid")) as f:
            pid = int(f.read().strip())
        return pid if os.path.exists(f"/proc/{pid}") else None
    except (OSError, ValueError):
        return None


def metrics(port: int) -> dict[str, float]:
    """A consumer's unlabelled metrics, from its /metrics: none until it
    answers."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as response:
            body = response.read().decode()
    except OSError:
        return {}
    values = {}
    for line in body.splitlines():
        name, _, value = line.partition(" ")
        if name and not name.startswith("#") and "{" not in name:
            values[name] = float(value)
    return values


def written(port: int) -> int:
    """The events a consumer has written to its store (the store acknowledged
    them): 0 until it answers."""
    return int(metrics(port).get("events_written_total", 0))


# What the consume loop waited on while the next batch was read and the
# one in hand stored (crates/kafka/src/consume/metrics.rs).
WAITS = {"store": "consumer_waited_on_store_seconds_total", "records": "consumer_waited_for_records_seconds_total"}


def drain(binary: str, args: list[str], count, expected: int, watch: dict[str, int], trees: dict[str, int]) -> dict:
    """Starts a consumer; records read per second from its first stored event
    until it has stored `expected` (half of the records it reads), the
    cores it, the processes in `watch`, those in `trees` with their children
    (PostgreSQL's backends) and the machine used meanwhile, and its peak RSS. Progress is
    read from the consumer's own counter of acknowledged writes: counting
    the store every 50 ms would cost the store more CPU as it fills (a
    count of 500 000 rows takes PostgreSQL tens of milliseconds) and so
    measure the poll. The store's own count is checked once at the end."""
    port = free_port()
    process = subprocess.Popen([binary, *args, "--port", str(port)], env={**os.environ, "RUST_LOG": "warn"},
                               stdout=subprocess.DEVNULL)
    cpu = {os.path.basename(binary): lambda: cpu_seconds(process.pid),
           **{name: (lambda pid=pid: cpu_seconds(pid)) for name, pid in watch.items()},
           **{name: (lambda pid=pid: tree_cpu_seconds(pid)) for name, pid in trees.items()}}
    try:
        launched = time.perf_counter()
        started = None
        while (stored := written(port)) < expected:
            if stored > 0 and started is None:
                started, first = time.perf_counter(), stored
                cpu_before = {name: seconds() for name, seconds in cpu.items()}
                waits_before = metrics(port)
                busy_before = machine_busy_seconds()
            if process.poll() is not None:
                sys.exit(f"{binary} exited with {process.returncode}")
            if time.perf_counter() - launched > 600:
                sys.exit(f"{binary} did not store {expected} events in 10 minutes")
            time.sleep(0.05)
        if started is None:
            sys.exit(f"{binary} stored everything in one batch: use more events")
        elapsed = time.perf_counter() - started
        waits_after = metrics(port)
        waited = {side: (waits_after.get(name, 0) - waits_before.get(name, 0)) / elapsed
                  for side, name in WAITS.items()}
        cores = {name: (seconds() - cpu_before[name]) / elapsed for name, seconds in cpu.items()}
        cores["machine"] = (machine_busy_seconds() - busy_before) / elapsed
        if (in_store := count()) != expected:
            sys.exit(f"{binary} reported {stored} events written, but its store holds {in_store}, not {expected}")
        return {"rate": 2 * (expected - first) / elapsed, "cores": cores, "waited": waited,
                "rss_mib": peak_rss_mib(process.pid)}
    finally:
        process.terminate()
        process.wait(30)


def seconds(session: "PsqlSession") -> dict[int, tuple[int, float]]:
    """Every second's count and sum, from consumer-high's per-second totals."""
    rows = session.query("SELECT second || ',' || events || ',' || amount_sum FROM events_per_second")
    return {int(s): (int(c), float(a)) for s, c, a in (row.split(",") for row in rows if row)}


def rebuild_high(bin_dir: str, args: list[str], session: "PsqlSession") -> dict:
    """Truncates TimescaleDB's tables, replays the topic into them with
    `consumer-high --rebuild-from beginning`, and checks every second came
    back: its rate in records/s (from its own summary) and the seconds."""
    before = seconds(session)
    session.query("TRUNCATE events, event_ids, events_per_second, events_per_hour")
    started = time.perf_counter()
    done = subprocess.run([os.path.join(bin_dir, "consumer-high"), *args, "--port", "0", "--rebuild-from", "beginning"],
                          env={**os.environ, "RUST_LOG": "warn"}, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(f"the rebuild failed: {done.stderr[-2000:]}")
    summary = done.stdout.strip().splitlines()[-1]
    print(f"consumer-high --rebuild-from beginning: {summary} ({wall:.1f} s with the process start)")
    after = seconds(session)
    if set(after) != set(before):
        sys.exit(f"the rebuild brought back {len(after)} seconds of {len(before)}")
    for second, (count, total) in before.items():
        again, again_total = after[second]
        if again != count or abs(again_total - total) > 1e-9 * max(abs(total), 1.0):
            sys.exit(f"second {second}: {count} events, sum {total} before; {again}, {again_total} rebuilt")
    rate = float(summary.split("(")[-1].split(" records/s")[0])
    print(f"every second's count and sum as before the truncate ({len(before):,} seconds)")
    return {"rate": rate, "seconds": len(before)}


def consumer_rows(service: str, drains: list[dict], reads: list[dict], sink: dict, sink_what: str,
                  max_rss_mib: float) -> list:
    """The drain row (the median round's rate against the median native
    read, or the sink's rate if lower) and the peak RSS row (the highest of
    the rounds)."""
    drained, read = median_run(drains), median_run(reads)
    # The sink's rate in records of this topic: one record in two is stored.
    sink_records = 2 * sink["rate"]
    baseline_name, baseline = min(
        ("native read", read["rate"]),
        (f"{sink_what} x 2", sink_records),
        key=lambda named: named[1])
    settings = (f"read, route, store half, commit; median of {len(drains)} rounds (drains {rates(drains)}; "
                f"native reads {rates(reads)}); {spread(reads, drains)}; lower of native read "
                f"{read['rate']:,.0f} records/s ({read['rate_from_assignment']:,.0f} with its first fetch) and "
                f"{sink_what} {sink['rate']:,.0f} {sink['unit']} x 2 = {sink_records:,.0f} records/s; "
                f"the loop waited on the store {drained['waited']['store']:.0%} of the time and for records "
                f"{drained['waited']['records']:.0%}; "
                f"cores while draining: {cores_text(drained['cores'])} | native read: {cores_text(read['cores'])} "
                f"| {sink_what}: {cores_text(sink['cores'])}")
    return [
        ratio_row(f"{service} drain", drained["rate"], "records/s", baseline_name, baseline, 0.9, settings),
        {"name": f"{service} peak RSS", "figure": round(max(d["rss_mib"] for d in drains), 1), "unit": "MiB",
         "baseline_name": None, "baseline": None, "ratio": None, "target_ratio": None, "limit": max_rss_mib,
         "settings": f"VmHWM while draining the topic, highest of {len(drains)} rounds"},
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=2_000_000,
                        help="events on the topic (about 200 MB; half, 1 000 000, stored in each store) [2000000]")
    parser.add_argument("--rounds", type=int, default=3,
                        help="rounds of native read, consumer-high drain and consumer-low drain; medians "
                             "compared [3]")
    parser.add_argument("--max-rss-mib", type=float, default=64, help="goal for each consumer's peak RSS [64]")
    parser.add_argument("--kafka-port", type=int, required=True)
    parser.add_argument("--postgres-port", type=int, required=True)
    parser.add_argument("--influxdb-port", type=int, required=True)
    parser.add_argument("--state", default=os.environ.get("STREAMPROC_STATE"),
                        help="infra.sh's state directory, for its pid files [$STREAMPROC_STATE]")
    parser.add_argument("--bin-dir", required=True, help="release binaries: the consumers, native-baseline")
    parser.add_argument("--json", help="write the figures here, as rows for scripts/bench_report.py")
    args = parser.parse_args()
    if args.rounds < 1:
        sys.exit("--rounds must be at least 1")

    run = uuid.uuid4().hex[:8]
    brokers = f"127.0.0.1:{args.kafka_port}"
    topic = f"bench-{run}"
    # The broker's and InfluxDB's CPU is reported beside each figure, when
    # infra.sh's pid files say which processes they are.
    pids = {name: pid for name, pid in ((n, infra_pid(args.state, n)) for n in ("tansu", "influxdb")) if pid}
    broker = {k: v for k, v in pids.items() if k == "tansu"}
    # Half high, half low (native-baseline alternates amounts either side of
    # the watermark): each consumer stores N/2 and skips N/2.
    native(args.bin_dir, "produce", {}, brokers=brokers, topic=topic, events=args.events, in_flight=10_000,
           warmup=0)
    half = args.events // 2
    common = ["--kafka-brokers", brokers, "--kafka-topic", topic]
    # PostgreSQL's postmaster: its children, the backends, do the work.
    with open(os.path.join(psql(args.postgres_port, "postgres", "SHOW data_directory"), "postmaster.pid")) as f:
        postgres = {"postgres": int(f.readline())}

    # The sinks' own rates, once: binary COPY of as many rows into
    # TimescaleDB, and as many points in bulk line protocol into InfluxDB.
    baselines = f"bench_{run}_baseline"
    psql(args.postgres_port, "postgres", f"CREATE DATABASE {baselines}")
    copy = native(args.bin_dir, "copy", {},
                  postgres_url=f"postgres://postgres@127.0.0.1:{args.postgres_port}/{baselines}", events=half)
    line = native(args.bin_dir, "line", pids, influx_url=f"http://127.0.0.1:{args.influxdb_port}",
                  db=baselines, events=half)
    psql(args.postgres_port, "postgres", f"DROP DATABASE {baselines} WITH (FORCE)")
    influx(args.influxdb_port, "/query", {"q": f"DROP DATABASE {baselines}"}, b"")

    # Rounds of the broker's own read and both drains, so that a
    # disturbance of the shared machine hits each, and each drain is
    # compared with a read measured minutes apart, not tens of minutes.
    # Every round stores into new databases, dropped after it, so that no
    # round pays for an earlier one's compactions.
    reads, highs, lows = [], [], []
    rebuilt = None
    for round_ in range(args.rounds):
        database = f"bench_{run}_{round_}"
        reads.append(native(args.bin_dir, "consume", broker, brokers=brokers, topic=topic, expect=args.events))
        psql(args.postgres_port, "postgres", f"CREATE DATABASE {database}")
        session = PsqlSession(args.postgres_port, database)
        highs.append(drain(
            os.path.join(args.bin_dir, "consumer-high"),
            common + ["--kafka-group-id", f"bench-high-{run}-{round_}", "--postgres-port", str(args.postgres_port),
                      "--postgres-db", database],
            # Until consumer-high has created `events`, the count fails: 0.
            lambda: int((session.query("SELECT count(*) FROM events") or ["0"])[0]),
            half, broker, postgres))
        if rebuilt is None:
            rebuilt = rebuild_high(args.bin_dir, common + ["--postgres-port", str(args.postgres_port),
                                                           "--postgres-db", database], session)
        session.close()
        psql(args.postgres_port, "postgres", f"DROP DATABASE {database} WITH (FORCE)")
        lows.append(drain(
            os.path.join(args.bin_dir, "consumer-low"),
            common + ["--kafka-group-id", f"bench-low-{run}-{round_}",
                      "--influxdb-host", f"http://127.0.0.1:{args.influxdb_port}", "--influxdb-db", database],
            lambda: influx_count(args.influxdb_port, database, "event"), half, pids, {}))
        influx(args.influxdb_port, "/query", {"q": f"DROP DATABASE {database}"}, b"")
        print(f"round {round_ + 1} of {args.rounds}: native read {reads[-1]['rate']:,.0f} records/s", file=sys.stderr)
        for name, drained in (("consumer-high", highs[-1]), ("consumer-low", lows[-1])):
            print(f"  {name} {drained['rate']:,.0f} records/s ({drained['rate'] / reads[-1]['rate']:.2f}); "
                  f"waited on the store {drained['waited']['store']:.0%}, for records "
                  f"{drained['waited']['records']:.0%}; cores: {cores_text(drained['cores'])}", file=sys.stderr)

    print(f"events on the topic: {args.events} ({half} high, {half} low), "
          f"{reads[0]['settings']['partitions']} partitions")
    rows = [*consumer_rows("consumer-high", highs, reads, copy, "binary COPY", args.max_rss_mib),
            ratio_row("consumer-high rebuild from the log", rebuilt["rate"], "records/s",
                      "consumer-high drain just before", highs[0]["rate"], 0.8,
                      f"tables truncated, then --rebuild-from beginning; all {rebuilt['seconds']:,} seconds' "
                      "counts and sums as before"),
            *consumer_rows("consumer-low", lows, reads, line, "line protocol", args.max_rss_mib)]
    print_table(rows)
    write_rows(args.json, rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
