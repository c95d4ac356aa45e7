"""What the ingest and consume benchmarks share: running the native
baselines (crates/bench, the `native-baseline` binary), the CPU and peak
memory of the processes around them, and the rows they report.

Rows are what scripts/bench_report.py merges: name, figure, unit, the
baseline measured in the same run (baseline_name, baseline, ratio), a goal
(target_ratio: the ratio must reach it; limit: the figure must not exceed
it) and the settings, as one line of text.
"""

import json
import os
import socket
import subprocess
import sys
import time


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, what: str, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    sys.exit(f"{what} did not listen on port {port}")


def start_tansu(tansu: str, storage: str, workdir: str) -> tuple[subprocess.Popen, str]:
    """Starts a tansu broker on a free loopback port with `storage` (a
    relative SQLite path is taken from `workdir`); returns it, listening,
    and its bootstrap address."""
    port = free_port()
    brokers = f"127.0.0.1:{port}"
    broker = subprocess.Popen(
        [tansu, "broker", "--listener-url", f"tcp://{brokers}", "--advertised-listener-url", f"tcp://{brokers}",
         "--storage-engine", storage],
        cwd=workdir, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_port(port, "tansu")
    except SystemExit:
        broker.kill()
        raise
    return broker, brokers


def _stat_fields(pid: int | str) -> list[str]:
    """/proc/PID/stat from field 3 (state) on."""
    with open(f"/proc/{pid}/stat") as stat:
        # The command name, field 2, may hold spaces: count from after it.
        return stat.read().rsplit(")", 1)[1].split()


def cpu_seconds(pid: int) -> float:
    """User plus system CPU of a running process, all its threads."""
    fields = _stat_fields(pid)
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def tree_cpu_seconds(pid: int) -> float:
    """CPU of a process and its children: a server such as PostgreSQL does
    its work in child processes (the children that exited are counted in
    the parent's cutime and cstime)."""
    fields = _stat_fields(pid)
    total = sum(int(v) for v in fields[11:15]) / os.sysconf("SC_CLK_TCK")
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            child = _stat_fields(entry)
        except OSError:
            continue  # exited meanwhile
        if int(child[1]) == pid:
            total += (int(child[11]) + int(child[12])) / os.sysconf("SC_CLK_TCK")
    return total


def machine_busy_seconds() -> float:
    """CPU seconds spent on anything but idle and I/O wait, all cores: the
    stores' processes included, which no single pid shows."""
    with open("/proc/stat") as stat:
        fields = [int(v) for v in stat.readline().split()[1:]]
    return (sum(fields[:8]) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")


def peak_rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def native(bin_dir: str, subcommand: str, watch: dict[str, int], **options) -> dict:
    """Runs `native-baseline SUBCOMMAND --option value…` and returns the JSON
    line it prints. Its `cores` holds the CPU that each process in `watch`
    (name -> pid) and the baseline itself used over the timed part, in
    cores, so that a figure can be told to be bound by the broker, the
    service or the client."""
    command = [os.path.join(bin_dir, "native-baseline"), subcommand, "--clock-ticks", str(os.sysconf("SC_CLK_TCK"))]
    for name, pid in watch.items():
        command += ["--watch", f"{name}={pid}"]
    for name, value in options.items():
        flag = "--" + name.replace("_", "-")
        command += [flag] if value is True else [flag, str(value)]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"{' '.join(command)} failed ({result.returncode}):\n{result.stderr.strip()}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def cores_text(cores: dict) -> str:
    return ", ".join(f"{name} {value:.2f}" for name, value in cores.items() if value is not None)


def median_run(runs: list[dict]) -> dict:
    """The run with the median rate (the upper one of an even count)."""
    return sorted(runs, key=lambda r: r["rate"])[len(runs) // 2]


def rates(runs: list[dict]) -> str:
    return ", ".join(f"{run['rate']:,.0f}" for run in runs)


def spread(baselines: list[dict], services: list[dict]) -> str:
    """Each round's ratio against the baseline run in the same round: how
    far the rounds of one run disagree."""
    ratios = sorted(s["rate"] / b["rate"] for b, s in zip(baselines, services))
    return f"round ratios {ratios[0]:.2f}-{ratios[-1]:.2f} ({', '.join(f'{r:.2f}' for r in ratios)})"


def ratio_row(name: str, figure: float, unit: str, baseline_name: str, baseline: float,
              target_ratio: float | None, settings: str) -> dict:
    return {"name": name, "figure": round(figure), "unit": unit, "baseline_name": baseline_name,
            "baseline": round(baseline), "ratio": round(figure / baseline, 3), "target_ratio": target_ratio,
            "settings": settings}


def rss_row(service: str, pid: int, limit_mib: float, settings: str) -> dict:
    return {"name": f"{service} peak RSS", "figure": round(peak_rss_mib(pid), 1), "unit": "MiB",
            "baseline_name": None, "baseline": None, "ratio": None, "target_ratio": None,
            "limit": limit_mib, "settings": settings}


def print_table(rows: list[dict]) -> None:
    def number(value) -> str:
        return "-" if value is None else f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"
    header = ["figure", "value", "unit", "baseline", "ratio", "goal", "settings"]
    table = [[r["name"], number(r["figure"]), r["unit"],
              f"{r['baseline_name']}: {number(r['baseline'])}" if r["baseline"] is not None else "",
              f"{r['ratio']:.2f}" if r["ratio"] is not None else "",
              f">= {r['target_ratio']}x" if r["target_ratio"] is not None
              else f"<= {r['limit']:g}" if r.get("limit") is not None else "",
              r["settings"]] for r in rows]
    widths = [max(len(str(c)) for c in column) for column in zip(header, *table)]
    for line in [header, *table]:
        print("  ".join(str(c).ljust(w) for c, w in zip(line, widths)).rstrip())


def write_rows(path: str | None, rows: list[dict]) -> None:
    if path:
        with open(path, "w") as f:
            json.dump(rows, f, indent=2)
