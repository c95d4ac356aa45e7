#!/usr/bin/env python3
"""Checks the Helm chart without a cluster, with Helm's own engine.

- Lint: Helm's lint, strict, with the default values and each values file in
  helm_chart/ci/.
- Render: like `helm install --dry-run` (helm template), with the default
  values, each values file in helm_chart/ci/ and release names up to Helm's
  maximum of 53 characters; every rendered object must be valid, strictly
  (no unknown field), for Kubernetes 1.30 and for the newest version whose
  schemas kubernetes-validate ships; names must be valid for their kind
  (Services DNS-1035 labels of at most 63 characters, StatefulSets at most 52).
- References: every Service, ConfigMap, Secret, key and port that a pod, a
  Service, an ingress, a setting (host names in env vars and ConfigMaps),
  an autoscaler, a disruption budget or a network policy names exists in the
  same render; host names from outside the cluster must come from the values.
- Network policies: who may reach what, with the defaults, is exactly the
  intended table; with any values, no pod of the release is left unselected.
- Refusals: each file in helm_chart/ci/invalid/ and each invalid release
  name must be refused by the render (schema, `required` or the chart's own
  `fail`), with Helm's message shown.
- The scripts the chart runs, run here for real (scripts/chart_scripts.py):
  the helm test against a stand-in event-api and aggregator (a 503 fails it
  at once), and the read-only user Job's statements against a local
  PostgreSQL and InfluxDB (the reader reads; every write is refused).

helm-python-sdk carries Helm's Go library (lint and render);
kubernetes-validate carries the Kubernetes JSON schemas.
"""

import argparse
import copy
import functools
import ipaddress
import json
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import helm_python
import yaml
from kubernetes_validate import utils as kv

import chart_scripts

REPO = Path(__file__).resolve().parent.parent
NAMESPACE = "streamproc"
KUBERNETES_VERSIONS = ("1.30.0", kv.latest_version())
# Helm's longest release name, and one that also has dots (Helm accepts them).
LONG_RELEASES = ("streamproc-a-very-long-release-name-for-a-team-42abcd",
                 "team.streamproc.a-very-long-release-name.with-dots-9x")
INVALID_RELEASES = {"1streamproc": "starts with a digit"}

DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
DNS1035_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
WORKLOADS = ("Deployment", "StatefulSet", "DaemonSet", "Job")
# Settings whose value names hosts: URLs, and these keys.
HOST_KEYS = re.compile(r"(^|_)(HOST|HOSTS|BROKERS|URL|ADDR|LISTENERS)$|^(EVENT_API|AGGREGATOR|URL|PGHOST)$")
URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


# kubernetes-validate reads the schema files again for every object: keep them.
kv.schema_contents = functools.lru_cache(maxsize=None)(kv.schema_contents)


def merged(base: dict, override: dict) -> dict:
    result = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(result.get(key), dict):
            result[key] = merged(result[key], value)
        else:
            result[key] = value
    return result


@dataclass
class Render:
    """One render of the chart: its objects, and the values behind them."""

    what: str
    values: dict  # the defaults merged with the values file
    overrides_text: str  # the values file as written
    objects: list = field(default_factory=list)

    def find(self, kind: str, name: str) -> dict | None:
        return next((o for o in self.objects if o["kind"] == kind and o["metadata"]["name"] == name), None)

    def of_kind(self, kind: str) -> list:
        return [o for o in self.objects if o["kind"] == kind]

    def pods(self) -> list[tuple[dict, dict, str]]:
        """(pod spec, pod labels, owner kind/name) of every pod the render makes."""
        result = []
        for o in self.objects:
            name = f"{o['kind']}/{o['metadata']['name']}"
            if o["kind"] in WORKLOADS:
                template = o["spec"]["template"]
                result.append((template["spec"], template["metadata"].get("labels", {}), name))
            elif o["kind"] == "Pod":
                result.append((o["spec"], o["metadata"].get("labels", {}), name))
        return result


