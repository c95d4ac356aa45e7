"""The shell scripts the Helm chart runs in pods, run here for real, taken
from a render of the chart (scripts/check_chart.py calls run_all):

- shellcheck on every pod's `sh -c` script (of every render);
- the topic Job's script, with stand-ins for Kafka's tools: the calls it
  makes (create with the replication factor and min.insync.replicas, then
  set min.insync.replicas on existing topics) and its warning when a topic's
  replication factor differs;
- the helm test pod's script, against a stand-in event-api and aggregator on
  127.0.0.1: it passes when the event is counted, and fails at once, saying
  why, on a 503 from the aggregator, a refused post or DISABLE; with tokens
  required (auth.enabled), it passes when it has them and fails on a 401;
- the read-only user Job's two scripts, against a PostgreSQL (TimescaleDB
  when installed) and an InfluxDB started here on free ports: the reader can
  read what the aggregator reads, every write is refused, a second run (an
  upgrade) changes the password and changes nothing else.

Each check yields (ok, what, details).
"""

import json
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

PG_BIN = Path(os.environ.get("PG_BIN", "/usr/lib/postgresql/15/bin"))


def run_all(objects: list, repo: Path):
    pods = {}
    for o in objects:
        component = o["metadata"].get("labels", {}).get("app.kubernetes.io/component")
        spec = o["spec"] if o["kind"] == "Pod" else o.get("spec", {}).get("template", {}).get("spec")
        if component and spec and o["kind"] in ("Pod", "Job"):
            pods[component] = spec
    configmaps = {o["metadata"]["name"]: o.get("data", {}) for o in objects if o["kind"] == "ConfigMap"}
    yield topics_check(container(pods["topics"], "topics"))
    yield from helm_test_checks(container(pods["test"], "post-and-count"))
    if "db-users" in pods:
        job = pods["db-users"]
        sql_configmap = next(v["configMap"]["name"] for v in job["volumes"] if v["name"] == "sql")
        yield postgres_reader_check(container(job, "postgres-reader"), configmaps[sql_configmap], repo)
        yield influxdb_reader_check(container(job, "influxdb-reader"))
    else:
        yield False, "read-only users", ["the default render has no db-users Job"]


def container(spec: dict, name: str) -> dict:
    return next(c for c in spec["containers"] if c["name"] == name)


def script_of(c: dict) -> str:
    assert c["command"][:2] == ["sh", "-c"], c["command"]
    return c["command"][2]


def literal_env(c: dict) -> dict:
    return {e["name"]: str(e["value"]) for e in c.get("env", []) if "value" in e}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_sh(script: str, env: dict, timeout: float) -> tuple[int, str, float]:
    """Runs a pod's script with sh; (exit code, output, seconds)."""
    started = time.monotonic()
    base = {k: os.environ[k] for k in ("PATH", "LANG") if k in os.environ}
    try:
        done = subprocess.run(["sh", "-c", script], env={**base, **env}, capture_output=True, text=True,
                              timeout=timeout, stdin=subprocess.DEVNULL)
        return done.returncode, done.stdout + done.stderr, time.monotonic() - started
    except subprocess.TimeoutExpired as e:
        out = "".join(x.decode() if isinstance(x, bytes) else x for x in (e.stdout or "", e.stderr or ""))
        return -1, f"{out}\n(still running after {timeout} s)", time.monotonic() - started


def shellcheck_checks(objects: list):
    """shellcheck (POSIX sh) on every `sh -c` script of every pod, each
    different script once."""
    seen = set()
    for o in objects:
        spec = o["spec"] if o["kind"] == "Pod" else o.get("spec", {}).get("template", {}).get("spec")
        if not spec or o["kind"] not in ("Pod", "Job", "Deployment", "StatefulSet"):
            continue
        for c in spec.get("initContainers", []) + spec["containers"]:
            if c.get("command", [])[:2] != ["sh", "-c"] or c["command"][2] in seen:
                continue
            seen.add(c["command"][2])
            what = f"shellcheck: {o['kind']} {o['metadata']['name']} container {c['name']}"
            if shutil.which("shellcheck") is None:
                yield False, what, ["no shellcheck: run scripts/install.sh"]
                continue
            done = subprocess.run(["shellcheck", "-s", "sh", "-"], input=c["command"][2], capture_output=True, text=True)
            yield done.returncode == 0, what, done.stdout.splitlines()


