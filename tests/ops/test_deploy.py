"""The dashboard and the alert rules under deploy/ use only metrics the nodes expose."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

from app.ops import metrics

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
NAME = re.compile(r"\bmirror_neuron_\w+")


def _exposed() -> set[str]:
    """Every series name the registry can expose, histogram and counter suffixes included."""
    names: set[str] = set()
    for family in metrics.REGISTRY.collect():
        if family.type == "histogram":
            names |= {family.name + s for s in ("_bucket", "_sum", "_count")}
        elif family.type == "counter":
            names.add(family.name + "_total")
        else:
            names.add(family.name)
    return names


def test_every_dashboard_panel_queries_exposed_metrics() -> None:
    dashboard = json.loads((DEPLOY / "grafana" / "dashboards" / "mirror-neuron.json").read_text())
    exposed = _exposed()
    titles = [panel["title"] for panel in dashboard["panels"]]
    for wanted in ("Jobs by status", "Throughput", "Commit latency p50 / p99", "pool utilisation", "Recoveries"):
        assert any(wanted.lower() in title.lower() for title in titles), wanted
    for panel in dashboard["panels"]:
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert set(NAME.findall(target["expr"])) <= exposed, (panel["title"], target["expr"])


def test_every_alert_uses_exposed_metrics() -> None:
    rules = yaml.safe_load((DEPLOY / "prometheus" / "alerts.yml").read_text())["groups"][0]["rules"]
    exposed = _exposed()
    assert {r["alert"] for r in rules} >= {
        "MirrorNeuronNodeDown", "MirrorNeuronNodeLost", "MirrorNeuronQueueGrowing", "MirrorNeuronRecoveries",
        "MirrorNeuronSlowCommits",
    }
    for rule in rules:
        assert set(NAME.findall(rule["expr"])) <= exposed, rule
    scrape = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    assert scrape["rule_files"] == ["/etc/prometheus/alerts.yml"]


def test_the_observability_profile_scrapes_every_node() -> None:
    root = DEPLOY.parent
    services = yaml.safe_load((root / "docker-compose.yml").read_text())["services"]
    for name in ("prometheus", "grafana"):
        assert services[name]["profiles"] == ["observability"], name
        assert all(str(port).startswith("127.0.0.1:") for port in services[name]["ports"]), name
        for mount in services[name]["volumes"]:
            source = mount.split(":")[0]
            if source.startswith("./"):
                assert (root / source).exists(), mount
    scrape = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    discovery = scrape["scrape_configs"][0]["dns_sd_configs"][0]
    assert set(discovery["names"]) <= set(services)
    for name in discovery["names"]:
        env = services[name]["environment"]
        assert env["MIRROR_NEURON_METRICS_PORT"] == str(discovery["port"]), name
        assert env["MIRROR_NEURON_METRICS_HOST"] == "0.0.0.0", name
        assert not any(str(discovery["port"]) in str(port) for port in services[name].get("ports", [])), name
    provider = yaml.safe_load((DEPLOY / "grafana" / "provisioning" / "dashboards" / "mirror-neuron.yml").read_text())
    mounted = {m.split(":")[1] for m in services["grafana"]["volumes"]}
    assert provider["providers"][0]["options"]["path"] in mounted