def render(chart: helm_python.Chart, what: str, values_text: str, release: str, revision: int = 1) -> Render:
    """Renders like `helm install` would (revision 1), or `helm upgrade` to
    that revision; raises HelmError when Helm refuses."""
    overrides = helm_python.values_from_yaml(values_text) if values_text.strip() else {}
    manifests = chart.render(overrides, name=release, namespace=NAMESPACE, revision=revision,
                             is_install=revision == 1, is_upgrade=revision > 1)
    result = Render(what, merged(chart.values, overrides), values_text)
    for path, text in sorted(manifests.items()):
        if path.endswith("NOTES.txt"):
            continue
        for document in yaml.load_all(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)):
            if document:
                result.objects.append(document)
    return result


# --- schemas and names -----------------------------------------------------

@functools.lru_cache(maxsize=None)
def validity(document: str, version: str) -> str | None:
    """Why the object (as JSON) is not valid for that Kubernetes version, or
    None; the same object in several renders is validated once."""
    o = json.loads(document)
    try:
        kv.validate(o, version, strict=True)
    except kv.ValidationError as e:
        path = ".".join(str(p) for p in e.path)
        return f"not valid for Kubernetes {e.version}: {path}: {e.message}"
    except kv.SchemaNotFoundError as e:
        return e.message
    return None


def schema_problems(r: Render) -> list[str]:
    problems = []
    for o in r.objects:
        where = f"{o.get('kind')}/{o.get('metadata', {}).get('name')}"
        document = json.dumps(o, sort_keys=True, default=str)
        for version in KUBERNETES_VERSIONS:
            if (problem := validity(document, version)) is not None:
                problems.append(f"{where}: {problem}")
    return problems


def name_problems(r: Render) -> list[str]:
    problems = []
    seen = set()
    for o in r.objects:
        kind, name = o["kind"], o["metadata"]["name"]
        if (kind, name) in seen:
            problems.append(f"two objects {kind}/{name}")
        seen.add((kind, name))
        if kind == "Service":
            if len(name) > 63 or not DNS1035_LABEL.match(name):
                problems.append(f"Service name {name!r} ({len(name)} characters) is not a DNS-1035 label of at most 63")
        elif len(name) > 253 or not DNS1123_SUBDOMAIN.match(name):
            problems.append(f"{kind} name {name!r} is not a DNS-1123 subdomain")
        # A StatefulSet's pods carry controller-revision-hash: <name>-<10
        # characters>; a Job's carry job-name: <name>; both are labels.
        limit = {"StatefulSet": 52, "Job": 63, "Deployment": 63, "Pod": 63}.get(kind)
        if limit and len(name) > limit:
            problems.append(f"{kind} name {name!r} is {len(name)} characters, more than {limit}")
        labels = dict(o["metadata"].get("labels") or {})
        if kind in WORKLOADS:
            labels.update(o["spec"]["template"]["metadata"].get("labels") or {})
        for key, value in labels.items():
            if len(str(value)) > 63 or not LABEL_VALUE.match(str(value)):
                problems.append(f"{kind}/{name}: label {key}={value!r} is not a valid label value")
    return problems


# --- references -------------------------------------------------------------

def selects(selector: dict, labels: dict, plain: bool = False) -> bool:
    """Whether a LabelSelector (plain: a Service's selector) matches labels."""
    match_labels = selector if plain else selector.get("matchLabels", {})
    if any(labels.get(k) != v for k, v in match_labels.items()):
        return False
    for e in selector.get("matchExpressions", []):
        value, present = labels.get(e["key"]), e["key"] in labels
        ok = {"In": present and value in e.get("values", []),
              "NotIn": not present or value not in e.get("values", []),
              "Exists": present, "DoesNotExist": not present}[e["operator"]]
        if not ok:
            return False
    return True


def service_ports(service: dict) -> set[int]:
    return {p["port"] for p in service["spec"]["ports"]}


def container_env(r: Render, container: dict) -> dict[str, str]:
    """A container's settings: its ConfigMaps' data, then its literal env."""
    env = {}
    for source in container.get("envFrom", []):
        if "configMapRef" in source:
            cm = r.find("ConfigMap", source["configMapRef"]["name"])
            env.update((cm or {}).get("data") or {})
    for var in container.get("env", []):
        if "value" in var:
            env[var["name"]] = str(var["value"])
    return env