# --- topics ------------------------------------------------------------------------

FAKE_KAFKA_TOOL = """#!/bin/sh
# Stands in for Kafka's kafka-topics.sh and kafka-configs.sh: logs its
# arguments; --describe answers as Kafka 3.9 does, with FAKE_REPLICAS.
echo "$(basename "$0") $*" >> "$FAKE_LOG"
case " $* " in
  *" --describe "*)
    printf 'Topic: %s\tTopicId: x\tPartitionCount: 3\tReplicationFactor: %s\tConfigs: min.insync.replicas=2\n' \
      "$6" "$FAKE_REPLICAS"
    printf '\tTopic: %s\tPartition: 0\tLeader: 1\tReplicas: 1,2,3\tIsr: 1,2,3\n' "$6" ;;
esac
"""


def topics_check(c: dict):
    """The topic Job's script with stand-ins for Kafka's tools: what it asks
    Kafka to do, and its warning for a topic whose replication differs."""
    what = ("topic Job script (Kafka's tools stood in for): creates, sets min.insync.replicas and a week's "
            "retention, warns")
    with tempfile.TemporaryDirectory() as scratch:
        for tool in ("kafka-topics.sh", "kafka-configs.sh"):
            (Path(scratch) / tool).write_text(FAKE_KAFKA_TOOL)
            (Path(scratch) / tool).chmod(0o755)
        log = Path(scratch) / "log"
        script = script_of(c).replace("bin=/opt/kafka/bin", f"bin={scratch}")
        env = {**literal_env(c), "REPLICATION": "3", "MIN_INSYNC": "2", "FAKE_LOG": str(log)}
        details = []
        for replicas, warns in (("3", False), ("1", True)):
            log.unlink(missing_ok=True)
            status, output, _ = run_sh(script, {**env, "FAKE_REPLICAS": replicas}, timeout=20)
            calls = log.read_text().splitlines() if log.exists() else []
            expected = [
                f"{tool} --bootstrap-server {env['BROKERS']} {args}"
                for topic in (env["TOPIC"], env["DLQ_TOPIC"])
                for tool, args in (
                    ("kafka-topics.sh", f"--create --if-not-exists --topic {topic} --partitions {env['PARTITIONS']} "
                                        "--replication-factor 3 --config min.insync.replicas=2 "
                                        "--config retention.ms=604800000"),
                    ("kafka-configs.sh", f"--alter --entity-type topics --entity-name {topic} "
                                         "--add-config min.insync.replicas=2,retention.ms=604800000"),
                    ("kafka-topics.sh", f"--describe --topic {topic}"))]
            if status != 0 or calls != expected:
                details += [f"exit {status}; calls:", *calls, "expected:", *expected, *output.splitlines()[-5:]]
            if ("WARNING: topic" in output) != warns:
                details.append(f"replication factor {replicas} of 3: {'no ' if warns else ''}warning expected; it said:")
                details += output.splitlines()[-4:]
    return not details, what, details


# --- helm test -----------------------------------------------------------------

class StandIn(BaseHTTPRequestHandler):
    """event-api's POST /v1/events and the aggregator's GET /api/v1/totals,
    answering as the real ones do in the mode the server is in; with
    server.tokens (path prefix → token) set, as they do with API_TOKEN."""

    def refused(self) -> bool:
        token = next((t for prefix, t in self.server.tokens.items() if self.path.startswith(prefix)), None)
        if token is None or self.headers.get("authorization") == f"Bearer {token}":
            return False
        self.answer(401, {"error": "unauthorized", "message": "the bearer token is not the one this service accepts"})
        return True

    def answer(self, status: int, body: dict) -> None:
        data = json.dumps(body, separators=(",", ":")).encode()  # as serde writes it
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:  # noqa: N802
        server = self.server
        if self.path != "/api/v1/totals":
            return self.answer(404, {"message": "not found"})
        if self.refused():
            return None
        if server.mode == "aggregator disabled":
            return self.answer(503, {"message": "processing disabled, did nothing"})
        part = {"available": True, "count": server.high, "sum": 7.5 * server.high, "last_time": None}
        return self.answer(200, {"high": {"store": "timescaledb", **part},
                                 "low": {"store": "influxdb", **part, "count": 3}})

    def do_POST(self) -> None:  # noqa: N802
        server = self.server
        self.rfile.read(int(self.headers.get("content-length", 0)))
        if self.path != "/v1/events":
            return self.answer(404, {"message": "not found"})
        if self.refused():
            return None
        if server.mode == "event-api disabled":
            return self.answer(200, {"message": "processing disabled, did nothing"})
        if server.mode == "event-api unavailable":
            return self.answer(503, {"message": "kafka: broker transport failure"})
        if server.mode == "counted":
            server.high += 1
        return self.answer(200, {"accepted": 1})

    def log_message(self, *args) -> None:
        pass


