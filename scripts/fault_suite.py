#!/usr/bin/env python3
"""Fault-injection suite: runs the local pipeline on its own ports and state
directory, sends a bounded load of events with known ids through event-api,
injects faults on a schedule (broker restart, PostgreSQL immediate stop,
InfluxDB kill -9, kill -9 of each consumer and of event-api, a consumer-group
rebalance, a PostgreSQL outage longer than the consumers' RETRY_MAX), waits
for the consumers to drain, and reconciles from the stores themselves; it
also requires the aggregator's own reconciliation (GET /api/v1/reconcile)
to account for every event within 5 s of the drain, each answer within 1 s.

Usage:
  scripts/fault_suite.py --short                 # CI: every fault once, a few thousand events
  scripts/fault_suite.py --events 1000000        # long: every fault at least twice (release build)
  scripts/fault_suite.py --short --keep          # leave the stack running afterwards

It prints one line per fault (when it was injected, how long the component
was down, how long until the pipeline had recovered: probe events sent after
the fault are stored and every service is ready again) and the totals.
It exits 1 on any lost acknowledged event, any duplicate (an id stored twice
in a store, or in more than one of TimescaleDB, InfluxDB and the dead-letter
topic), any misrouted event, a poison record missing from the dead-letter
topic, or a fault the pipeline did not recover from within the bound.

The load client behaves like event-producer: every event has an id and a
time fixed when it is generated; a batch is retried with the same ids and
times on connection errors, timeouts, 429 and 5xx, with exponential backoff
(at least the server's Retry-After); an event counts as acknowledged only
when its request was answered 200.

Runs with the venv that scripts/install.sh sets up (confluent-kafka); it
re-executes itself there when started with another Python.
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field

import in_venv  # first: it may start this script again under the venv

in_venv.require("confluent_kafka")
from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition  # noqa: E402

import names  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LOCAL_SH = os.path.join(REPO, "scripts", "local.sh")
INFRA_SH = os.path.join(REPO, "scripts", "infra.sh")
PG_BIN = os.environ.get("PG_BIN", "/usr/lib/postgresql/15/bin")
WATERMARK = 5.0
# The aggregator's reconciliation must say "accounted" this soon after the
# stores stop changing, and answer each time within RECONCILE_ANSWER.
RECONCILED_WITHIN = 5.0
RECONCILE_ANSWER = 1.0

# Every port in the 31xxx range, away from a developer stack (9xxx), the smoke
# test, schemathesis and the benchmarks (2xxxx), and below Linux's ephemeral
# range (32768-60999), which tests' free ports come from.
PORTS = {
    "KAFKA_PORT": 31092,
    "POSTGRES_PORT": 31432,
    "INFLUXDB_PORT": 31086,  # its RPC port is this + 2
    "EVENT_API_PORT": 31998,
    "CONSUMER_HIGH_PORT": 31996,
    "CONSUMER_LOW_PORT": 31997,
    "AGGREGATOR_PORT": 31995,
    "WEB_UI_PORT": 31080,
    "EVENT_PRODUCER_PORT": 31999,
}
SECOND_CONSUMER_PORT = 31994
FAULTS = [
    "broker-restart",
    "postgres-immediate-stop",
    "influxdb-kill9",
    "consumer-high-kill9",
    "consumer-low-kill9",
    "event-api-kill9",
    "rebalance",
    "postgres-long-outage",
]

T0 = time.monotonic()


def say(message: str) -> None:
    print(f"[fault_suite +{time.monotonic() - T0:7.1f}s] {message}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------
# The stack and its stores


class Stack:
    def __init__(self, state: str, profile: str, env: dict[str, str]):
        self.state = state
        self.profile = profile
        self.env = env
        self.p = {k: int(v) for k, v in env.items() if k.endswith("_PORT")}
        self.bin = os.path.join(REPO, "target", "debug" if profile == "dev" else profile)

    # As infra.sh: PostgreSQL's files live under the state directory unless
    # the 'postgres' user cannot reach it, then under /var/tmp.
    def pg_dirs(self) -> list[str]:
        digest = hashlib.md5(self.state.encode()).hexdigest()[:12]
        return [os.path.join(self.state, "postgres"), f"/var/tmp/streamproc-{digest}/postgres"]

    def pg_data(self) -> str:
        for d in self.pg_dirs():
            if os.path.exists(os.path.join(d, "data", "PG_VERSION")):
                return os.path.join(d, "data")
        raise RuntimeError("PostgreSQL data directory not found")

    def script(self, *args: str, check: bool = True, quiet: bool = True) -> subprocess.CompletedProcess:
        out, err = (subprocess.DEVNULL, subprocess.PIPE) if quiet else (sys.stderr, sys.stderr)
        result = subprocess.run(list(args), env=self.env, stdout=out, stderr=err, text=True)
        if check and result.returncode != 0:
            raise RuntimeError(f"{' '.join(args)} failed ({result.returncode}): {(result.stderr or '')[-2000:]}")
        return result

    def pid(self, name: str) -> int:
        with open(os.path.join(self.state, "run", f"{name}.pid")) as f:
            return int(f.read().strip())

    def as_postgres(self, *args: str) -> list[str]:
        return ["runuser", "-u", "postgres", "--", *args] if os.geteuid() == 0 else list(args)

    def psql(self, sql: str, timeout: float = 30) -> str:
        result = subprocess.run(
            [f"{PG_BIN}/psql", "-h", "127.0.0.1", "-p", str(self.p["POSTGRES_PORT"]), "-U", "postgres",
             "-d", "streamproc", "-qtAX", "-v", "ON_ERROR_STOP=1", "-c", sql],
            capture_output=True, text=True, timeout=timeout,
        )
        if result.returncode != 0:
            raise RuntimeError(result.stderr.strip())
        return result.stdout

    def influx(self, q: str, timeout: float = 30) -> dict:
        query = urllib.parse.urlencode({"db": "streamproc", "q": q, "epoch": "ms"})
        url = f"http://127.0.0.1:{self.p['INFLUXDB_PORT']}/query?{query}"
        with urllib.request.urlopen(url, timeout=timeout) as answer:
            return json.load(answer)

    def influx_rows(self, q: str):
        """Yields the rows of a query, read in chunks (no row limit)."""
        query = urllib.parse.urlencode({"db": "streamproc", "q": q, "chunked": "true", "chunk_size": "20000"})
        url = f"http://127.0.0.1:{self.p['INFLUXDB_PORT']}/query?{query}"
        with urllib.request.urlopen(url, timeout=600) as answer:
            for line in answer:
                if not line.strip():
                    continue
                chunk = json.loads(line)
                for result in chunk.get("results", []):
                    if "error" in result:
                        raise RuntimeError(result["error"])
                    for series in result.get("series", []):
                        columns = series["columns"]
                        for values in series["values"]:
                            yield dict(zip(columns, values))

    def ready(self, port: int) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as answer:
                return answer.status == 200
        except (OSError, urllib.error.URLError):
            return False

    def all_ready(self) -> bool:
        return all(self.ready(self.p[k]) for k in ("EVENT_API_PORT", "CONSUMER_HIGH_PORT", "CONSUMER_LOW_PORT"))

    def stored_high(self, ids: list[str]) -> set[str]:
        quoted = ",".join("'" + i.replace("'", "''") + "'" for i in ids)
        return set(self.psql(f"select id from event_ids where id in ({quoted})", timeout=5).split())

    def stored_low(self, ids: list[str], from_ms: int, to_ms: int) -> set[str]:
        cond = " or ".join(f"\"id\" = '{i}'" for i in ids)
        answer = self.influx(
            f"SELECT \"id\", amount FROM event WHERE time >= {from_ms - 1000}ms AND time <= {to_ms + 1000}ms AND ({cond})",
            timeout=5,
        )
        found = set()
        for result in answer.get("results", []):
            for series in result.get("series", []) or []:
                col = series["columns"].index("id")
                found.update(v[col] for v in series["values"])
        return found

    def counts(self) -> tuple[int, int]:
        high = int(self.psql("select count(*) from events").strip() or 0)
        answer = self.influx("SELECT count(amount) FROM event")
        series = answer["results"][0].get("series")
        low = series[0]["values"][0][1] if series else 0
        return high, low


# --------------------------------------------------------------------------
# The load client


@dataclass
class ClientStats:
    requests: int = 0
    ok: int = 0
    conn_errors: int = 0
    timeouts: int = 0
    status: dict[int, int] = field(default_factory=dict)
    refused: int = 0  # 4xx other than 429: never retried, never acknowledged

    def line(self) -> str:
        codes = ", ".join(f"{k}: {v}" for k, v in sorted(self.status.items())) or "none"
        return (f"{self.requests} requests, {self.ok} answered 200; retried after {self.conn_errors} connection errors, "
                f"{self.timeouts} timeouts, non-200 answers {codes}")


class Client:
    """Posts batches to event-api and retries like event-producer."""

    def __init__(self, port: int, stats: ClientStats, stop: threading.Event, backoff_max: float = 5.0,
                 timeout: float = 40.0):
        self.port = port
        self.stats = stats
        self.stop = stop
        self.backoff_max = backoff_max
        self.timeout = timeout
        self.conn: http.client.HTTPConnection | None = None

    def post_until_ok(self, events: list[dict], give_up_at: float | None = None) -> bool:
        body = json.dumps(events).encode()
        delay = 0.25
        while True:
            retry_after = 0.0
            self.stats.requests += 1
            try:
                if self.conn is None:
                    self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=self.timeout)
                self.conn.request("POST", "/v1/events", body, {"content-type": "application/json"})
                answer = self.conn.getresponse()
                text = answer.read()
                code = answer.status
                if answer.getheader("connection", "").lower() == "close":
                    self.conn.close()
                    self.conn = None
            except TimeoutError:
                self.stats.timeouts += 1
                self._reset()
                code = None
            except (OSError, http.client.HTTPException):
                self.stats.conn_errors += 1
                self._reset()
                code = None
            if code == 200:
                self.stats.ok += 1
                return True
            if code is not None:
                self.stats.status[code] = self.stats.status.get(code, 0) + 1
                if code != 429 and code < 500:
                    self.stats.refused += len(events)
                    say(f"event-api refused a batch with {code}: {text[:300]!r}")
                    return False
                try:
                    retry_after = float(answer.getheader("retry-after") or 0)
                except ValueError:
                    retry_after = 0.0
            if give_up_at is not None and time.monotonic() > give_up_at:
                return False
            wait = max(retry_after, delay * random.uniform(0.75, 1.25))
            time.sleep(wait)
            delay = min(delay * 2, self.backoff_max)

    def _reset(self) -> None:
        if self.conn is not None:
            self.conn.close()
        self.conn = None


class Load(threading.Thread):
    """Generates `events` events at `rate` per second (id <prefix>-<seq>, the
    time fixed at generation) and sends what is due in batches."""

    def __init__(self, port: int, prefix: str, events: int, rate: float, batch: int, seed: int,
                 interval: float = 0.2):
        super().__init__(daemon=True)
        self.prefix = prefix
        self.total = events
        self.rate = rate
        self.batch = batch
        self.interval = interval
        self.rng = random.Random(seed)
        self.amounts: list[float] = []
        self.acked = bytearray(events)
        self.acked_count = 0
        self.stats = ClientStats()
        self.stop_event = threading.Event()
        self.client = Client(port, self.stats, self.stop_event)
        self.generated = 0
        self.finished = threading.Event()
        self.give_up_at: float | None = None

    def amount(self) -> float:
        # Now and then exactly the watermark (low) and just above it (high).
        r = self.rng.random()
        if r < 0.01:
            return WATERMARK
        if r < 0.02:
            return 5.001
        return round(self.rng.uniform(0, 10), 3)

    def run(self) -> None:
        started = time.monotonic()
        started_ms = time.time() * 1000
        pending: list[dict] = []
        while self.generated < self.total or pending:
            due = min(self.total, int((time.monotonic() - started) * self.rate) + 1)
            while self.generated < due:
                amount = self.amount()
                self.amounts.append(amount)
                # Each event's time is when it fell due at the steady rate,
                # as a client's clock would stamp it, even when a fault held
                # the sender back: not one instant for a whole backlog.
                # (Thousands of events in one millisecond make InfluxDB's
                # hashed point identities collide, a known limit: see
                # crates/store/src/line.rs.)
                due_ms = int(started_ms + self.generated * 1000 / self.rate)
                pending.append({"id": f"{self.prefix}-{self.generated}", "time": due_ms, "amount": amount,
                                "_seq": self.generated})
                self.generated += 1
            if not pending:
                time.sleep(min(0.05, 1 / self.rate))
                continue
            chunk, pending = pending[: self.batch], pending[self.batch:]
            wire = [{k: v for k, v in e.items() if k != "_seq"} for e in chunk]
            if self.client.post_until_ok(wire, self.give_up_at):
                for e in chunk:
                    self.acked[e["_seq"]] = 1
                self.acked_count += len(chunk)
            elif self.give_up_at is not None and time.monotonic() > self.give_up_at:
                say(f"load: gave up with {len(chunk) + len(pending)} events unacknowledged")
                break
            if len(pending) < self.batch:
                time.sleep(self.interval)
        self.finished.set()


# --------------------------------------------------------------------------
# Faults


def alive(pid: int) -> bool:
    """Process `pid` runs (a zombie waiting for its parent does not)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, IndexError):
        return False