def host_references(env: dict[str, str]) -> list[tuple[str, str, int | None]]:
    """(setting, host, port) for every host name a container's settings name."""
    refs = []
    for key, value in env.items():
        if not (HOST_KEYS.search(key) or URL.match(value)):
            continue
        sibling_port = None
        for suffix in ("_HOST", "HOST"):
            if key.endswith(suffix) and env.get(key[: -len(suffix)] + suffix.replace("HOST", "PORT"), "").isdigit():
                sibling_port = int(env[key[: -len(suffix)] + suffix.replace("HOST", "PORT")])
        for part in value.split(","):
            part = URL.sub("", part.strip()).split("/")[0]
            if not part:
                continue
            host, _, port = part.rpartition(":") if re.search(r":\d+$", part) else (part, "", "")
            if not host or host in ("localhost",):
                continue
            try:
                ipaddress.ip_address(host)
                continue
            except ValueError:
                pass
            refs.append((key, host, int(port) if port else sibling_port))
    return refs


def reference_problems(r: Render) -> list[str]:
    problems = []
    external_secret = r.values.get("credentials", {}).get("existingSecret") or None
    pods = r.pods()
    claims = {f"StatefulSet/{o['metadata']['name']}": {c["metadata"]["name"] for c in o["spec"].get("volumeClaimTemplates", [])}
              for o in r.of_kind("StatefulSet")}

    def check_object(kind: str, name: str, where: str, key: str | None = None, optional: bool = False) -> None:
        if kind == "Secret" and name == external_secret:
            return  # the operator's own Secret (credentials.existingSecret)
        o = r.find(kind, name)
        if o is None:
            if not optional:
                problems.append(f"{where} names {kind} {name!r}, which is not in the render")
        elif key is not None and key not in (o.get("data") or {}) and key not in (o.get("stringData") or {}):
            problems.append(f"{where} names key {key!r} of {kind} {name!r}, which has no such key")

    def check_host(where: str, setting: str, host: str, port: int | None) -> None:
        labels = host.split(".")
        in_cluster = len(labels) == 1 or labels[1:2] in (["svc"], [NAMESPACE])
        if not in_cluster:
            if host not in r.overrides_text and host not in json.dumps(r.values):
                problems.append(f"{where}: {setting} names the outside host {host!r}, which is not from the values")
            return
        service = r.find("Service", labels[0])
        if service is None:
            problems.append(f"{where}: {setting} names host {host!r}, but no Service {labels[0]!r} is in the render")
        elif port is not None and port not in service_ports(service):
            problems.append(f"{where}: {setting} names {host}:{port}, but Service {labels[0]!r} has ports {sorted(service_ports(service))}")

    for spec, labels, owner in pods:
        for volume in spec.get("volumes", []):
            if "configMap" in volume:
                check_object("ConfigMap", volume["configMap"]["name"], owner, optional=volume["configMap"].get("optional", False))
                for item in volume["configMap"].get("items", []):
                    check_object("ConfigMap", volume["configMap"]["name"], owner, item["key"])
            if "secret" in volume:
                check_object("Secret", volume["secret"]["secretName"], owner, optional=volume["secret"].get("optional", False))
                for item in volume["secret"].get("items", []):
                    check_object("Secret", volume["secret"]["secretName"], owner, item["key"], volume["secret"].get("optional", False))
        for container in spec.get("initContainers", []) + spec["containers"]:
            where = f"{owner} container {container['name']}"
            for source in container.get("envFrom", []):
                for ref_kind, kind in (("configMapRef", "ConfigMap"), ("secretRef", "Secret")):
                    if ref_kind in source:
                        check_object(kind, source[ref_kind]["name"], where, optional=source[ref_kind].get("optional", False))
            for var in container.get("env", []):
                value_from = var.get("valueFrom", {})
                for ref_kind, kind in (("configMapKeyRef", "ConfigMap"), ("secretKeyRef", "Secret")):
                    if ref_kind in value_from:
                        ref = value_from[ref_kind]
                        check_object(kind, ref["name"], f"{where} env {var['name']}", ref["key"], ref.get("optional", False))
            mounts = {m["name"] for m in container.get("volumeMounts", [])}
            volumes = {v["name"] for v in spec.get("volumes", [])} | claims.get(owner, set())
            for missing in mounts - volumes:
                problems.append(f"{where} mounts volume {missing!r}, which the pod does not have")
            for setting, host, port in host_references(container_env(r, container)):
                check_host(where, setting, host, port)
            for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
                port = (container.get(probe, {}).get("httpGet") or container.get(probe, {}).get("tcpSocket") or {}).get("port")
                if isinstance(port, str) and port not in {p.get("name") for p in container.get("ports", [])}:
                    problems.append(f"{where}: {probe} uses port {port!r}, which the container does not name")

    for service in r.of_kind("Service"):
        name = service["metadata"]["name"]
        selected = [(spec, owner) for spec, labels, owner in pods if selects(service["spec"].get("selector", {}), labels, plain=True)]
        if not selected:
            problems.append(f"Service {name} selects no pod of the render")
        for port in service["spec"]["ports"]:
            target = port.get("targetPort", port["port"])
            for spec, owner in selected:
                names = {p.get("name") for c in spec["containers"] for p in c.get("ports", [])}
                numbers = {p["containerPort"] for c in spec["containers"] for p in c.get("ports", [])}
                if target not in names and target not in numbers:
                    problems.append(f"Service {name} targets port {target!r}, which {owner} does not have")
    for sts in r.of_kind("StatefulSet"):
        if r.find("Service", sts["spec"]["serviceName"]) is None:
            problems.append(f"StatefulSet {sts['metadata']['name']} names Service {sts['spec']['serviceName']!r}, which is not in the render")
    for ingress in r.of_kind("Ingress"):
        for rule in ingress["spec"].get("rules", []):
            for path in rule.get("http", {}).get("paths", []):
                backend = path["backend"]["service"]
                service = r.find("Service", backend["name"])
                if service is None:
                    problems.append(f"Ingress {ingress['metadata']['name']} path {path['path']} goes to Service {backend['name']!r}, which is not in the render")
                elif backend["port"].get("number") not in service_ports(service):
                    problems.append(f"Ingress {ingress['metadata']['name']} path {path['path']} goes to port {backend['port']} of Service {backend['name']}, which has {sorted(service_ports(service))}")
    for hpa in r.of_kind("HorizontalPodAutoscaler"):
        target = hpa["spec"]["scaleTargetRef"]
        if r.find(target["kind"], target["name"]) is None:
            problems.append(f"HorizontalPodAutoscaler {hpa['metadata']['name']} scales {target['kind']} {target['name']!r}, which is not in the render")
    for kind in ("PodDisruptionBudget", "NetworkPolicy"):
        for o in r.of_kind(kind):
            selector = o["spec"].get("selector") or o["spec"].get("podSelector")
            if not any(selects(selector, labels) for _, labels, _ in pods):
                problems.append(f"{kind} {o['metadata']['name']} selects no pod of the render")
    return problems