def helm_test_checks(c: dict):
    script = script_of(c)
    server = ThreadingHTTPServer(("127.0.0.1", 0), StandIn)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    env = {"EVENT_API": url, "AGGREGATOR": url}
    # With auth.enabled the pod has the tokens (from the Secret) in these.
    # One holds the characters curl's configuration needs escaped.
    ingest, aggregator = "ingest-0123456789", 'aggr"eg\\ator-0123456789'
    tokens = {"/v1/events": ingest, "/api/": aggregator}
    with_tokens = {"INGEST_TOKEN": ingest, "AGGREGATOR_TOKEN": aggregator}
    # (mode, server tokens, pod tokens): (exit code, text the output must
    # have, at most this many seconds)
    cases = {
        ("counted", None, None): (0, "the event went through", 10),
        ("aggregator disabled", None, None): (1, 'answered HTTP 503: {"message":"processing disabled', 10),
        ("event-api unavailable", None, None): (1, "event-api did not take the event", 10),
        ("event-api disabled", None, None): (1, "event-api has DISABLE set", 10),
        ("counted", "tokens", "tokens"): (0, "the event went through", 10),
        ("counted", "tokens", None): (1, "answered HTTP 401", 10),
        ("counted", "tokens", "wrong ingest token"): (1, "event-api did not take the event", 10),
    }
    try:
        for (mode, server_tokens, pod_tokens), (code, text, seconds) in cases.items():
            server.mode, server.high = mode, 4
            server.tokens = tokens if server_tokens else {}
            pod_env = {"tokens": with_tokens, "wrong ingest token": {**with_tokens, "INGEST_TOKEN": ingest + "x"},
                       None: {}}[pod_tokens]
            status, output, took = run_sh(script, {**env, **pod_env}, timeout=30)
            ok = status == code and text in output and took <= seconds
            label = mode if server_tokens is None else f"{mode}, tokens required, {pod_tokens or 'none'} sent"
            yield ok, f"helm test script, {label}: exit {status} after {took:.1f} s", \
                [] if ok else [f"expected exit {code} within {seconds} s, saying {text!r}; it said:", *output.splitlines()[-8:]]
    finally:
        server.shutdown()
        server.server_close()


# --- PostgreSQL ------------------------------------------------------------------

