#!/usr/bin/env python3
"""Compares two builds of the tansu broker on the loads the project puts on
it, to check that a build profile chosen for build time (scripts/lib.sh,
TANSU_BUILD_PROFILE) costs no broker throughput that matters:

- produce to memory storage: the ingest benchmark's native baseline, with
  its 10 000 events in flight;
- produce to SQLite storage, what the pipeline runs on, then a native read
  of those records from the start of each partition.

Each round starts each broker fresh in an empty directory and runs the same
loads on it, the two builds alternately, so a disturbance on the shared
machine hits both; the medians are compared (candidate / baseline).

Usage: bench_broker_build.py --baseline TANSU --candidate TANSU --bin-dir target/release [--rounds 5]
"""

import argparse
import statistics
import subprocess
import sys
import tempfile

from bench_native import free_port, native, wait_port

LOADS = ("memory produce", "sqlite produce", "sqlite read")


def run_broker(tansu: str, storage: str, loads: dict[str, list[float]], args) -> None:
    port = free_port()
    brokers = f"127.0.0.1:{port}"
    with tempfile.TemporaryDirectory(prefix="streamproc-broker-build-") as workdir:
        broker = subprocess.Popen(
            [tansu, "broker", "--listener-url", f"tcp://{brokers}", "--advertised-listener-url",
             f"tcp://{brokers}", "--storage-engine", storage],
            cwd=workdir, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_port(port, "tansu")
            watch = {"tansu": broker.pid}
            if storage.startswith("memory"):
                produced = native(args.bin_dir, "produce", watch, brokers=brokers, topic="baseline",
                                  events=args.memory_events, in_flight=10_000)
                loads["memory produce"].append(produced["rate"])
            else:
                warmup = 1_000
                produced = native(args.bin_dir, "produce", watch, brokers=brokers, topic="baseline",
                                  events=args.sqlite_events, in_flight=10_000, warmup=warmup)
                loads["sqlite produce"].append(produced["rate"])
                # The warm-up's events are on the topic too.
                read = native(args.bin_dir, "consume", watch, brokers=brokers, topic="baseline",
                              expect=args.sqlite_events + warmup)
                loads["sqlite read"].append(read["rate"])
        finally:
            broker.kill()
            broker.wait()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", required=True, help="the tansu binary to compare against")
    parser.add_argument("--candidate", required=True, help="the tansu binary under test")
    parser.add_argument("--bin-dir", required=True, help="release binaries: native-baseline")
    parser.add_argument("--rounds", type=int, default=5, help="rounds of each build [5]")
    parser.add_argument("--memory-events", type=int, default=300_000, help="events produced to memory storage")
    parser.add_argument("--sqlite-events", type=int, default=100_000, help="events produced to SQLite storage")
    args = parser.parse_args()

    figures = {build: {load: [] for load in LOADS} for build in ("baseline", "candidate")}
    for round_number in range(1, args.rounds + 1):
        for build in ("baseline", "candidate"):
            tansu = getattr(args, build)
            run_broker(tansu, "memory://tansu/", figures[build], args)
            run_broker(tansu, "sqlite://tansu.db", figures[build], args)
            rates = ", ".join(f"{load} {figures[build][load][-1]:,.0f}/s" for load in LOADS)
            print(f"round {round_number}, {build}: {rates}", file=sys.stderr)

    print(f"{'load':<16} {'baseline':>12} {'candidate':>12} {'ratio':>6}  rounds (candidate / baseline)")
    for load in LOADS:
        base, cand = (statistics.median(figures[b][load]) for b in ("baseline", "candidate"))
        each = ", ".join(f"{c / b:.2f}" for b, c in zip(figures["baseline"][load], figures["candidate"][load]))
        print(f"{load:<16} {base:>12,.0f} {cand:>12,.0f} {cand / base:>6.2f}  {each}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