@dataclass
class Outcome:
    fault: str
    round: int
    injected_at: float
    down: float = 0.0
    recovered: float | None = None
    bound: float = 0.0
    note: str = ""
    healed: float | None = None  # after a non-recovery: seconds until stored after the graceful restarts

    @property
    def ok(self) -> bool:
        return self.recovered is not None and self.recovered <= self.bound


class Suite:
    def __init__(self, args, stack: Stack, load: Load):
        self.args = args
        self.stack = stack
        self.load = load
        self.probe_stats = ClientStats()
        self.probe_client = Client(stack.p["EVENT_API_PORT"], self.probe_stats, threading.Event())
        self.probes: list[tuple[str, float]] = []  # (id, amount): acknowledged probes
        self.probe_seq = 0
        self.second: subprocess.Popen | None = None

    # Probe events sent after a fault, routed to the store(s) the fault hit.
    def probe(self, high: bool, low: bool, deadline: float) -> bool:
        events = []
        now_ms = int(time.time() * 1000)
        for route, amount in (("h", 7.5), ("l", 2.5)):
            if (route == "h" and not high) or (route == "l" and not low):
                continue
            for _ in range(4):  # four ids: most likely on every partition
                self.probe_seq += 1
                events.append({"id": f"{self.load.prefix}-probe-{route}{self.probe_seq}", "time": now_ms,
                               "amount": amount})
        if not self.probe_client.post_until_ok(events, give_up_at=deadline):
            return False
        self.probes.extend((e["id"], e["amount"]) for e in events)
        want_high = [e["id"] for e in events if e["amount"] > WATERMARK]
        want_low = [e["id"] for e in events if e["amount"] <= WATERMARK]
        while time.monotonic() < deadline:
            try:
                if want_high and self.stack.stored_high(want_high) != set(want_high):
                    raise LookupError
                if want_low and self.stack.stored_low(want_low, now_ms, now_ms) != set(want_low):
                    raise LookupError
                if self.stack.all_ready():
                    return True
            except (LookupError, RuntimeError, OSError, urllib.error.URLError, subprocess.TimeoutExpired):
                pass
            time.sleep(0.25)
        return False

    def kill9(self, name: str) -> None:
        pid = self.stack.pid(name)
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while alive(pid):  # not our child: poll until it is gone
            if time.monotonic() > deadline:
                raise RuntimeError(f"{name} (pid {pid}) still runs 10 s after SIGKILL")
            time.sleep(0.05)

    def pg_ctl_stop(self, mode: str) -> None:
        self.stack.script(*self.stack.as_postgres(f"{PG_BIN}/pg_ctl", "-D", self.stack.pg_data(), "-m", mode,
                                                  "-w", "-t", "60", "stop"))

    def start_second_consumer(self) -> None:
        p = self.stack.p
        env = dict(self.stack.env, PORT=str(SECOND_CONSUMER_PORT), KAFKA_BROKERS=f"127.0.0.1:{p['KAFKA_PORT']}",
                   KAFKA_TOPIC=names.EVENTS_TOPIC, POSTGRES_HOST="127.0.0.1", POSTGRES_PORT=str(p["POSTGRES_PORT"]),
                   POSTGRES_USER="postgres", POSTGRES_DB="streamproc")
        log = open(os.path.join(self.stack.state, "logs", "consumer-high-2.log"), "ab")
        self.second = subprocess.Popen([os.path.join(self.stack.bin, "consumer-high")], env=env, stdout=log,
                                       stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while not self.stack.ready(SECOND_CONSUMER_PORT):
            if time.monotonic() > deadline or self.second.poll() is not None:
                raise RuntimeError("the second consumer-high did not become ready; see logs/consumer-high-2.log")
            time.sleep(0.2)

    def stop_second_consumer(self) -> None:
        if self.second and self.second.poll() is None:
            self.second.send_signal(signal.SIGTERM)
            try:
                self.second.wait(30)
            except subprocess.TimeoutExpired:
                self.second.kill()
                self.second.wait()
        self.second = None

    def inject(self, fault: str) -> tuple[bool, bool, str]:
        """Injects `fault` and undoes it; returns which stores a probe must reach."""
        a, s = self.args, self.stack
        if fault == "broker-restart":
            s.script(LOCAL_SH, "restart", "tansu")
            return True, True, "local.sh restart tansu"
        if fault == "postgres-immediate-stop":
            self.pg_ctl_stop("immediate")
            time.sleep(a.pause)
            s.script(INFRA_SH, "start")
            return True, False, "pg_ctl stop -m immediate; infra.sh start"
        if fault == "influxdb-kill9":
            self.kill9("influxdb")
            time.sleep(a.pause)
            s.script(INFRA_SH, "start")
            return False, True, "kill -9 influxd; infra.sh start"
        if fault in ("consumer-high-kill9", "consumer-low-kill9", "event-api-kill9"):
            name = fault.removesuffix("-kill9")
            self.kill9(name)
            time.sleep(a.pause)
            s.script(LOCAL_SH, "restart", name)
            high = name != "consumer-low"
            low = name != "consumer-high"
            return high, low, f"kill -9 {name}; local.sh restart {name}"
        if fault == "rebalance":
            self.start_second_consumer()
            time.sleep(a.rebalance_hold)
            self.stop_second_consumer()
            return True, False, f"2nd consumer-high joined for {a.rebalance_hold:g}s, then SIGTERM"
        if fault == "postgres-long-outage":
            self.pg_ctl_stop("fast")
            time.sleep(a.outage)
            s.script(INFRA_SH, "start")
            return True, False, f"pg_ctl stop -m fast; {a.outage:g}s down (RETRY_MAX {a.retry_max:g}s); infra.sh start"
        raise ValueError(fault)

    def run_fault(self, fault: str, rnd: int) -> Outcome:
        outcome = Outcome(fault, rnd, time.monotonic() - self.load_started)
        say(f"round {rnd}: injecting {fault}")
        started = time.monotonic()
        try:
            high, low, outcome.note = self.inject(fault)
        except Exception as error:  # noqa: BLE001: reported as a failed fault
            outcome.down = time.monotonic() - started
            outcome.note = f"undoing the fault failed: {error}"[:300]
            say(outcome.note)
            return outcome
        restored = time.monotonic()
        outcome.down = restored - started
        outcome.bound = self.args.recovery_bound + (self.args.retry_max if "postgres" in fault else 0)
        if self.probe(high, low, restored + outcome.bound):
            outcome.recovered = time.monotonic() - restored
        say(f"round {rnd}: {fault}: down {outcome.down:.1f}s, "
            + (f"recovered {outcome.recovered:.1f}s later" if outcome.recovered is not None else "NOT recovered"))
        if outcome.recovered is None:
            self.heal(outcome, high, low)
        return outcome

    def heal(self, outcome: Outcome, high: bool, low: bool) -> None:
        """The hand a fault needed: a graceful restart of both consumers (they
        leave their group, then join again). Recorded, never a pass."""
        say(f"{outcome.fault}: restarting both consumers gracefully to go on")
        started = time.monotonic()
        try:
            for name in ("consumer-high", "consumer-low"):
                self.stack.script(LOCAL_SH, "restart", name)
        except RuntimeError as error:
            say(f"graceful restart failed: {error}")
            return
        if self.probe(high, low, time.monotonic() + self.args.recovery_bound):
            outcome.healed = time.monotonic() - started
            outcome.note += f"; recovered {outcome.healed:.1f}s after a graceful restart of both consumers"
        else:
            outcome.note += "; not recovered after a graceful restart of both consumers either"

    def run(self) -> list[Outcome]:
        self.load_started = time.monotonic()
        outcomes: list[Outcome] = []
        time.sleep(self.args.warmup)
        rnd = 0
        while True:
            rnd += 1
            for fault in self.args.faults:
                outcome = self.run_fault(fault, rnd)
                outcomes.append(outcome)
                if not outcome.ok and (self.args.stop_on_failure or outcome.healed is None):
                    say(f"{fault} did not recover within {outcome.bound:g}s: skipping the remaining faults")
                    return outcomes
                time.sleep(self.args.gap)
            if rnd >= self.args.rounds and (self.load.finished.is_set() or not self.args.faults_until_load_ends):
                return outcomes


# --------------------------------------------------------------------------
# Poison records and the dead-letter topic


def produce_poison(brokers: str, prefix: str) -> list[str]:
    """Records that reach Kafka without event-api: each must be dead-lettered."""
    now_ms = int(time.time() * 1000)
    poison = {
        f"{prefix}-poison-noamount": json.dumps({"id": f"{prefix}-poison-noamount", "time": now_ms}),
        f"{prefix}-poison-badamount": json.dumps({"id": f"{prefix}-poison-badamount", "time": now_ms,
                                                  "amount": "lots"}),
        f"{prefix}-poison-notjson": "this is not JSON",
        f"{prefix}-poison-oldtime": json.dumps({"id": f"{prefix}-poison-oldtime", "time": -5, "amount": 1}),
    }
    producer = Producer({"bootstrap.servers": brokers, "acks": "all", "enable.idempotence": False,
                         "broker.address.family": "v4"})
    failures = []
    for key, value in poison.items():
        producer.produce(names.EVENTS_TOPIC, value=value.encode(), key=key.encode(),
                         on_delivery=lambda err, msg: err and failures.append(str(err)))
    producer.flush(30)
    if failures:
        raise RuntimeError(f"producing poison records failed: {failures}")
    return list(poison)


def read_dead_letters(brokers: str, topic: str = names.DEAD_LETTER_TOPIC) -> list[tuple[str | None, str]]:
    consumer = Consumer({"bootstrap.servers": brokers, "group.id": "streamproc-fault-suite",
                         "enable.auto.commit": False, "broker.address.family": "v4"})
    try:
        metadata = consumer.list_topics(topic, timeout=10)
        meta = metadata.topics.get(topic)
        if meta is None or meta.error is not None or not meta.partitions:
            return []
        partitions = [TopicPartition(topic, p) for p in meta.partitions]
        ends = {}
        for tp in partitions:
            _, high = consumer.get_watermark_offsets(tp, timeout=10)
            ends[tp.partition] = high
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in meta.partitions])
        letters = []
        done = {p for p, end in ends.items() if end <= 0}
        last = started = time.monotonic()
        while len(done) < len(ends) and time.monotonic() - last < 10 and time.monotonic() - started < 120:
            message = consumer.poll(0.5)
            if message is None or message.error():
                continue
            last = time.monotonic()
            headers = dict(message.headers() or [])
            reason = (headers.get("streamproc-reason") or b"").decode(errors="replace")
            key = message.key().decode(errors="replace") if message.key() else None
            if key is None:
                try:
                    key = json.loads(message.value()).get("id")
                except (ValueError, AttributeError, TypeError):
                    key = None
            letters.append((key, reason))
            if message.offset() + 1 >= ends[message.partition()]:
                done.add(message.partition())
        return letters
    finally:
        consumer.close()


