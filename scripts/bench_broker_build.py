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
import sys
import tempfile

from bench_native import native, start_tansu

LOADS = ("memory produce", "sqlite produce", "sqlite read")
WARMUP = 1_000


def run_broker(tansu: str, storage: str, loads: dict[str, list[float]], args) -> None:
    """One fresh broker: produce to it; on SQLite, read everything back."""
    kind = "memory" if storage.startswith("memory") else "sqlite"
    events = args.memory_events if kind == "memory" else args.sqlite_events
    with tempfile.TemporaryDirectory(prefix="streamproc-broker-build-") as workdir:
        broker, brokers = start_tansu(tansu, storage, workdir)
        try:
            watch = {"tansu": broker.pid}
            produced = native(args.bin_dir, "produce", watch, brokers=brokers, topic="baseline", events=events,
                              in_flight=10_000, warmup=WARMUP)
            loads[f"{kind} produce"].append(produced["rate"])
            if kind == "sqlite":
                # The warm-up's events are on the topic too. (Memory
                # storage is not read back: tansu's fetch there skips the
                # rest of a batch it starts inside.)
                read = native(args.bin_dir, "consume", watch, brokers=brokers, topic="baseline",
                              expect=events + WARMUP)
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