# --- network policies ---------------------------------------------------------

OUTSIDE = "(outside)"
ANY = "(any)"
# Who may connect to whom: the intended tables. ANY: every pod and outside.
EXPECTED_REACH = {
    "kafka": {"event-api", "consumer-high", "consumer-low", "aggregator", "topics", "kafka"},
    "timescaledb": {"consumer-high", "aggregator", "db-users"},
    "influxdb": {"consumer-low", "aggregator", "db-users"},
    "event-api": {"event-producer", "aggregator", "test"},
    # networkPolicy.ingressFrom empty: through the ingress from any source.
    "aggregator": {ANY},
    "web-ui": {ANY},
    "consumer-high": {"aggregator"},
    "consumer-low": {"aggregator"},
    "event-producer": set(),
    "topics": set(),
    "db-users": set(),
    "test": set(),
}
EXPECTED_REACH_BY_CASE = {
    "the default values": EXPECTED_REACH,
    # ingressFrom: the ingress controller's namespace; extraFrom: monitoring.
    "ci/network-policy-values.yaml": {
        **{k: v | {OUTSIDE} if k not in ("topics", "db-users", "test") else v for k, v in EXPECTED_REACH.items()},
        "aggregator": {"web-ui", "test", OUTSIDE},
        "web-ui": {OUTSIDE},
    },
}