# --------------------------------------------------------------------------
# Reconciliation


def reconciliation(stack: Stack, since_ms: int) -> tuple[dict | None, float]:
    """The aggregator's GET /api/v1/reconcile over this run (None when it
    did not answer 200), and how long it took."""
    query = urllib.parse.urlencode({"from": since_ms, "to": int(time.time() * 1000) + 60_000})
    url = f"http://127.0.0.1:{stack.p['AGGREGATOR_PORT']}/api/v1/reconcile?{query}"
    started = time.monotonic()
    try:
        with urllib.request.urlopen(url, timeout=10) as answer:
            body = json.load(answer)
    except (OSError, urllib.error.URLError, ValueError):
        body = None
    return body, time.monotonic() - started


@dataclass
class Drain:
    """How the end of the run went: when the stores stopped changing, and
    when the aggregator's reconciliation first said every event was
    accounted for after that."""
    steady_since: float
    accounted_at: float | None = None
    answer: dict | None = None
    # Seconds per reconciliation answered once the stores were steady.
    latencies: list[float] = field(default_factory=list)


def wait_drained(stack: Stack, expected: int, timeout: float, since_ms: int) -> Drain:
    """Until the stores hold at least `expected` events and stop growing,
    asking the aggregator to reconcile every second meanwhile."""
    deadline = time.monotonic() + timeout
    last = None
    drain = Drain(steady_since=time.monotonic())
    while time.monotonic() < deadline:
        try:
            counts = stack.counts()
        except (RuntimeError, OSError, urllib.error.URLError, subprocess.TimeoutExpired):
            time.sleep(1)
            continue
        if counts != last:
            last = counts
            drain = Drain(steady_since=time.monotonic())
        answer, took = reconciliation(stack, since_ms)
        if answer is not None:
            drain.answer = answer
            drain.latencies.append(took)
            if answer["status"] == "accounted" and drain.accounted_at is None:
                drain.accounted_at = time.monotonic()
        # Settled: every event accounted for, or nothing left in flight and
        # something missing, which the checks below report.
        settled = answer is not None and answer["status"] != "in_flight"
        if sum(counts) >= expected and time.monotonic() - drain.steady_since >= 5 and settled:
            say(f"drained: {counts[0]} rows in TimescaleDB, {counts[1]} points in InfluxDB")
            return drain
        time.sleep(1)
    say(f"the stores did not settle within {timeout:g}s (last counts {last}); reconciling anyway")
    return drain


