#!/usr/bin/env python3
"""Lints the Helm chart without a cluster, strictly: with its default values
and with each values file in helm_chart/ci/, which must all pass, and with
each file in helm_chart/ci/invalid/, which must all be refused.

Helm's own lint runs through helm-sdkpy (which carries Helm's library): it
checks Chart.yaml, validates the values against values.schema.json, renders
every template and parses the result. "Strict" as in `helm lint --strict`:
a warning fails, and so does a `required` value or a `fail` that Helm's lint
only logs.
A values file is merged over values.yaml, as `helm install -f` does.
"""

import argparse
import asyncio
import copy
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

import jsonschema
import yaml
from helm_sdkpy import actions, chart

SEVERITY = {1: "info", 2: "warning", 3: "error"}


def merged(base: dict, override: dict) -> dict:
    result = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(result.get(key), dict):
            result[key] = merged(result[key], value)
        else:
            result[key] = value
    return result


def lint(chart_dir: Path, values_file: Path | None) -> list[str]:
    """Problems Helm's lint finds in the chart with these values (merged over
    the defaults), warnings included; empty when it passes."""
    with tempfile.TemporaryDirectory() as scratch:
        copy_dir = Path(scratch) / chart_dir.name
        shutil.copytree(chart_dir, copy_dir)
        if values_file is not None:
            values = yaml.safe_load((chart_dir / "values.yaml").read_text())
            override = yaml.safe_load(values_file.read_text()) or {}
            (copy_dir / "values.yaml").write_text(yaml.safe_dump(merged(values, override)))
        # In lint mode Helm's library only logs a failed `required` (WARN)
        # or `fail` (INFO "funcMap fail"), on standard error: keep the log
        # to judge it.
        log = Path(scratch) / "helm.log"
        saved = os.dup(2)
        with open(log, "w") as sink:
            os.dup2(sink.fileno(), 2)
            try:
                result = asyncio.run(chart.Lint(actions.Configuration()).run(str(copy_dir)))
            finally:
                os.dup2(saved, 2)
                os.close(saved)
        problems = [f"{SEVERITY.get(m['Severity'], m['Severity'])} in {m['Path']}"
                    for m in result.get("Messages") or [] if m["Severity"] >= 2]
        problems += [line.strip() for line in log.read_text().splitlines()
                     if any(mark in line for mark in ("WARN", "ERROR", "funcMap fail"))]
        return list(dict.fromkeys(problems))


def schema_errors(chart_dir: Path, values_file: Path) -> list[str]:
    """What values.schema.json says of the merged values, in words (Helm's
    lint result carries no message text)."""
    schema = json.loads((chart_dir / "values.schema.json").read_text())
    values = merged(yaml.safe_load((chart_dir / "values.yaml").read_text()),
                    yaml.safe_load(values_file.read_text()) or {})
    return [f"{'.'.join(map(str, e.absolute_path)) or '(top)'}: {e.message}"
            for e in jsonschema.Draft7Validator(schema).iter_errors(values)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("chart", type=Path, nargs="?", default=Path(__file__).resolve().parent.parent / "helm_chart")
    args = parser.parse_args()
    chart_dir: Path = args.chart
    passed = failed = 0

    def report(ok: bool, what: str, details: list[str]) -> None:
        nonlocal passed, failed
        passed, failed = passed + ok, failed + (not ok)
        print(f"{'ok' if ok else 'FAILED'}  {what}")
        for line in details:
            print(f"      {line}")

    problems = lint(chart_dir, None)
    report(not problems, "lint with the default values", problems)
    for values_file in sorted((chart_dir / "ci").glob("*.yaml")):
        problems = lint(chart_dir, values_file)
        report(not problems, f"lint with {values_file.relative_to(chart_dir)}", problems)
    for values_file in sorted((chart_dir / "ci" / "invalid").glob("*.yaml")):
        problems = lint(chart_dir, values_file)
        reasons = schema_errors(chart_dir, values_file) or problems
        report(bool(problems), f"refused: {values_file.relative_to(chart_dir)}",
               reasons if problems else ["lint passed, but these values must be refused"])
    print(f"chart: {passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
