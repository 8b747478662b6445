"""The shipped host rules and the system dashboard's host panels against the real
`prometheus-node-exporter` (Debian's; installed by scripts/ensure-tools.sh), scraped as a
platform job of its own through prometheus.scrape, not as Pulse's infrastructure job."""

from __future__ import annotations

import time

import pytest
import yaml

from pulse.config import validate
from pulse.dashboards import check, load_all, metric_names, queries
from pulse.launcher.demotime import compress_rules
from pulse.launcher.scrape import scrape_configs
from pulse.paths import RULES_DIR
from tests import harness
from tests.harness import free_port

pytestmark = pytest.mark.integration
ENV = {"PULSE_ADMIN_TOKEN": "a" * 32, "PULSE_PRIVACY_SALT": "s" * 32}
JOB = "hosts"


@pytest.fixture(scope="module")
def node_prometheus(tmp_path_factory):
    """node_exporter on a free port, and a Prometheus scraping it with the infrastructure
    rules on a shortened clock (ranges of 20 s or more, so rates are defined quickly)."""
    binary = harness.require_binary("prometheus-node-exporter")
    work = tmp_path_factory.mktemp("node")
    port = free_port()
    exporter = harness.Process([binary, f"--web.listen-address=127.0.0.1:{port}"],
                               work / "node_exporter.log")
    exporter.wait_http(f"http://127.0.0.1:{port}/metrics")
    rules = work / "infrastructure.rules.yml"
    rules.write_text(compress_rules((RULES_DIR / "infrastructure.rules.yml").read_text(), 30))
    cfg = validate({"prometheus": {"scrape": [
        {"job": JOB, "targets": [f"127.0.0.1:{port}"], "labels": {"env": "test"}}]}},
        "pulse.yml", ENV)
    prom = harness.PrometheusServer(work / "prom", rule_files=[rules],
                                    scrape_configs=scrape_configs(cfg)).start()
    prom.wait_for_targets_up([JOB], timeout=60)
    yield prom
    prom.stop()
    exporter.stop()


def _records() -> list[str]:
    """The host rules on node_exporter's names (the process groups are Pulse's own
    exporter's, process-exporter's names, which node_exporter does not have)."""
    doc = yaml.safe_load((RULES_DIR / "infrastructure.rules.yml").read_text())
    return [r["record"] for g in doc["groups"] for r in g["rules"]
            if ":node_" in r.get("record", "")]


def test_every_host_recording_rule_has_data_from_node_exporter(node_prometheus):
    records = _records()
    assert len(records) >= 8
    for record in records:
        # Filesystem predictions need two samples of the [6h]->720 s window: a few scrapes.
        node_prometheus.wait_for_value(f'{record}{{instance=~"127.0.0.1:.*"}}', timeout=90)


def test_the_host_alerts_are_evaluated_without_errors(node_prometheus):
    groups = [g for g in node_prometheus.rule_groups() if g["name"].startswith("infrastructure")]
    assert groups
    for group in groups:
        for rule in group["rules"]:
            assert rule["health"] in ("ok", "unknown"), (rule["name"], rule.get("lastError"))


def test_the_system_dashboard_host_panels_return_data(node_prometheus):
    host = [q for q in queries("system", load_all()["system"])
            if any(n.startswith(("node_", "instance:node", "instance_mountpoint:node",
                                 "instance_device:node")) for n in metric_names(q.expr))]
    assert len(host) >= 5
    doc = load_all()["system"]
    end = time.time()

    def outcomes():
        out = [o for o in check(node_prometheus.url, end - 60, time.time(), step=5, scrape_s=1,
                                docs={"system": doc})
               if o.query in host]
        return out if all(o.ok for o in out) else None

    found = harness.wait_until(outcomes, 90, message="every host panel of the system dashboard "
                               "returns data from node_exporter")
    assert {o.query.panel_title for o in found}