def postgres_reader_check(c: dict, sql_files: dict, repo: Path):
    what = "read-only PostgreSQL role: the Job's script, then the aggregator's reads and refused writes"
    if not (PG_BIN / "initdb").exists():
        return False, what, [f"no PostgreSQL in {PG_BIN}: run scripts/install.sh"]
    as_postgres = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    state = Path(tempfile.mkdtemp(prefix="streamproc-chart-pg-"))
    port = free_port()
    details = []
    try:
        if as_postgres:
            shutil.chown(state, "postgres", "postgres")
        data = state / "data"
        subprocess.run([*as_postgres, str(PG_BIN / "initdb"), "-D", str(data), "-U", "admin", "--auth-local=trust",
                        "--auth-host=scram-sha-256", "--encoding=UTF8"], check=True, capture_output=True)
        libdir = subprocess.run([str(PG_BIN / "pg_config"), "--pkglibdir"], capture_output=True, text=True).stdout.strip()
        timescale = any(Path(libdir).glob("timescaledb*.so"))
        with open(data / "postgresql.conf", "a") as conf:
            conf.write(f"listen_addresses = '127.0.0.1'\nport = {port}\nunix_socket_directories = '{state}'\n"
                       "fsync = off\n")
            if timescale:
                conf.write("shared_preload_libraries = 'timescaledb'\ntimescaledb.telemetry_level = off\n")
        subprocess.run([*as_postgres, str(PG_BIN / "pg_ctl"), "-D", str(data), "-l", str(state / "log"), "-w", "-t", "60",
                        "start"], check=True, capture_output=True)

        def psql(sql: str, user: str = "admin", password: str | None = None, db: str = "streamproc") -> subprocess.CompletedProcess:
            env = {**os.environ, "PGPASSWORD": password or ""}
            host = "127.0.0.1" if password is not None else str(state)
            return subprocess.run(["psql", "-X", "-v", "ON_ERROR_STOP=1", "-qtA", "-h", host, "-p", str(port), "-U", user,
                                   "-d", db, "-c", sql], env=env, capture_output=True, text=True)

        assert psql("CREATE DATABASE streamproc", db="postgres").returncode == 0
        assert psql("ALTER ROLE admin PASSWORD 'admin-password'").returncode == 0
        sql_dir = state / "sql"
        sql_dir.mkdir()
        for name, text in sql_files.items():
            (sql_dir / name).write_text(text)
        script = script_of(c).replace("/sql/", f"{sql_dir}/")
        env = {**literal_env(c), "PGHOST": "127.0.0.1", "PGPORT": str(port), "PGUSER": "admin",
               "PGPASSWORD": "admin-password", "PGSSLMODE": "disable"}
        reader = env["READER"]

        # The Job at install, before consumer-high has made its tables.
        status, output, _ = run_sh(script, {**env, "READER_PASSWORD": "first password"}, timeout=60)
        if status != 0:
            return False, what, ["the Job's script failed at install:", *output.splitlines()[-10:]]
        for migration in sorted((repo / "services/consumer-high/migrations").glob("*.sql")):
            done = psql(migration.read_text())
            if done.returncode != 0:
                return False, what, [f"consumer-high's migration {migration.name} failed:", done.stderr.strip()]
        assert psql("INSERT INTO events VALUES (now(), 7.5, 'a');"
                    "INSERT INTO events_per_second VALUES (1, 1, 7.5, 7.5, 7.5)").returncode == 0
        # The Job again at an upgrade, with a new password.
        status, output, _ = run_sh(script, {**env, "READER_PASSWORD": "it's the second"}, timeout=60)
        if status != 0:
            return False, what, ["the Job's script failed at upgrade:", *output.splitlines()[-10:]]

        reads = {
            "the aggregator's totals": "SELECT coalesce(sum(events), 0)::bigint, (SELECT max(time) FROM events) FROM events_per_second",
            "the aggregator's buckets": "SELECT second / 10, sum(events) FROM events_per_second GROUP BY 1",
        }
        for name, sql in reads.items():
            done = psql(sql, reader, "it's the second")
            if done.returncode != 0 or not done.stdout.strip():
                details.append(f"{name} as {reader}: {done.stderr.strip() or done.stdout.strip()!r}")
        if psql("SELECT 1", reader, "first password").returncode == 0:
            details.append("the old password still works after the upgrade")
        writes = {
            "INSERT": "INSERT INTO events VALUES (now(), 1, 'b')",
            "UPDATE": "UPDATE events_per_second SET events = 0",
            "DELETE": "DELETE FROM event_ids",
            "TRUNCATE": "TRUNCATE events",
            "CREATE TABLE": "CREATE TABLE mine (a int)",
            "DROP TABLE": "DROP TABLE events_per_second",
            "INSERT in a read-write transaction": "SET default_transaction_read_only = off; INSERT INTO events_per_second VALUES (2, 1, 1, 1, 1)",
        }
        for name, sql in writes.items():
            if psql(sql, reader, "it's the second").returncode == 0:
                details.append(f"{reader} could {name}")
        kind = "TimescaleDB hypertable" if timescale else "plain tables"
        return not details, f"{what} ({kind}; {len(reads)} reads, {len(writes)} writes refused)", details
    except (subprocess.CalledProcessError, AssertionError) as e:
        log = (state / "log").read_text()[-2000:] if (state / "log").exists() else ""
        return False, what, [f"PostgreSQL set-up failed: {e}", *log.splitlines()[-5:]]
    finally:
        if (state / "data" / "postmaster.pid").exists():
            subprocess.run([*as_postgres, str(PG_BIN / "pg_ctl"), "-D", str(state / "data"), "-m", "immediate", "stop"],
                           capture_output=True)
        shutil.rmtree(state, ignore_errors=True)