# The aggregator's settings that name a component whose every replica the
# pipeline view must see.
WATCHED_REPLICAS = {"API_URL": "event-api", "CONSUMER_HIGH_URL": "consumer-high", "CONSUMER_LOW_URL": "consumer-low"}


def discovery_problems(r: Render) -> list[str]:
    """Each enabled component the pipeline view watches is named to the
    aggregator through a headless Service (one DNS answer per pod, not-ready
    pods included) that selects exactly that component's pods."""
    pods = r.pods()
    aggregator = [(spec, owner) for spec, labels, owner in pods
                  if labels.get("app.kubernetes.io/component") == "aggregator"]
    if not aggregator:
        return []
    spec, owner = aggregator[0]
    env = container_env(r, spec["containers"][0])
    problems = []
    for setting, component in WATCHED_REPLICAS.items():
        if not r.values["services"][component]["enabled"]:
            if setting in env:
                problems.append(f"{owner}: {setting} is set, but {component} is switched off")
            continue
        if setting not in env:
            problems.append(f"{owner}: {setting} is not set: the pipeline view would not see {component}'s replicas")
            continue
        host = URL.sub("", env[setting]).split("/")[0].rpartition(":")[0]
        service = r.find("Service", host)
        if service is None:
            problems.append(f"{owner}: {setting} names {host!r}, which is no Service of the render")
            continue
        if service["spec"].get("clusterIP") != "None" or not service["spec"].get("publishNotReadyAddresses"):
            problems.append(f"{owner}: {setting} names Service {host!r}, which is not headless with not-ready "
                            "addresses published: its name would resolve to one address, not every replica")
        selected = {o for _, labels, o in pods if selects(service["spec"]["selector"], labels, plain=True)}
        expected = {o for _, labels, o in pods if labels.get("app.kubernetes.io/component") == component}
        if selected != expected:
            problems.append(f"Service {host!r} selects {sorted(selected)}, expected {sorted(expected)}")
    return problems


def reach(r: Render) -> dict[str, set[str]]:
    """For each component with pods: which components' pods (and whether
    sources outside the release) the render's NetworkPolicies let in."""
    pods = {labels["app.kubernetes.io/component"]: labels for _, labels, _ in r.pods()}
    policies = r.of_kind("NetworkPolicy")
    result = {}
    for target, target_labels in pods.items():
        applying = [p for p in policies if selects(p["spec"]["podSelector"], target_labels)]
        if not applying:
            continue
        allowed = set()
        for policy in applying:
            for rule in policy["spec"].get("ingress", []):
                peers = rule.get("from")
                for source, source_labels in pods.items():
                    if not peers or any("podSelector" in peer and "namespaceSelector" not in peer
                                        and selects(peer["podSelector"], source_labels) for peer in peers):
                        allowed.add(source)
                if not peers or any("namespaceSelector" in peer or "ipBlock" in peer for peer in peers):
                    allowed.add(OUTSIDE)
        result[target] = allowed
    return result


def network_policy_problems(r: Render, expected_reach: dict | None) -> list[str]:
    if not r.values.get("networkPolicy", {}).get("enabled"):
        return []
    problems = []
    allowed = reach(r)
    everything = {labels["app.kubernetes.io/component"] for _, labels, _ in r.pods()} | {OUTSIDE}
    for _, labels, owner in r.pods():
        if labels.get("app.kubernetes.io/component") not in allowed:
            problems.append(f"{owner}: no NetworkPolicy selects its pods")
    if expected_reach:
        for target, expected in expected_reach.items():
            got = allowed.get(target, set())
            if ANY in expected:
                expected = everything
            if got != expected:
                problems.append(f"{target} is reachable from {sorted(got)}, expected {sorted(expected)}")
    return problems


# --- the check ---------------------------------------------------------------

