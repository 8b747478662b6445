"""All rule files loaded into a real Prometheus, fed by a fixture target with every metric.

Copies of the rule files have their group intervals dropped and `for` capped at 1 s
(contract.shortened), so every group evaluates every second and alerts fire quickly.
"""

from __future__ import annotations

import pytest
import yaml

from tests import harness
from tests.rules import contract
from tests.rules.fixture_metrics import FixtureTarget

pytestmark = pytest.mark.integration

ITERATIONS = 5


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    """Prometheus with every rule file, scraping itself and the fixture under each job name."""
    workdir = tmp_path_factory.mktemp("rules-live")
    rule_dir = workdir / "rules"
    rule_dir.mkdir()
    docs = {}
    for path in contract.rule_files():
        docs[path.name] = contract.load(path)
        (rule_dir / path.name).write_text(yaml.safe_dump(contract.shortened(docs[path.name])))
    fixture = FixtureTarget().start()
    prom = harness.PrometheusServer(workdir / "prometheus",
                                    rule_files=sorted(rule_dir.glob("*.rules.yml")))
    try:
        prom.start()
        # Nothing listens on the bridge's port: up == 0. No alertmanager job: absent().
        prom.configure(targets={
            "prometheus": [f"127.0.0.1:{prom.port}"],
            "infrastructure": [fixture.address],
            "events": [fixture.address], "demo": [fixture.address],
            "integrations": [fixture.address], "ai": [fixture.address],
            "bridge": [f"127.0.0.1:{harness.free_port()}"],
        })
        groups = sum(len(doc["groups"]) for doc in docs.values())
        prom.wait_for_value(
            f"count(prometheus_rule_group_iterations_total >= {ITERATIONS})",
            lambda v: v == groups, timeout=90)
        yield prom, docs
    finally:
        prom.stop()
        fixture.stop()


def test_every_group_is_loaded_and_healthy(stack):
    prom, docs = stack
    loaded = prom.rule_groups()
    expected = {(name, g["name"]) for name, doc in docs.items() for g in doc["groups"]}
    assert {(g["file"].rsplit("/", 1)[-1], g["name"]) for g in loaded} == expected
    broken = [(g["name"], r["name"], r["health"], r.get("lastError"))
              for g in loaded for r in g["rules"]
              if r["health"] != "ok" or r.get("lastError")]
    assert broken == []
    assert prom.query_value("sum(prometheus_rule_evaluation_failures_total)") == 0


def test_every_recording_rule_produces_series(stack):
    prom, docs = stack
    records = sorted({r["record"] for r in contract.rules_of(docs) if "record" in r})

    state: dict[str, list[str]] = {}

    def complete() -> bool:
        state["missing"] = [name for name in records
                            if not prom.query(f'count({{__name__="{name}"}})')]
        return not state["missing"]

    # Rate windows need two samples: give slow evaluations a moment, then require all.
    try:
        harness.wait_until(complete, timeout=30)
    except AssertionError:
        pytest.fail(f"recording rules without a series: {state['missing']}")
    assert prom.query_value('slo:objective:ratio{slo="api-availability"}') == 0.995
    accuracy = prom.query_value('model:ai_recommendation_accuracy:ratio_1h{model="workout"}')
    assert accuracy == pytest.approx(0.6)
    p95 = prom.query_value(
        'route:http_server_request_duration_seconds:p95_5m{http_route="/api/workouts"}')
    assert p95 == pytest.approx(1.75)
    cpu = prom.query_value("max(instance:node_cpu_utilisation:rate5m)")
    assert cpu == pytest.approx(0.4)


def test_alerts_fire_from_live_data(stack):
    prom, _ = stack
    prom.wait_for_alert("Watchdog", labels={"severity": "none"})
    prom.wait_for_alert("AlertmanagerDown", labels={"job": "alertmanager"})
    # The absent() branch also fires until the first scrape; wait for the up == 0 one.
    down = harness.wait_until(lambda: next(
        (a for a in prom.alerts() if a["labels"].get("alertname") == "PulseBridgeDown"
         and a["state"] == "firing" and "instance" in a["labels"]), None),
        60, message="PulseBridgeDown firing from up == 0")
    assert down["labels"]["instance"].startswith("127.0.0.1:")
    latency = prom.wait_for_alert("ApiLatencyP95High",
                                  labels={"severity": "warning", "http_route": "/api/workouts"})
    assert latency["annotations"]["description"].startswith("p95 latency of /api/workouts is ")
    assert latency["annotations"]["runbook_url"].endswith("#apilatencyp95high")
    low = prom.wait_for_alert("AiRecommendationAccuracyLow", labels={"model": "workout"})
    assert low["labels"]["team"] == "ai"
    assert "retrain" in low["annotations"]["suggested_action"].lower()
    names = {a["labels"]["alertname"] for a in prom.alerts()}
    # The fixture's healthy parts stay quiet.
    for quiet in ("PrometheusConfigReloadFailed", "PulseEventsIntakeDown",
                  "IntegrationProbeFailing", "AiSafetyViolation", "ServiceProcessDown",
                  "DemoApiDown"):
        assert quiet not in names