# --- InfluxDB --------------------------------------------------------------------

def influx(url: str, path: str, user: str, password: str, **params) -> tuple[int, str]:
    data = params.pop("data", None)
    query = urllib.parse.urlencode({"u": user, "p": password, **params})
    request = urllib.request.Request(f"{url}{path}?{query}", data=data, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def influxdb_reader_check(c: dict):
    what = "read-only InfluxDB user: the Job's script, then reads and refused writes"
    influxd = shutil.which("influxd")
    if influxd is None:
        return False, what, ["no influxd: run scripts/install.sh"]
    state = Path(tempfile.mkdtemp(prefix="streamproc-chart-influx-"))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "INFLUXDB_DATA_DIR": f"{state}/data", "INFLUXDB_META_DIR": f"{state}/meta",
           "INFLUXDB_DATA_WAL_DIR": f"{state}/wal", "INFLUXDB_HTTP_BIND_ADDRESS": f"127.0.0.1:{port}",
           "INFLUXDB_BIND_ADDRESS": f"127.0.0.1:{free_port()}", "INFLUXDB_HTTP_AUTH_ENABLED": "true",
           "INFLUXDB_REPORTING_DISABLED": "true", "INFLUXDB_HTTP_LOG_ENABLED": "false",
           "INFLUXDB_DATA_QUERY_LOG_ENABLED": "false"}
    server = subprocess.Popen([influxd, "run"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    details = []
    try:
        for _ in range(100):
            try:
                urllib.request.urlopen(f"{url}/ping", timeout=1)
                break
            except OSError:
                time.sleep(0.1)
        else:
            return False, what, [f"influxd did not answer on {url}"]
        # The first user may be made without credentials: the admin.
        status, body = influx(url, "/query", "", "", q="CREATE USER admin WITH PASSWORD 'admin-password' WITH ALL PRIVILEGES")
        if status != 200 or "error" in body:
            return False, what, [f"creating the admin failed: {status} {body}"]
        script = script_of(c)
        job_env = {**literal_env(c), "URL": url, "ADMIN": "admin", "ADMIN_PASSWORD": "admin-password"}
        reader, db = job_env["READER"], job_env["DB"]
        first, second = "first password", "it's a \\ second"
        for password, when in ((first, "install"), (second, "upgrade")):
            status, output, _ = run_sh(script, {**job_env, "READER_PASSWORD": password}, timeout=60)
            if status != 0:
                return False, what, [f"the Job's script failed at {when}:", *output.splitlines()[-10:]]
        status, body = influx(url, "/write", "admin", "admin-password", db=db, data=b"events_low amount=1.5")
        if status != 204:
            details.append(f"the admin could not write: {status} {body}")
        status, body = influx(url, "/query", reader, second, db=db, q="SELECT count(amount) FROM events_low")
        if status != 200 or '"error"' in body or "events_low" not in body:
            details.append(f"{reader} could not read: {status} {body}")
        if influx(url, "/query", reader, first, db=db, q="SHOW MEASUREMENTS")[0] == 200:
            details.append("the old password still works after the upgrade")
        status, body = influx(url, "/write", reader, second, db=db, data=b"events_low amount=2.5")
        if status < 400:
            details.append(f"{reader} could write: {status} {body}")
        for statement in ('DROP MEASUREMENT "events_low"', f'DROP DATABASE "{db}"', 'CREATE DATABASE "other"',
                          'DELETE FROM "events_low"', 'CREATE USER "x" WITH PASSWORD \'y\''):
            status, body = influx(url, "/query", reader, second, db=db, q=statement)
            if status == 200 and '"error"' not in body:
                details.append(f"{reader} could {statement}")
        return not details, f"{what} (1 read, 6 writes refused)", details
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        shutil.rmtree(state, ignore_errors=True)