def check_reconciliation(drain: Drain) -> tuple[list[str], list[tuple[str, str]]]:
    """The aggregator's own reconciliation: every event accounted for within
    RECONCILED_WITHIN of the drain, each answer within RECONCILE_ANSWER."""
    problems: list[str] = []
    answer = drain.answer or {}
    latencies = sorted(drain.latencies)
    figures = "no answer"
    if latencies:
        figures = (f"{len(latencies)} answers once steady, median {statistics.median(latencies) * 1000:.0f} ms, "
                   f"max {latencies[-1] * 1000:.0f} ms")
    if drain.accounted_at is None:
        problems.append(f"the aggregator did not account for every event: {answer.get('summary', 'no answer')}")
        after = "never"
    else:
        delay = max(0.0, drain.accounted_at - drain.steady_since)
        after = f"{delay:.1f}s after the stores stopped changing"
        if delay > RECONCILED_WITHIN:
            problems.append(f"reconciled {after}, not within {RECONCILED_WITHIN:g}s")
    if latencies and latencies[-1] > RECONCILE_ANSWER:
        problems.append(f"a reconciliation took {latencies[-1]:.2f}s, over {RECONCILE_ANSWER:g}s")
    totals = [
        ("reconciliation (GET /api/v1/reconcile)", f"{answer.get('summary', 'no answer')}, {after}"),
        ("reconciliation answer time", figures),
    ]
    return problems, totals


