#!/usr/bin/env python3
"""Overload test: runs the local pipeline on its own ports and state directory
(.state/overload, ports 41xxx), measures event-api's capacity, offers three
times that rate, stalls PostgreSQL under load, and reconciles every id from
the stores.

Usage:
  scripts/overload.py                    # release build, about 3 minutes
  scripts/overload.py --factor 3 --overload-seconds 30 --stall-seconds 20
  scripts/overload.py --keep             # leave the stack running afterwards

Phases, one client (asyncio, raw HTTP/1.1 keep-alive connections), every
event with a unique id and a time fixed when its request is built:
  1. capacity: closed loop, --concurrency connections each posting a batch of
     --batch events as soon as the previous one was answered, for
     --capacity-seconds: accepted events/s is the capacity.
  2. overload: open loop at --factor x capacity for --overload-seconds. A
     request is sent when it is due, whatever is outstanding, and is never
     retried: an id counts as acknowledged only if its request got a 200.
     Records answers by status and error code, the share of 429/503 that
     carry Retry-After, latency of the 200s, event-api's RSS (VmRSS every
     100 ms, against its RSS at idle; VmHWM at the end) and /healthz.
  3. slow store: open loop at --stall-factor x capacity; after
     --stall-warmup s the PostgreSQL postmaster and all its children get
     SIGSTOP for --stall-seconds, then SIGCONT. consumer-high's RSS is sampled
     throughout; the catch-up time runs from SIGCONT until every acknowledged
     high event generated before SIGCONT is in TimescaleDB (load goes on
     meanwhile).
  4. drain and reconcile: every id answered 200 must be stored exactly once
     (TimescaleDB events.id if amount > 5, else InfluxDB measurement `event`,
     field `id`) or be in events.dlq; no id twice; routing exact.

Exits 1 on a lost or missing acknowledged id, a duplicate, a misrouted event,
a service that exited or whose /healthz does not answer 200 at the end, no
request shed at the overload rate, a 429/503 without Retry-After, consumer-high
not catching up within --catchup-bound, or an RSS above --max-rss-mib.
Prints a table and writes <state>/overload.json.

The client runs on the same machine as the services and competes with them
for CPU; its own CPU share is printed for each phase. Reuses the stack and
store helpers of scripts/fault_suite.py. Runs with the venv that
scripts/install.sh sets up (confluent-kafka); it re-executes itself there
when started with another Python.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import resource
import signal
import statistics
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from dataclasses import dataclass, field


sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.dont_write_bytecode = True  # no __pycache__ in the checkout
import fault_suite as fs  # noqa: E402  (Stack, alive, read_dead_letters)

REPO = fs.REPO
LOCAL_SH = fs.LOCAL_SH
WATERMARK = fs.WATERMARK
SERVICES = ("event-api", "consumer-high", "consumer-low")

# Every port in the 41xxx range, away from a developer stack (9xxx), the smoke
# test (2xxxx), the fault suite (31xxx) and the benchmarks (3xxxx).
PORTS = {
    "KAFKA_PORT": 41092,
    "POSTGRES_PORT": 41432,
    "INFLUXDB_PORT": 41086,  # its RPC port is this + 2
    "EVENT_API_PORT": 41998,
    "CONSUMER_HIGH_PORT": 41996,
    "CONSUMER_LOW_PORT": 41997,
    "AGGREGATOR_PORT": 41995,
    "WEB_UI_PORT": 41080,
    "EVENT_PRODUCER_PORT": 41999,
}

T0 = time.monotonic()


def say(message: str) -> None:
    print(f"[overload +{time.monotonic() - T0:6.1f}s] {message}", file=sys.stderr, flush=True)


def amount_of(seq: int) -> float:
    """A fixed amount per sequence number, 0.000-10.000 in steps of 0.001:
    exactly 5.0 (low) and 5.001 (high) come up as often as any other."""
    return ((seq * 7919) % 10001) / 1000


# --------------------------------------------------------------------------
# What was sent, per event


UNSENT, ACKED, SHED, FAILED, UNKNOWN = range(5)
OUTCOME_NAMES = {ACKED: "200", SHED: "shed (429 busy / 503 overloaded)", FAILED: "other non-200",
                 UNKNOWN: "no answer (timeout, connection error)"}


class Ledger:
    """One byte of outcome and one of phase per event; ids are <run>-<seq>."""

    def __init__(self, run: str):
        self.run = run
        self.outcome = bytearray()
        self.phase = bytearray()
        self.phases: list[str] = []
        self.acked: Counter = Counter()  # (phase, high) -> events answered 200

    def phase_index(self, name: str) -> int:
        if name not in self.phases:
            self.phases.append(name)
        return self.phases.index(name)

    def take(self, n: int, phase: str) -> int:
        first = len(self.outcome)
        self.outcome.extend(bytes(n))
        self.phase.extend(bytes([self.phase_index(phase)]) * n)
        return first

    def body(self, first: int, n: int, time_ms: int) -> bytes:
        run = self.run
        return ("[" + ",".join(f'{{"id":"{run}-{s}","time":{time_ms},"amount":{amount_of(s)!r}}}'
                               for s in range(first, first + n)) + "]").encode()

    def mark(self, first: int, n: int, outcome: int) -> None:
        self.outcome[first:first + n] = bytes([outcome]) * n
        if outcome == ACKED:
            phase = self.phases[self.phase[first]]
            for seq in range(first, first + n):
                self.acked[(phase, amount_of(seq) > WATERMARK)] += 1

    def acked_count(self, phase: str | None = None, high: bool | None = None) -> int:
        return sum(v for (p, h), v in self.acked.items()
                   if (phase is None or p == phase) and (high is None or h == high))


# --------------------------------------------------------------------------
# The load client: raw HTTP/1.1 over asyncio streams, keep-alive


@dataclass
class PhaseStats:
    name: str
    requests: int = 0
    events_sent: int = 0
    events_acked: int = 0
    answers: Counter = field(default_factory=Counter)  # "200", "503 overloaded", ...
    shed_answers: int = 0  # 429 and 503
    shed_with_retry_after: int = 0
    retry_after_values: Counter = field(default_factory=Counter)
    latencies_ok: list[float] = field(default_factory=list)
    not_sent: int = 0  # open loop: due while --max-outstanding requests were unanswered
    outstanding: int = 0
    max_outstanding: int = 0
    started: float = 0.0
    ended: float = 0.0
    offered_seconds: float = 0.0
    cpu_started: float = 0.0
    cpu_ended: float = 0.0

    @property
    def seconds(self) -> float:
        return self.ended - self.started

    def client_cpu(self) -> float:
        return (self.cpu_ended - self.cpu_started) / max(self.seconds, 1e-9)

    def percentile(self, q: float) -> float | None:
        if not self.latencies_ok:
            return None
        ordered = sorted(self.latencies_ok)
        return ordered[min(len(ordered) - 1, int(len(ordered) * q))] * 1000

    def summary(self) -> dict:
        return {
            "seconds": round(self.seconds, 2), "requests": self.requests, "events_sent": self.events_sent,
            "events_acked": self.events_acked, "answers": dict(self.answers),
            "shed_answers": self.shed_answers, "shed_with_retry_after": self.shed_with_retry_after,
            "retry_after_values": dict(self.retry_after_values), "not_sent_requests": self.not_sent,
            "max_outstanding": self.max_outstanding,
            "latency_ok_ms": {"p50": self.percentile(0.5), "p99": self.percentile(0.99),
                              "max": self.percentile(1.0)},
            "client_cpu": round(self.client_cpu(), 3),
        }


class Http:
    """A pool of keep-alive connections to one port; opens more as needed."""

    def __init__(self, port: int, timeout: float):
        self.port = port
        self.timeout = timeout
        self.idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
        self.opened = 0

    async def post(self, path: str, body: bytes) -> tuple[int, dict[str, str], bytes]:
        conn = self.idle.pop() if self.idle else None
        try:
            return await asyncio.wait_for(self._exchange(conn, path, body), self.timeout)
        except BaseException:
            if conn is not None:
                conn[1].close()
            raise

    async def _exchange(self, conn, path: str, body: bytes):
        if conn is None:
            conn = await asyncio.open_connection("127.0.0.1", self.port)
            self.opened += 1
        reader, writer = conn
        try:
            writer.write(b"POST %s HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                         b"Content-Length: %d\r\n\r\n%s" % (path.encode(), len(body), body))
            status_line = await reader.readline()
            if not status_line:
                raise ConnectionError("connection closed before an answer")
            status = int(status_line.split()[1])
            headers: dict[str, str] = {}
            while True:
                line = await reader.readline()
                if line in (b"\r\n", b"\n", b""):
                    break
                name, _, value = line.decode("latin-1").partition(":")
                headers[name.strip().lower()] = value.strip()
            if "content-length" in headers:
                answer = await reader.readexactly(int(headers["content-length"]))
            elif headers.get("transfer-encoding", "").lower() == "chunked":
                parts = []
                while True:
                    size = int((await reader.readline()).split(b";")[0], 16)
                    parts.append(await reader.readexactly(size + 2))
                    if size == 0:
                        break
                answer = b"".join(parts)
            else:
                answer = await reader.read()
                headers["connection"] = "close"
        except BaseException:
            writer.close()
            raise
        if headers.get("connection", "").lower() == "close":
            writer.close()
        else:
            self.idle.append(conn)
        return status, headers, answer

    def close(self) -> None:
        for _, writer in self.idle:
            writer.close()
        self.idle.clear()


class Load:
    def __init__(self, ledger: Ledger, port: int, batch: int, timeout: float, max_outstanding: int):
        self.ledger = ledger
        self.http = Http(port, timeout)
        self.batch = batch
        self.max_outstanding = max_outstanding
        self.time_floor_ms = 0

    def build(self, phase: str) -> tuple[int, bytes]:
        """Takes the next ids and builds their request now: the time is fixed here."""
        first = self.ledger.take(self.batch, phase)
        now_ms = max(int(time.time() * 1000), self.time_floor_ms)
        return first, self.ledger.body(first, self.batch, now_ms)

    async def send(self, stats: PhaseStats, first: int, body: bytes) -> None:
        n = self.batch
        stats.requests += 1
        stats.events_sent += n
        stats.outstanding += 1
        stats.max_outstanding = max(stats.max_outstanding, stats.outstanding)
        started = time.perf_counter()
        try:
            status, headers, answer = await self.http.post("/v1/events", body)
        except (asyncio.TimeoutError, TimeoutError):
            self.ledger.mark(first, n, UNKNOWN)
            stats.answers["client timeout"] += 1
            return
        except (OSError, asyncio.IncompleteReadError, ValueError, IndexError) as error:
            self.ledger.mark(first, n, UNKNOWN)
            stats.answers[f"connection error ({type(error).__name__})"] += 1
            return
        finally:
            stats.outstanding -= 1
        if status == 200:
            stats.latencies_ok.append(time.perf_counter() - started)
            stats.answers["200"] += 1
            stats.events_acked += n
            self.ledger.mark(first, n, ACKED)
            return
        try:
            code = json.loads(answer).get("error", "?")
        except (ValueError, AttributeError):
            code = "?"
        stats.answers[f"{status} {code}"] += 1
        if status in (429, 503):
            stats.shed_answers += 1
            if "retry-after" in headers:
                stats.shed_with_retry_after += 1
                stats.retry_after_values[headers["retry-after"]] += 1
        self.ledger.mark(first, n, SHED if code in ("busy", "overloaded") else FAILED)

    async def closed_loop(self, phase: str, seconds: float, concurrency: int) -> PhaseStats:
        stats = begin(PhaseStats(phase))
        stop_at = time.monotonic() + seconds

        async def worker() -> None:
            while time.monotonic() < stop_at:
                first, body = self.build(phase)
                await self.send(stats, first, body)

        await asyncio.gather(*(worker() for _ in range(concurrency)))
        stats.offered_seconds = seconds
        return end(stats)

    async def open_loop(self, control: OpenLoop) -> None:
        """Sends a request every batch/rate seconds, due time by due time, until
        control.stop is set; each request's outcome goes to control.stats."""
        loop = asyncio.get_running_loop()
        tasks: set[asyncio.Task] = set()
        interval = self.batch / control.rate
        start = loop.time()
        i = 0
        while not control.stop:
            elapsed = loop.time() - start
            if control.seconds is not None and elapsed >= control.seconds:
                break
            due = int(elapsed / interval) + 1
            while i < due:
                i += 1
                stats = control.stats
                if len(tasks) >= self.max_outstanding:
                    stats.not_sent += 1
                    continue
                first, body = self.build(stats.name)
                task = asyncio.create_task(self.send(stats, first, body))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
            await asyncio.sleep(max(0.0, start + i * interval - loop.time()))
        control.offered_seconds = loop.time() - start
        if tasks:
            await asyncio.gather(*tasks)


