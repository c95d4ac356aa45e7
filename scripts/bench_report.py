#!/usr/bin/env python3
"""Benchmark report: merges the rows each benchmark wrote (--json) into one
table and one machine-readable file.

A row is a JSON object with `name`, `figure` and `unit`, and optionally a
baseline measured in the same run (`baseline_name`, `baseline`, `ratio`),
a goal (`target_ratio`: the ratio must reach it; `max_ratio`: the ratio
must not exceed it; `limit`: the figure must not exceed it) and the `settings` it ran with. Prints every row with
whether it meets its goal, and writes them with the date and the machine.
Exits 0 even when a goal is missed: figures depend on the machine, and the
table says which goals were missed.
"""

import argparse
import datetime
import json
import os
import platform
import sys


def machine() -> dict:
    model = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            model = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), model)
    except OSError:
        pass
    with open("/proc/meminfo") as f:
        mem_kib = int(next(line.split()[1] for line in f if line.startswith("MemTotal")))
    return {"cpus": os.cpu_count(), "cpu": model, "memory_gib": round(mem_kib / 2**20, 1),
            "kernel": platform.release(), "os": platform.freedesktop_os_release().get("PRETTY_NAME", "")}


def met(row: dict) -> bool | None:
    if row.get("figure") is None:
        return False if any(row.get(k) is not None for k in ("target_ratio", "max_ratio", "limit")) else None
    if row.get("target_ratio") is not None:
        return row.get("ratio") is not None and row["ratio"] >= row["target_ratio"]
    if row.get("max_ratio") is not None:
        return row.get("ratio") is not None and row["ratio"] <= row["max_ratio"]
    if row.get("limit") is not None:
        return row["figure"] <= row["limit"]
    return None


def number(value, unit: str = "") -> str:
    if value is None:
        return "-"
    text = f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"
    return f"{text} {unit}".strip()


def goal(row: dict) -> str:
    if row.get("target_ratio") is not None:
        return f">= {row['target_ratio']}x"
    if row.get("max_ratio") is not None:
        return f"<= {row['max_ratio']}x"
    if row.get("limit") is not None:
        return f"<= {number(row['limit'], row['unit'])}"
    return ""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("rows", nargs="+", help="JSON files of rows, one per benchmark")
    parser.add_argument("--out", required=True, help="write the merged report here")
    parser.add_argument("--markdown", help="also write the table as Markdown here")
    args = parser.parse_args()

    rows = []
    for path in args.rows:
        with open(path) as f:
            for row in json.load(f):
                row["met"] = met(row)
                rows.append(row)
    report = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
              "machine": machine(), "rows": rows}
    with open(args.out, "w") as f:
        json.dump(report, f, indent=2)

    header = ["figure", "value", "baseline", "ratio", "goal", "met", "settings"]
    table = [[r["name"], number(r.get("figure"), r["unit"]),
              f"{r['baseline_name']}: {number(r['baseline'], r['unit'])}" if r.get("baseline") is not None else "",
              f"{r['ratio']:.2f}" if r.get("ratio") is not None else "", goal(r),
              {True: "yes", False: "NO", None: ""}[r["met"]], r.get("settings", "")] for r in rows]
    widths = [max(len(str(c)) for c in column) for column in zip(header, *table)]
    for line in [header, *table]:
        print("  ".join(str(c).ljust(w) for c, w in zip(line, widths)).rstrip())
    m = report["machine"]
    print(f"\n{report['date']}, {m['cpus']} CPUs ({m['cpu']}), {m['memory_gib']} GiB, {m['os']}; "
          f"written to {args.out}")
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(f"Measured {report['date'][:10]} on {m['cpus']} CPUs ({m['cpu']}), "
                    f"{m['memory_gib']} GiB, {m['os']}, release build.\n\n")
            f.write("| " + " | ".join(header) + " |\n| " + " | ".join("---" for _ in header) + " |\n")
            for line in table:
                f.write("| " + " | ".join(str(c).replace("|", "\\|") for c in line) + " |\n")
    missed = [r["name"] for r in rows if r["met"] is False]
    if missed:
        print(f"goals missed: {', '.join(missed)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
