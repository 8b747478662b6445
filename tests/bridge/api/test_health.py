"""GET /api/analytics/health against a real Prometheus and Alertmanager."""

import pytest

from bridge.api import health as health_module
from tests.bridge.stack import Stack
from tests.harness import wait_until

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def stack(tmp_path_factory, alertmanager):
    s = Stack(tmp_path_factory.mktemp("health"), alertmanager.url)
    yield s
    s.stop()


def test_healthy_then_degraded_when_a_target_is_down(stack):
    stack.prometheus.wait_for_targets_up(["testsrc"], timeout=60)
    body = stack.client.get("/api/analytics/health").json
    assert body["status"] == "healthy", body["components"]
    names = {c["name"]: c for c in body["components"]}
    assert {"prometheus", "alertmanager", "rule-reload", "scrape:testsrc"} <= names.keys()
    assert names["scrape:testsrc"]["targetsDown"] == 0
    metrics = body["metrics"]
    assert set(metrics) == {"timestamp", "timeframe", "application", "infrastructure",
                            "integrations", "errors"}
    # No fitness-app data in this Prometheus: null, never a made-up zero.
    assert metrics["application"]["p95ResponseTime"] is None
    assert body["incidents"] == []

    stack.source.fail = True
    try:
        body = wait_until(lambda: (b := stack.client.get("/api/analytics/health").json)
                          ["status"] == "degraded" and b, timeout=60)
        down = next(c for c in body["components"] if c["name"] == "scrape:testsrc")
        assert down["status"] == "degraded" and down["targetsDown"] == 1
        assert "503" in down["message"]
    finally:
        stack.source.fail = False
    stack.prometheus.wait_for_targets_up(["testsrc"], timeout=60)


def test_metrics_computed_from_what_prometheus_has(stack):
    stack.source.values.update({
        "node_memory_MemTotal_bytes": 1000, "node_memory_MemAvailable_bytes": 250,
        'integration_probe_success{integration="stripe"}': 1,
        'integration_probe_success{integration="strava"}': 0,
    })
    stack.prometheus.wait_for_value("node_memory_MemTotal_bytes", timeout=60)
    stack.prometheus.wait_for_value('integration_probe_success{integration="strava"}',
                                    timeout=60)
    metrics = stack.client.get("/api/analytics/health").json["metrics"]
    assert metrics["infrastructure"]["memoryUtilization"] == pytest.approx(0.75)
    assert metrics["integrations"]["probesTotal"] == 2
    assert metrics["integrations"]["probesFailing"] == 1
    assert metrics["integrations"]["availability"] == pytest.approx(0.5)


def test_critical_incident_or_prometheus_down_is_critical(stack, client, monkeypatch):
    monkeypatch.setattr(health_module, "_incidents",
                        lambda app: [{"id": "i1", "severity": "critical"}])
    assert stack.client.get("/api/analytics/health").json["status"] == "critical"
    # `client` is wired to addresses nothing listens on.
    monkeypatch.undo()
    body = client.get("/api/analytics/health").json
    assert body["status"] == "critical"
    assert body["components"][0]["name"] == "prometheus"
    assert body["metrics"]["infrastructure"]["cpuUtilization"] is None



def test_open_incident_from_a_critical_webhook_makes_health_critical(tmp_path):
    from bridge import create_app
    from tests.bridge.api.test_webhook import alert, payload
    from tests.bridge.conftest import bridge_config

    app = create_app(bridge_config(tmp_path, prometheus={"url": "http://127.0.0.1:9"},
                                   alertmanager={"url": "http://127.0.0.1:9"}))
    client = app.test_client()
    assert client.post("/hooks/alertmanager", json=payload(alert())).status_code == 200
    body = client.get("/api/analytics/health").json
    assert body["status"] == "critical"
    assert [i["alert"] for i in body["incidents"]] == ["ApiLatencyP95High"]
    resolved = payload(alert(status="resolved"))
    assert client.post("/hooks/alertmanager", json=resolved).status_code == 200
    assert client.get("/api/analytics/health").json["incidents"] == []


def test_active_users_sessions_and_scaling_come_from_catalogue_metrics(stack):
    stack.source.values.update({
        'fitness_active_users{window="1d",platform="all"}': 120,
        'fitness_active_users{window="1d",platform="ios"}': 70,
    })
    stack.prometheus.wait_for_value('fitness_active_users{platform="all"}', timeout=60)
    body = stack.client.get("/api/analytics/health").json
    assert body["metrics"]["application"]["activeUsers"] == 120
    # The testsrc job has had its one target since the start: no instance added or removed.
    assert body["metrics"]["infrastructure"]["scalingEvents"] == 0
    # No session events in this Prometheus: null, never an invented zero.
    assert body["metrics"]["application"]["concurrentSessions"] is None
    sources = body["metricSources"]
    assert set(sources) == {"application.activeUsers", "application.concurrentSessions",
                            "infrastructure.scalingEvents"}
    assert "fitness_active_users" in sources["application.activeUsers"]
    assert "fitness_sessions_total" in sources["application.concurrentSessions"]