@dataclass
class OpenLoop:
    rate: float
    stats: PhaseStats
    seconds: float | None = None
    stop: bool = False
    offered_seconds: float = 0.0


def begin(stats: PhaseStats) -> PhaseStats:
    stats.started = time.monotonic()
    stats.cpu_started = time.process_time()
    return stats


def end(stats: PhaseStats) -> PhaseStats:
    stats.ended = time.monotonic()
    stats.cpu_ended = time.process_time()
    return stats


# --------------------------------------------------------------------------
# Watching the services: RSS every 100 ms, /healthz every 500 ms


def read_status_kib(pid: int) -> tuple[int, int] | None:
    """(VmRSS, VmHWM) of a process in KiB, or None when it is gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            values = {}
            for line in f:
                if line.startswith(("VmRSS:", "VmHWM:")):
                    values[line[:5]] = int(line.split()[1])
            return values.get("VmRSS", 0), values.get("VmHWM", 0)
    except (FileNotFoundError, ProcessLookupError, ValueError):
        return None


class Watcher(threading.Thread):
    def __init__(self, pids: dict[str, int], health_urls: dict[str, str]):
        super().__init__(daemon=True)
        self.pids = pids
        self.health_urls = health_urls
        self.samples: dict[str, list[tuple[float, int]]] = {name: [] for name in pids}
        self.gone: dict[str, float] = {}
        self.health: list[tuple[float, str, int | str, float]] = []  # time, name, status, seconds
        self.halt = threading.Event()

    def run(self) -> None:
        health = threading.Thread(target=self.probe_health, daemon=True)
        health.start()
        while not self.halt.is_set():
            now = time.monotonic()
            for name, pid in self.pids.items():
                status = read_status_kib(pid) if fs.alive(pid) else None
                if status is None:
                    self.gone.setdefault(name, now)
                else:
                    self.samples[name].append((now, status[0]))
            self.halt.wait(max(0.0, now + 0.1 - time.monotonic()))
        health.join()

    def probe_health(self) -> None:
        """Its own thread: a slow answer must not delay the RSS samples."""
        while not self.halt.is_set():
            now = time.monotonic()
            for name, url in self.health_urls.items():
                self.health.append((now, name, *probe(url)))
            self.halt.wait(max(0.0, now + 0.5 - time.monotonic()))

    def peak_mib(self, name: str, t0: float, t1: float) -> float | None:
        values = [kib for t, kib in self.samples[name] if t0 <= t <= t1]
        return max(values) / 1024 if values else None

    def median_mib(self, name: str, t0: float, t1: float) -> float | None:
        values = [kib for t, kib in self.samples[name] if t0 <= t <= t1]
        return statistics.median(values) / 1024 if values else None

    def health_in(self, name: str, t0: float, t1: float) -> tuple[int, int, float]:
        """(probes, probes not answered 200, slowest seconds) of `name` in [t0, t1]."""
        mine = [(s, d) for t, n, s, d in self.health if n == name and t0 <= t <= t1]
        return len(mine), sum(1 for s, _ in mine if s != 200), max((d for _, d in mine), default=0.0)


def probe(url: str, timeout: float = 2.0) -> tuple[int | str, float]:
    started = time.monotonic()
    try:
        with urllib.request.urlopen(url, timeout=timeout) as answer:
            answer.read()
            return answer.status, time.monotonic() - started
    except urllib.error.HTTPError as error:
        return error.code, time.monotonic() - started
    except (OSError, urllib.error.URLError) as error:
        return type(error).__name__, time.monotonic() - started


# --------------------------------------------------------------------------
# The slow store: SIGSTOP PostgreSQL's postmaster and every child


def postgres_pids(stack: fs.Stack) -> list[int]:
    with open(os.path.join(stack.pg_data(), "postmaster.pid")) as f:
        postmaster = int(f.readline())
    pids = [postmaster]
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                if int(f.read().rsplit(")", 1)[1].split()[1]) == postmaster:
                    pids.append(int(entry))
        except (FileNotFoundError, ProcessLookupError, IndexError, ValueError):
            continue
    return pids


class Freezer:
    def __init__(self, stack: fs.Stack):
        self.stack = stack
        self.frozen: list[int] = []

    def stop(self) -> int:
        # The postmaster first, so that it forks no new child meanwhile.
        for pid in postgres_pids(self.stack):
            os.kill(pid, signal.SIGSTOP)
            self.frozen.append(pid)
        for pid in postgres_pids(self.stack):  # a child forked just before
            if pid not in self.frozen:
                os.kill(pid, signal.SIGSTOP)
                self.frozen.append(pid)
        return len(self.frozen)

    def resume(self) -> None:
        for pid in reversed(self.frozen):
            try:
                os.kill(pid, signal.SIGCONT)
            except ProcessLookupError:
                pass
        self.frozen.clear()


# --------------------------------------------------------------------------
# Stores


def stored_counts(stack: fs.Stack) -> tuple[int, int] | None:
    try:
        return stack.counts()
    except (RuntimeError, OSError, urllib.error.URLError, subprocess.TimeoutExpired, KeyError, IndexError):
        return None


def high_stored_between(stack: fs.Stack, from_ms: int, to_ms: int) -> int | None:
    try:
        return int(stack.psql(f"select count(*) from events where time >= to_timestamp({from_ms} / 1000.0) "
                              f"and time < to_timestamp({to_ms} / 1000.0)", timeout=10).strip())
    except (RuntimeError, subprocess.TimeoutExpired, ValueError):
        return None


def wait_stored(stack: fs.Stack, ledger: Ledger, timeout: float) -> float | None:
    """Until TimescaleDB and InfluxDB hold at least every acknowledged event
    and stop growing; the seconds it took, or None after `timeout`."""
    high = ledger.acked_count(high=True)
    low = ledger.acked_count(high=False)
    started = time.monotonic()
    last, steady_since = None, started
    while time.monotonic() - started < timeout:
        counts = stored_counts(stack)
        if counts is not None:
            if counts != last:
                last, steady_since = counts, time.monotonic()
            if counts[0] >= high and counts[1] >= low and time.monotonic() - steady_since >= 2:
                return steady_since - started
        time.sleep(1)
    say(f"the stores did not reach {high} high + {low} low within {timeout:g}s (last counts {last})")
    return None


def reconcile(stack: fs.Stack, ledger: Ledger) -> tuple[list[str], dict]:
    prefix = ledger.run + "-"
    say("reading every id back from TimescaleDB, InfluxDB and events.dlq")
    high: dict[str, float] = {}
    dup_high = 0
    for row in stack.psql("select id || ' ' || amount::text from events", timeout=600).splitlines():
        ident, _, amount = row.rpartition(" ")
        dup_high += ident in high
        high[ident] = float(amount)
    low: dict[str, float] = {}
    dup_low = 0
    for row in stack.influx_rows('SELECT "id", amount FROM event'):
        dup_low += row["id"] in low
        low[row["id"]] = row["amount"]
    letters = fs.read_dead_letters(f"127.0.0.1:{stack.p['KAFKA_PORT']}")
    dlq = {key for key, _ in letters}
    dup_dlq = len(letters) - len(dlq)

    lost, misrouted, changed, acked_in_dlq = [], [], [], []
    stored_by_outcome: Counter = Counter()
    in_both = sum(1 for i in high if i in low)
    for seq, outcome in enumerate(ledger.outcome):
        ident = f"{prefix}{seq}"
        amount = amount_of(seq)
        where = high if ident in high else low if ident in low else None
        if where is not None:
            stored_by_outcome[outcome] += 1
            if (where is high) != (amount > WATERMARK):
                misrouted.append(ident)
            if abs(where[ident] - amount) > 1e-9:
                changed.append(ident)
        if outcome == ACKED:
            if ident in dlq:
                acked_in_dlq.append(ident)
            elif where is None:
                lost.append(ident)
    ours = sum(1 for i in high if i.startswith(prefix)) + sum(1 for i in low if i.startswith(prefix))
    figures = {
        "rows_timescaledb": len(high) + dup_high, "points_influxdb": len(low) + dup_low,
        "records_dlq": len(letters), "this_run_stored": ours,
        "stored_by_outcome": {OUTCOME_NAMES.get(k, "never sent"): v for k, v in stored_by_outcome.items()},
        "lost": len(lost), "duplicates_timescaledb": dup_high, "duplicates_influxdb": dup_low,
        "duplicates_dlq": dup_dlq, "in_both_stores": in_both, "misrouted": len(misrouted),
        "amount_changed": len(changed), "acked_dead_lettered": len(acked_in_dlq),
    }
    problems = []
    if lost:
        problems.append(f"{len(lost)} acknowledged events in no store and not dead-lettered, e.g. {lost[:5]}")
    # A record dead-lettered once by each consumer is expected (see the fault
    # suite): only the stores count for duplicates.
    if dup_high or dup_low or in_both:
        problems.append(f"duplicates: {dup_high} in TimescaleDB, {dup_low} in InfluxDB, {in_both} in both")
    if misrouted:
        problems.append(f"{len(misrouted)} events in the wrong store, e.g. {misrouted[:5]}")
    if changed:
        problems.append(f"{len(changed)} events stored with another amount, e.g. {changed[:5]}")
    if acked_in_dlq:
        problems.append(f"{len(acked_in_dlq)} valid acknowledged events dead-lettered, e.g. {acked_in_dlq[:5]}")
    return problems, figures


# --------------------------------------------------------------------------


def fmt(value: float | None, spec: str = ".1f", unit: str = "") -> str:
    return "n/a" if value is None else f"{value:{spec}}{unit}"


async def run_phases(args, stack: fs.Stack, ledger: Ledger, watcher: Watcher, freezer: Freezer) -> dict:
    load = Load(ledger, stack.p["EVENT_API_PORT"], args.batch, args.request_timeout, args.max_outstanding)
    out: dict = {}

    idle_from = time.monotonic()
    await asyncio.sleep(2)
    out["idle"] = (idle_from, time.monotonic())

    say(f"warm-up: {args.concurrency} connections, {args.batch} events per request, 3 s")
    await load.closed_loop("warmup", 3, args.concurrency)

    say(f"capacity: closed loop, {args.concurrency} connections, {args.capacity_seconds:g} s")
    capacity = await load.closed_loop("capacity", args.capacity_seconds, args.concurrency)
    out["capacity"] = capacity
    rate = capacity.events_acked / capacity.seconds
    out["capacity_rate"] = rate
    out["bytes_per_event"] = len(ledger.body(0, args.batch, int(time.time() * 1000))) / args.batch
    say(f"capacity: {rate:,.0f} events/s accepted ({capacity.requests} requests, answers {dict(capacity.answers)}, "
        f"client CPU {capacity.client_cpu():.0%})")
    if capacity.events_acked == 0:
        raise RuntimeError("event-api accepted nothing in the capacity phase")

    await asyncio.sleep(args.pause)
    target = args.factor * rate
    say(f"overload: open loop at {args.factor:g} x capacity = {target:,.0f} events/s "
        f"({target / args.batch:,.0f} requests/s), {args.overload_seconds:g} s, no retries")
    control = OpenLoop(target, begin(PhaseStats("overload")), seconds=args.overload_seconds)
    await load.open_loop(control)
    overload = end(control.stats)
    overload.offered_seconds = control.offered_seconds
    out["overload"] = overload
    out["overload_target"] = target
    say(f"overload: offered {overload.events_sent / overload.offered_seconds:,.0f} events/s, accepted "
        f"{overload.events_acked / overload.seconds:,.0f}/s; answers {dict(overload.answers)}; "
        f"client CPU {overload.client_cpu():.0%}")
    out["after_overload_health"] = {name: probe(url)[0] for name, url in watcher.health_urls.items()}

    say("waiting for the consumers to store the backlog before the slow-store phase")
    out["backlog_drained_s"] = await asyncio.to_thread(wait_stored, stack, ledger, args.drain_timeout)

    stall_rate = args.stall_factor * rate
    say(f"slow store: open loop at {stall_rate:,.0f} events/s; PostgreSQL stopped after {args.stall_warmup:g} s "
        f"for {args.stall_seconds:g} s")
    stall_start_ms = int(time.time() * 1000)
    control = OpenLoop(stall_rate, begin(PhaseStats("stall")))
    task = asyncio.create_task(load.open_loop(control))
    await asyncio.sleep(args.stall_warmup)
    t_stop = time.monotonic()
    frozen = await asyncio.to_thread(freezer.stop)
    say(f"SIGSTOP to {frozen} PostgreSQL processes")
    await asyncio.sleep(args.stall_seconds)
    freezer.resume()
    t_cont = time.monotonic()
    # From here on the events are the 'recovery' phase, with times after the cut.
    cut_ms = int(time.time() * 1000) + 1
    load.time_floor_ms = cut_ms
    stall = end(control.stats)
    control.stats = begin(PhaseStats("recovery"))
    say("SIGCONT; load goes on; waiting for consumer-high to store every acknowledged high event "
        "generated before SIGCONT")
    caught_up = None
    want = None
    while time.monotonic() - t_cont < args.catchup_bound:
        await asyncio.sleep(0.5)
        if stall.outstanding:
            continue
        want = ledger.acked_count("stall", high=True)
        have = await asyncio.to_thread(high_stored_between, stack, stall_start_ms, cut_ms)
        if have is not None and have >= want:
            caught_up = time.monotonic() - t_cont
            break
    control.stop = True
    await task
    recovery = end(control.stats)
    out.update(stall=stall, recovery=recovery, stall_rate=stall_rate, t_stop=t_stop, t_cont=t_cont,
               caught_up=caught_up, stall_high_acked=want, frozen=frozen)
    say("consumer-high caught up " + (f"{caught_up:.1f} s after SIGCONT" if caught_up is not None else
                                      f"NOT within {args.catchup_bound:g} s"))
    load.http.close()
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split("\n\n", 1)[1])
    parser.add_argument("--batch", type=int, default=50, help="events per request [50]")
    parser.add_argument("--concurrency", type=int, default=32,
                        help="connections of the capacity phase; below MAX_CONCURRENT_REQUESTS (64) [32]")
    parser.add_argument("--capacity-seconds", type=float, default=15, help="length of the capacity phase [15]")
    parser.add_argument("--factor", type=float, default=3, help="overload rate, times the capacity [3]")
    parser.add_argument("--overload-seconds", type=float, default=30, help="length of the overload phase [30]")
    parser.add_argument("--max-outstanding", type=int, default=2000,
                        help="open loop: requests unanswered at most; a request due past it is counted, not sent [2000]")
    parser.add_argument("--request-timeout", type=float, default=40,
                        help="client timeout per request, above event-api's REQUEST_TIMEOUT (30 s) [40]")
    parser.add_argument("--stall-factor", type=float, default=1.0,
                        help="load during the slow-store phase, times the capacity [1.0]")
    parser.add_argument("--stall-warmup", type=float, default=5, help="seconds of that load before SIGSTOP [5]")
    parser.add_argument("--stall-seconds", type=float, default=20, help="seconds PostgreSQL stays stopped [20]")
    parser.add_argument("--catchup-bound", type=float, default=90,
                        help="seconds after SIGCONT within which consumer-high must catch up [90]")
    parser.add_argument("--drain-timeout", type=float, default=120,
                        help="seconds to wait for the stores to hold every acknowledged event [120]")
    parser.add_argument("--pause", type=float, default=3, help="seconds between the capacity and overload phases [3]")
    parser.add_argument("--max-rss-mib", type=float, default=256,
                        help="peak RSS of event-api and consumer-high above this fails the run [256]")
    parser.add_argument("--profile", help="cargo profile [STREAMPROC_PROFILE, else release]")
    parser.add_argument("--state", default=os.path.join(REPO, ".state", "overload"),
                        help="state directory [.state/overload]")
    parser.add_argument("--keep", action="store_true", help="leave the stack running at the end")
    args = parser.parse_args()
    args.profile = args.profile or os.environ.get("STREAMPROC_PROFILE") or "release"
    # One connection per unanswered request, up to --max-outstanding.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < args.max_outstanding + 256:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, args.max_outstanding + 256), hard))

    state = os.path.abspath(args.state)
    env = dict(os.environ, STREAMPROC_STATE=state, STREAMPROC_PROFILE=args.profile,
               **{k: str(v) for k, v in PORTS.items()})
    stack = fs.Stack(state, args.profile, env)
    freezer = Freezer(stack)
    watcher: Watcher | None = None
    say(f"state {state}, profile {args.profile}, ports 41xxx")
    stack.script(LOCAL_SH, "down", check=False)
    subprocess.run(["rm", "-rf", state, *[os.path.dirname(d) for d in stack.pg_dirs()[1:]]], check=True)
    ledger = Ledger(f"ovl{int(time.time())}")
    started_at = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    try:
        stack.script(LOCAL_SH, "up", quiet=False)
        # Only this run's load: the producer's events would be a second source.
        stack.script(LOCAL_SH, "stop", "event-producer")
        pids = {name: stack.pid(name) for name in SERVICES}
        health_urls = {"event-api": f"http://127.0.0.1:{PORTS['EVENT_API_PORT']}/healthz",
                       "consumer-high": f"http://127.0.0.1:{PORTS['CONSUMER_HIGH_PORT']}/healthz",
                       "consumer-low": f"http://127.0.0.1:{PORTS['CONSUMER_LOW_PORT']}/healthz"}
        watcher = Watcher(pids, health_urls)
        watcher.start()
        out = asyncio.run(run_phases(args, stack, ledger, watcher, freezer))
        say("waiting for the stores to hold every acknowledged event")
        out["final_drain_s"] = wait_stored(stack, ledger, args.drain_timeout)
        end_health = {name: probe(url)[0] for name, url in health_urls.items()}
        hwm = {name: (read_status_kib(pid) or (0, 0))[1] / 1024 for name, pid in pids.items()}
        watcher.halt.set()
        watcher.join()
        problems, store_figures = reconcile(stack, ledger)
        return report(args, started_at, out, watcher, pids, end_health, hwm, store_figures, problems, ledger, state)
    except Exception:
        for name in (*SERVICES, "tansu", "influxdb", "postgres"):
            path = os.path.join(state, "logs", f"{name}.log")
            if os.path.exists(path):
                with open(path, "rb") as f:
                    f.seek(max(0, os.path.getsize(path) - 3000))
                    print(f"--- last lines of {path}\n{f.read().decode(errors='replace')}", file=sys.stderr)
        raise
    finally:
        freezer.resume()
        if watcher is not None:
            watcher.halt.set()
        if not args.keep:
            stack.script(LOCAL_SH, "down", check=False)


def report(args, started_at: str, out: dict, watcher: Watcher, pids: dict[str, int], end_health: dict,
           hwm: dict[str, float], stores: dict, problems: list[str], ledger: Ledger, state: str) -> int:
    capacity: PhaseStats = out["capacity"]
    overload: PhaseStats = out["overload"]
    stall: PhaseStats = out["stall"]
    recovery: PhaseStats = out["recovery"]
    rate = out["capacity_rate"]
    idle_api = watcher.median_mib("event-api", *out["idle"])
    idle_high = watcher.median_mib("consumer-high", *out["idle"])
    api_peak_capacity = watcher.peak_mib("event-api", capacity.started, capacity.ended)
    api_peak_overload = watcher.peak_mib("event-api", overload.started, overload.ended)
    high_before = watcher.median_mib("consumer-high", stall.started, out["t_stop"])
    high_peak_stall = watcher.peak_mib("consumer-high", out["t_stop"], out["t_cont"])
    high_peak_after = watcher.peak_mib("consumer-high", out["t_cont"], recovery.ended)
    # A plateau, not a climb: the peak of the stall's first half against its second.
    t_mid = (out["t_stop"] + out["t_cont"]) / 2
    high_peak_first = watcher.peak_mib("consumer-high", out["t_stop"], t_mid)
    high_peak_second = watcher.peak_mib("consumer-high", t_mid, out["t_cont"])
    stopped_s = out["t_cont"] - out["t_stop"]
    backlog = stall.events_acked * stopped_s / max(stall.seconds, 1e-9)  # records behind consumer-high
    backlog_mib = backlog * out["bytes_per_event"] / 2**20
    offered = overload.events_sent / max(overload.offered_seconds, 1e-9)
    retry_share = overload.shed_with_retry_after / overload.shed_answers if overload.shed_answers else None
    health_n, health_bad, health_slowest = watcher.health_in("event-api", overload.started, overload.ended)
    codes = ", ".join(f"{k}: {v}" for k, v in sorted(overload.answers.items()))
    exited = {name: t for name, t in watcher.gone.items()}
    for name, pid in pids.items():
        if not fs.alive(pid):
            exited.setdefault(name, time.monotonic())
    crash_free = not exited and all(s == 200 for s in end_health.values())

    if exited:
        problems.append(f"services exited: {', '.join(exited)}")
    bad_health = {k: v for k, v in end_health.items() if v != 200}
    if bad_health:
        problems.append(f"/healthz not 200 at the end: {bad_health}")
    if overload.shed_answers == 0:
        problems.append(f"nothing was shed at {args.factor:g} x capacity: load shedding did not engage")
    elif overload.shed_with_retry_after < overload.shed_answers:
        problems.append(f"{overload.shed_answers - overload.shed_with_retry_after} of {overload.shed_answers} "
                        "429/503 answers had no Retry-After")
    for phase in (capacity, stall, recovery):
        if phase.shed_with_retry_after < phase.shed_answers:
            problems.append(f"{phase.name}: 429/503 answers without Retry-After")
    if out["caught_up"] is None:
        problems.append(f"consumer-high did not catch up within {args.catchup_bound:g} s of SIGCONT")
    if out["final_drain_s"] is None:
        problems.append("the stores never held every acknowledged event")
    for name, peak in (("event-api", hwm.get("event-api")), ("consumer-high", hwm.get("consumer-high"))):
        if peak is not None and peak > args.max_rss_mib:
            problems.append(f"{name} peak RSS {peak:.1f} MiB is above --max-rss-mib {args.max_rss_mib:g}")
    warnings = []
    if offered < 0.9 * out["overload_target"]:
        warnings.append(f"the client offered only {offered:,.0f} events/s of the {out['overload_target']:,.0f} "
                        f"asked ({offered / rate:.1f} x capacity): it is CPU-bound on this machine")
    if overload.not_sent:
        warnings.append(f"{overload.not_sent} overload requests were not sent: {args.max_outstanding} "
                        "were unanswered already")
    unacked_stored = sum(v for k, v in stores["stored_by_outcome"].items() if k != "200")

    b = args.batch
    rows = [
        ("run", f"{started_at}, {platform.node()}, {os.cpu_count()} cores", f"profile {args.profile}"),
        ("capacity (accepted events/s)", f"{rate:,.0f}",
         f"closed loop, {args.concurrency} connections x {b} events/request, {capacity.seconds:.0f} s"),
        ("  latency of 200s p50 / p99", f"{fmt(capacity.percentile(0.5))} / {fmt(capacity.percentile(0.99))} ms",
         f"client CPU {capacity.client_cpu():.0%} of a core"),
        ("overload offered (events/s)", f"{offered:,.0f} ({offered / rate:.1f} x capacity)",
         f"open loop, target {args.factor:g} x, {b} events/request, no retries, {overload.seconds:.0f} s"),
        ("  accepted (events/s)", f"{overload.events_acked / overload.seconds:,.0f}",
         f"{overload.events_acked:,} of {overload.events_sent:,} events answered 200"),
        ("  answers by status", codes, f"{overload.requests:,} requests"),
        ("  429/503 with Retry-After", fmt(None if retry_share is None else retry_share * 100, ".1f", " %"),
         "Retry-After: " + ", ".join(f"{k} s x{v}" for k, v in overload.retry_after_values.items())),
        ("  latency of 200s p50 / p99", f"{fmt(overload.percentile(0.5))} / {fmt(overload.percentile(0.99))} ms",
         f"client CPU {overload.client_cpu():.0%} of a core; {overload.max_outstanding} requests outstanding at most"),
        ("  event-api RSS idle / peak", f"{fmt(idle_api)} / {fmt(api_peak_overload)} MiB",
         f"VmRSS every 100 ms; capacity-phase peak {fmt(api_peak_capacity)} MiB; VmHWM at end "
         f"{fmt(hwm.get('event-api'))} MiB"),
        ("  event-api /healthz during overload", f"{health_n - health_bad} of {health_n} answered 200",
         f"every 0.5 s, 2 s timeout, slowest {health_slowest * 1000:.0f} ms"),
        ("slow store: PostgreSQL stopped", f"{out['t_cont'] - out['t_stop']:.1f} s",
         f"SIGSTOP to {out['frozen']} processes, load {out['stall_rate']:,.0f} events/s "
         f"({args.stall_factor:g} x capacity)"),
        ("  consumer-high RSS before / peak stopped / peak after",
         f"{fmt(high_before)} / {fmt(high_peak_stall)} / {fmt(high_peak_after)} MiB",
         f"idle {fmt(idle_high)} MiB; VmHWM at end {fmt(hwm.get('consumer-high'))} MiB"),
        ("  consumer-high RSS peak, 1st / 2nd half stopped", f"{fmt(high_peak_first)} / {fmt(high_peak_second)} MiB",
         f"backlog while stopped ~{backlog:,.0f} records, ~{backlog_mib:.0f} MiB of JSON (prefetch cap 16 MiB)"),
        ("  consumer-high caught up after SIGCONT", fmt(out["caught_up"], ".1f", " s"),
         f"{out['stall_high_acked'] or 0:,} acknowledged high events from before SIGCONT; load went on"),
        ("  answers during the stall", ", ".join(f"{k}: {v}" for k, v in sorted(stall.answers.items())),
         f"{stall.events_acked / max(stall.seconds, 1e-9):,.0f} events/s accepted"),
        ("acknowledged / stored / dead-lettered",
         f"{ledger.acked_count():,} / {stores['this_run_stored']:,} / {stores['records_dlq']}",
         f"{unacked_stored:,} stored without a 200 (timeouts, 503 after a partial write)"),
        ("lost / duplicates / misrouted",
         f"{stores['lost']} / {stores['duplicates_timescaledb'] + stores['duplicates_influxdb'] + stores['in_both_stores']}"
         f" / {stores['misrouted']}", "from the stores: TimescaleDB events.id, InfluxDB event.id, events.dlq"),
        ("crashes", "none" if crash_free else f"exited {list(exited)}, /healthz {end_health}",
         "event-api, consumer-high, consumer-low: same pids alive, /healthz 200 at the end"),
    ]
    width = [max(len(r[i]) for r in rows) for i in range(2)]
    print()
    print(f"{'figure':<{width[0]}}  {'value':<{width[1]}}  settings")
    for figure, value, settings in rows:
        print(f"{figure:<{width[0]}}  {value:<{width[1]}}  {settings}")
    print()
    for w in warnings:
        print(f"warning: {w}")
    for p in problems:
        print(f"FAIL: {p}")
    if not problems:
        print("overload: shed with Retry-After, memory bounded, no crash, nothing acknowledged lost")

    result = {
        "started_at": started_at, "machine": platform.node(), "cores": os.cpu_count(),
        "settings": {k: v for k, v in vars(args).items()}, "run": ledger.run,
        "capacity_events_per_s": rate, "overload_target_events_per_s": out["overload_target"],
        "overload_offered_events_per_s": offered,
        "phases": {p.name: p.summary() for p in (capacity, overload, stall, recovery)},
        "rss_mib": {"event_api_idle": idle_api, "event_api_peak_capacity": api_peak_capacity,
                    "event_api_peak_overload": api_peak_overload, "event_api_vmhwm": hwm.get("event-api"),
                    "consumer_high_idle": idle_high, "consumer_high_before_stall": high_before,
                    "consumer_high_peak_stalled": high_peak_stall, "consumer_high_peak_after": high_peak_after,
                    "consumer_high_peak_stalled_first_half": high_peak_first,
                    "consumer_high_peak_stalled_second_half": high_peak_second,
                    "consumer_high_vmhwm": hwm.get("consumer-high"), "consumer_low_vmhwm": hwm.get("consumer-low")},
        "event_api_healthz_during_overload": {"probes": health_n, "not_200": health_bad,
                                              "slowest_s": health_slowest},
        "stall_seconds": stopped_s, "stall_backlog_records": backlog, "stall_backlog_json_mib": backlog_mib, "consumer_high_caught_up_s": out["caught_up"],
        "backlog_drained_s": out["backlog_drained_s"], "final_drain_s": out["final_drain_s"],
        "health_after_overload": out["after_overload_health"], "health_at_end": end_health,
        "exited": list(exited), "stores": stores, "warnings": warnings, "problems": problems,
        "table": [list(r) for r in rows],
    }
    path = os.path.join(state, "overload.json")
    with open(path, "w") as f:
        json.dump(result, f, indent=2, default=str)
    print(f"figures: {path}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