def reconcile(stack: Stack, load: Load, suite: Suite, poison: list[str]) -> tuple[list[str], list[tuple[str, str]]]:
    prefix = load.prefix
    problems: list[str] = []
    high_rows = stack.psql("select id || ' ' || amount::text from events", timeout=600).splitlines()
    high: dict[str, float] = {}
    dup_high = 0
    for row in high_rows:
        ident, _, amount = row.rpartition(" ")
        if ident in high:
            dup_high += 1
        high[ident] = float(amount)
    low: dict[str, float] = {}
    dup_low = 0
    for row in stack.influx_rows('SELECT "id", amount FROM event'):
        ident = row["id"]
        if ident in low:
            dup_low += 1
        low[ident] = row["amount"]
    letters = read_dead_letters(f"127.0.0.1:{stack.p['KAFKA_PORT']}")
    dlq: dict[str | None, str] = {}
    dup_dlq = 0
    for key, reason in letters:
        if key in dlq:
            dup_dlq += 1
        dlq[key] = reason

    in_both = [i for i in high if i in low]
    dlq_and_stored = [i for i in dlq if i in high or i in low]
    expected_amount: dict[str, float] = {f"{prefix}-{seq}": a for seq, a in enumerate(load.amounts)}
    expected_amount.update(dict(suite.probes))
    acked = [f"{prefix}-{seq}" for seq in range(load.total) if load.acked[seq]]
    acked += [i for i, _ in suite.probes]
    lost = [i for i in acked if i not in high and i not in low and i not in dlq]
    acked_in_dlq = [(i, dlq[i]) for i in acked if i in dlq]
    misrouted_high = [i for i, a in high.items() if a <= WATERMARK]
    misrouted_low = [i for i, a in low.items() if a > WATERMARK]
    wrong_store = [i for i, a in expected_amount.items()
                   if (i in high and a <= WATERMARK) or (i in low and a > WATERMARK)]
    changed = [i for i, a in expected_amount.items()
               if (i in high and abs(high[i] - a) > 1e-9) or (i in low and abs(low[i] - a) > 1e-9)]
    poison_missing = [p for p in poison if p not in dlq]
    poison_stored = [p for p in poison if p in high or p in low]
    ours_stored = sum(1 for i in high if i.startswith(prefix + "-")) + sum(1 for i in low if i.startswith(prefix + "-"))
    unacked_stored = sum(1 for seq in range(load.generated) if not load.acked[seq]
                         and (f"{prefix}-{seq}" in high or f"{prefix}-{seq}" in low))

    totals = [
        ("events generated / acknowledged (200)", f"{load.generated} / {load.acked_count}"),
        ("probe events acknowledged", str(len(suite.probes))),
        ("load client", load.stats.line()),
        ("probe client", suite.probe_stats.line()),
        ("rows in TimescaleDB (distinct ids)", f"{len(high_rows)} ({len(high)})"),
        ("points in InfluxDB (distinct ids)", f"{len(low) + dup_low} ({len(low)})"),
        ("records in events.dlq (distinct keys)",
         f"{len(letters)} ({len(dlq)}; {len(poison) - len(poison_missing)} of {len(poison)} poison records)"),
        ("this run's ids stored", str(ours_stored)),
        ("stored though never acknowledged", str(unacked_stored)),
        ("missing (acknowledged, in no store, not dead-lettered)", str(len(lost))),
        ("duplicates (in a store twice / in both stores / dlq and store)",
         f"{dup_high + dup_low} / {len(in_both)} / {len(dlq_and_stored)}"),
        ("misrouted (amount > 5 in InfluxDB or <= 5 in TimescaleDB)",
         str(len(set(misrouted_high) | set(misrouted_low) | set(wrong_store)))),
        ("acknowledged events dead-lettered", str(len(acked_in_dlq))),
    ]
    if lost:
        problems.append(f"{len(lost)} acknowledged events missing (in no store, not dead-lettered), e.g. {lost[:10]}")
    if dup_high or dup_low or in_both or dlq_and_stored:
        problems.append(f"duplicates: {dup_high} in TimescaleDB, {dup_low} in InfluxDB, {len(in_both)} in both "
                        f"(e.g. {in_both[:5]}), {len(dlq_and_stored)} dead-lettered and stored (e.g. {dlq_and_stored[:5]})")
    if misrouted_high or misrouted_low or wrong_store:
        problems.append(f"misrouted: {len(misrouted_high)} amount <= 5 in TimescaleDB, {len(misrouted_low)} "
                        f"amount > 5 in InfluxDB, {len(wrong_store)} of this run's ids in the wrong store")
    if changed:
        problems.append(f"{len(changed)} events stored with another amount than sent, e.g. {changed[:5]}")
    if poison_missing or poison_stored:
        problems.append(f"poison records not dead-lettered: {poison_missing}; stored: {poison_stored}")
    if acked_in_dlq:
        problems.append(f"{len(acked_in_dlq)} valid acknowledged events were dead-lettered, e.g. {acked_in_dlq[:3]}")
    if load.stats.refused or suite.probe_stats.refused:
        problems.append(f"event-api refused {load.stats.refused + suite.probe_stats.refused} valid events (4xx)")
    if load.acked_count < load.total:
        problems.append(f"only {load.acked_count} of {load.total} events were acknowledged by the end")
    return problems, totals