def lint_problems(chart_dir: Path, values_text: str) -> list[str]:
    overrides = helm_python.values_from_yaml(values_text) if values_text.strip() else None
    report = helm_python.lint(str(chart_dir), overrides, strict=True, quiet=True, kube_version=f"v{KUBERNETES_VERSIONS[0]}")
    problems = [f"{m['path']}: {m['error']}" for m in report.get("messages", []) if m["severity"] >= 2]
    return list(dict.fromkeys(problems + list(report.get("errors") or [])))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("chart", type=Path, nargs="?", default=REPO / "helm_chart")
    parser.add_argument("--no-scripts", action="store_true", help="skip running the chart's scripts here")
    args = parser.parse_args()
    chart_dir: Path = args.chart
    started = time.monotonic()
    helm_python.disable_logging()
    chart = helm_python.Chart.load(str(chart_dir))
    passed = failed = 0

    def report(ok: bool, what: str, details: list[str]) -> None:
        nonlocal passed, failed
        passed, failed = passed + ok, failed + (not ok)
        print(f"{'ok' if ok else 'FAILED'}  {what}")
        for line in details[:20]:
            print(f"      {line}")
        if len(details) > 20:
            print(f"      ... and {len(details) - 20} more")

    cases = [("the default values", "")]
    cases += [(str(f.relative_to(chart_dir)), f.read_text()) for f in sorted((chart_dir / "ci").glob("*.yaml"))]
    renders = []
    for what, text in cases:
        report(not (problems := lint_problems(chart_dir, text)), f"lint with {what}", problems)
    for what, text in cases:
        # The defaults also as the 12345th upgrade (the user Job's name
        # carries the revision).
        releases = [("streamproc", 1), *((name, 1) for name in LONG_RELEASES), (LONG_RELEASES[0], 12345)] \
            if what == cases[0][0] else [("streamproc", 1), (LONG_RELEASES[0], 1)]
        for release, revision in releases:
            label = f"{what}, release {release!r} ({len(release)} characters)"
            if revision > 1:
                label += f", upgrade to revision {revision}"
            try:
                r = render(chart, label, text, release, revision)
            except helm_python.HelmError as e:
                report(False, f"render {label}", [str(e)])
                continue
            renders.append(r)
            report(not (problems := schema_problems(r) + name_problems(r)),
                   f"render {label}: {len(r.objects)} objects valid for Kubernetes {' and '.join(KUBERNETES_VERSIONS)}, names valid",
                   problems)
            report(not (problems := reference_problems(r)), f"references in {label}", problems)
            report(not (problems := discovery_problems(r)),
                   f"every replica of event-api and the consumers found by the pipeline view in {label}", problems)
            problems = network_policy_problems(r, EXPECTED_REACH_BY_CASE.get(what) if release == "streamproc" else None)
            report(not problems, f"network policies in {label}", problems)
    # Each invalid file says on a line `# expect: <text>` what Helm's refusal
    # must contain, so that it is refused for its own reason.
    for values_file in sorted((chart_dir / "ci" / "invalid").glob("*.yaml")):
        what = str(values_file.relative_to(chart_dir))
        text = values_file.read_text()
        expected = re.search(r"^# expect: (.+)$", text, re.M)
        try:
            render(chart, what, text, "streamproc")
            report(False, f"refused: {what}", ["rendered, but these values must be refused"])
        except helm_python.HelmError as e:
            message = str(e).strip()
            if expected is None:
                report(False, f"refused: {what}", [message, "the file has no `# expect:` line"])
            else:
                report(expected[1] in message, f"refused: {what}", [message.splitlines()[-1]]
                       if expected[1] in message else [f"refused, but not with {expected[1]!r}:", message])
    for release, why in INVALID_RELEASES.items():
        try:
            render(chart, release, "", release)
            report(False, f"refused: release name {release!r} ({why})", ["rendered, but this release name must be refused"])
        except helm_python.HelmError as e:
            report(True, f"refused: release name {release!r} ({why})", [str(e).strip().splitlines()[-1]])

    for ok, what, details in chart_scripts.shellcheck_checks([o for r in renders for o in r.objects]):
        report(ok, what, details)
    if not args.no_scripts:
        default = next(r for r in renders if r.what.startswith("the default values, release 'streamproc'"))
        for ok, what, details in chart_scripts.run_all(default.objects, REPO):
            report(ok, what, details)

    print(f"chart checks took {time.monotonic() - started:.1f} s")
    print(f"chart: {passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