def print_report(outcomes: list[Outcome], totals: list[tuple[str, str]], problems: list[str], args) -> None:
    print()
    print(f"{'fault':<25} {'round':>5} {'injected':>9} {'down':>7} {'recovered':>10} {'bound':>6}  result  how")
    for o in outcomes:
        recovered = f"{o.recovered:.1f}s" if o.recovered is not None else "never"
        print(f"{o.fault:<25} {o.round:>5} {'+' + format(o.injected_at, '.1f') + 's':>9} {o.down:>6.1f}s "
              f"{recovered:>10} {o.bound:>5.0f}s  {'ok' if o.ok else 'FAIL':<6}  {o.note}")
    print()
    width = max(len(k) for k, _ in totals)
    for key, value in totals:
        print(f"{key:<{width}}  {value}")
    print()
    if problems:
        for p in problems:
            print(f"FAIL: {p}")
    else:
        print(f"fault suite: {len(outcomes)} faults injected and recovered; no loss, no duplicate, no misroute")


# --------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split("\n\n", 1)[1])
    parser.add_argument("--short", action="store_true",
                        help="the CI run: 4000 events at 25/s, every fault once, dev build, shorter pauses")
    parser.add_argument("--events", type=int, help="events to send [short: 4000, else 1000000]")
    parser.add_argument("--rate", type=float, help="events per second [short: 25, else 2000]")
    parser.add_argument("--batch", type=int, default=500, help="events per request at most [500]")
    parser.add_argument("--rounds", type=int, help="rounds of every fault, at least [short: 1, else 2]")
    parser.add_argument("--faults", default=",".join(FAULTS), help=f"comma-separated subset of: {', '.join(FAULTS)}")
    parser.add_argument("--retry-max", type=float, help="consumers' RETRY_MAX in seconds [short: 3, else 10]")
    parser.add_argument("--outage", type=float, help="PostgreSQL long outage in seconds [3 x RETRY_MAX]")
    parser.add_argument("--pause", type=float, help="seconds a killed component stays down [short: 2, else 5]")
    parser.add_argument("--rebalance-hold", type=float, help="seconds the second consumer stays [short: 6, else 15]")
    parser.add_argument("--gap", type=float, help="seconds between faults [short: 3, else 10]")
    parser.add_argument("--warmup", type=float, default=5, help="seconds of load before the first fault [5]")
    parser.add_argument("--recovery-bound", type=float, default=60,
                        help="seconds after a fault is undone within which probes must be stored [60; "
                             "PostgreSQL faults get RETRY_MAX more]")
    parser.add_argument("--drain-timeout", type=float, help="seconds to wait for the stores to settle [short: 120, else 900]")
    parser.add_argument("--profile", help="cargo profile [STREAMPROC_PROFILE, else dev with --short, release without]")
    parser.add_argument("--state", default=os.path.join(REPO, ".state", "fault"), help="state directory [.state/fault]")
    parser.add_argument("--port-offset", type=int, default=0,
                        help="added to every port (31092, 31432, 31086, 31994-31999, 31080), to run two suites at once")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--keep", action="store_true", help="leave the stack running at the end")
    parser.add_argument("--stop-on-failure", action="store_true",
                        help="stop injecting after a fault the pipeline did not recover from by itself "
                             "[default: restart both consumers gracefully, record the fault as failed, go on]")
    args = parser.parse_args()

    short = args.short
    args.events = args.events or (4000 if short else 1_000_000)
    args.rate = args.rate or (25 if short else 2000)
    args.rounds = args.rounds or (1 if short else 2)
    args.retry_max = args.retry_max or (3 if short else 10)
    args.outage = args.outage or 3 * args.retry_max
    args.pause = args.pause if args.pause is not None else (2 if short else 5)
    args.rebalance_hold = args.rebalance_hold or (6 if short else 15)
    args.gap = args.gap if args.gap is not None else (3 if short else 10)
    args.drain_timeout = args.drain_timeout or (120 if short else 900)
    args.profile = args.profile or os.environ.get("STREAMPROC_PROFILE") or ("dev" if short else "release")
    args.faults = [f.strip() for f in args.faults.split(",") if f.strip()]
    args.faults_until_load_ends = not short
    for f in args.faults:
        if f not in FAULTS:
            parser.error(f"unknown fault {f!r}; one of {', '.join(FAULTS)}")
    if args.outage <= args.retry_max:
        parser.error("--outage must be longer than --retry-max")

    state = os.path.abspath(args.state)
    global SECOND_CONSUMER_PORT
    SECOND_CONSUMER_PORT += args.port_offset
    for key in PORTS:
        PORTS[key] += args.port_offset
    env = dict(os.environ, STREAMPROC_STATE=state, STREAMPROC_PROFILE=args.profile,
               RETRY_MAX=f"{args.retry_max:g}s", **{k: str(v) for k, v in PORTS.items()})
    stack = Stack(state, args.profile, env)

    say(f"state {state}, profile {args.profile}, {args.events} events at {args.rate:g}/s, "
        f"faults {', '.join(args.faults)} x{args.rounds}")
    stack.script(LOCAL_SH, "down", check=False)
    subprocess.run(["rm", "-rf", state, *[os.path.dirname(d) for d in stack.pg_dirs()[1:]]], check=True)
    prefix = f"fault{int(time.time())}"
    load = Load(PORTS["EVENT_API_PORT"], prefix, args.events, args.rate, args.batch, args.seed)
    suite = Suite(args, stack, load)
    outcomes: list[Outcome] = []
    try:
        # Every event of the run is younger than this: the reconciliation's range.
        since_ms = int(time.time() * 1000) - 60_000
        stack.script(LOCAL_SH, "up", quiet=False)
        # Only this suite's load: the producer's events would be a second source.
        stack.script(LOCAL_SH, "stop", "event-producer")
        say("stack up; producing poison records straight to the topic")
        poison = produce_poison(f"127.0.0.1:{PORTS['KAFKA_PORT']}", prefix)
        load.start()
        outcomes = suite.run()
        say(f"faults done; waiting for the load to finish ({load.acked_count} of {load.total} acknowledged)")
        load.give_up_at = time.monotonic() + max(120, args.drain_timeout)
        while not load.finished.wait(5):
            pass
        probe_ok = suite.probe(True, True, time.monotonic() + args.recovery_bound)
        if not probe_ok:
            say("final probe not stored")
        # A lower bound: the stores also hold event-producer's first events.
        drain = wait_drained(stack, load.acked_count + len(suite.probes), args.drain_timeout, since_ms)
        problems, totals = reconcile(stack, load, suite, poison)
        reconciled, figures = check_reconciliation(drain)
        problems += reconciled
        totals += figures
        if not probe_ok:
            problems.append("the final probe was not stored: the pipeline did not end healthy")
        for o in outcomes:
            if not o.ok:
                problems.append(f"{o.fault} (round {o.round}) did not recover within {o.bound:g}s: {o.note}")
        missing = [f for f in args.faults if f not in {o.fault for o in outcomes}]
        if missing:
            problems.append(f"faults not injected: {', '.join(missing)}")
        totals.insert(0, ("run", f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, profile {args.profile}, "
                                 f"{args.events} events at {args.rate:g}/s, RETRY_MAX {args.retry_max:g}s, "
                                 f"{time.monotonic() - T0:.0f}s in all"))
        print_report(outcomes, totals, problems, args)
        return 1 if problems else 0
    except Exception:
        for name in ("event-api", "consumer-high", "consumer-low", "consumer-high-2", "tansu", "influxdb"):
            path = os.path.join(state, "logs", f"{name}.log")
            if os.path.exists(path):
                with open(path, "rb") as f:
                    tail = f.read()[-3000:].decode(errors="replace")
                print(f"--- last lines of {path}\n{tail}", file=sys.stderr)
        raise
    finally:
        load.stop_event.set()
        suite.stop_second_consumer()
        if not args.keep:
            stack.script(LOCAL_SH, "down", check=False)


if __name__ == "__main__":
    sys.exit(main())
