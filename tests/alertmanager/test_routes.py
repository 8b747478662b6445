"""alertmanager.yml: amtool accepts it, templates render, inhibitions work."""

from __future__ import annotations

import json
import subprocess
from datetime import UTC, datetime, timedelta

import pytest
import yaml

from pulse.paths import ALERTMANAGER_DIR
from tests.harness import free_port, require_binary, wait_until

CONFIG = ALERTMANAGER_DIR / "alertmanager.yml"
CASES = yaml.safe_load((ALERTMANAGER_DIR / "tests" / "routes.yml").read_text())["cases"]


def amtool(*args: str) -> subprocess.CompletedProcess:
    """Run amtool with args; the completed process."""
    return subprocess.run([require_binary("amtool"), *args], capture_output=True, text=True,
                          timeout=60)


def routes_test(labels: dict[str, str], receivers: list[str]) -> subprocess.CompletedProcess:
    """`amtool config routes test --verify.receivers=...` on the committed config."""
    return amtool("config", "routes", "test", f"--config.file={CONFIG}",
                  f"--verify.receivers={','.join(receivers)}",
                  *[f"{k}={v}" for k, v in labels.items()])


def test_check_config_accepts_the_committed_file():
    result = amtool("check-config", str(CONFIG))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 templates" in result.stdout


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_route(case):
    result = routes_test(case["labels"], case["receivers"])
    assert result.returncode == 0, (
        f"{case['labels']} -> expected {case['receivers']}, amtool says: "
        f"{result.stdout.strip()} {result.stderr.strip()}")


def test_a_wrong_expectation_fails():
    # Guards the table itself: amtool must really verify, not just print.
    assert routes_test({"alertname": "X", "severity": "critical"}, ["default"]).returncode != 0


def test_every_receiver_is_tested_and_points_at_the_bridge():
    doc = yaml.safe_load(CONFIG.read_text())
    names = {r["name"] for r in doc["receivers"]}
    tested = {r for c in CASES for r in c["receivers"]}
    assert names == tested
    for receiver in doc["receivers"]:
        for hook in receiver["webhook_configs"]:
            assert hook["url"] == "http://127.0.0.1:8080/hooks/alertmanager"


def test_every_route_is_commented():
    # Each `- receiver:` line of the routing tree has a comment line just above it.
    lines = CONFIG.read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("route:"))
    end = next(i for i, line in enumerate(lines) if line.startswith("inhibit_rules:"))
    for i in range(start, end):
        if lines[i].strip().startswith("- receiver:"):
            assert lines[i - 1].strip().startswith("#"), f"route at line {i + 1} has no comment"


def test_templates_render_title_and_body(tmp_path):
    data = {
        "receiver": "oncall-pager", "status": "firing",
        "alerts": [{
            "status": "firing",
            "labels": {"alertname": "ApiLatencyP95High", "severity": "critical",
                       "team": "oncall", "http_route": "/api/workouts"},
            "annotations": {"summary": "API p95 latency is above 2 s.",
                            "description": "p95 of /api/workouts is 2.7 s.", "value": "2.7",
                            "runbook_url": "http://127.0.0.1:8080/runbooks#apilatencyp95high",
                            "dashboard_url": "http://127.0.0.1:3000/d/pulse-system"},
            "startsAt": "2026-11-25T10:00:00Z", "endsAt": "0001-01-01T00:00:00Z",
            "generatorURL": "", "fingerprint": "abc"}],
        "groupLabels": {"alertname": "ApiLatencyP95High"},
        "commonLabels": {"alertname": "ApiLatencyP95High", "severity": "critical"},
        "commonAnnotations": {}, "externalURL": "http://127.0.0.1:9093",
    }
    path = tmp_path / "data.json"
    path.write_text(json.dumps(data))
    result = amtool("template", "render", f"--template.glob={ALERTMANAGER_DIR}/templates/*.tmpl",
                    f"--template.data={path}",
                    '--template.text={{ template "pulse.title" . }}\n{{ template "pulse.text" . }}')
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert out.startswith("[FIRING:1] ApiLatencyP95High (critical)")
    for piece in ("API p95 latency is above 2 s.", "http_route=/api/workouts", "Value: 2.7",
                  "Runbook: http://127.0.0.1:8080/runbooks#apilatencyp95high",
                  "Dashboard: http://127.0.0.1:3000/d/pulse-system"):
        assert piece in out


def _alert(labels: dict[str, str]) -> dict:
    now = datetime.now(UTC)
    return {"labels": labels, "annotations": {},
            "startsAt": now.isoformat(), "endsAt": (now + timedelta(minutes=5)).isoformat()}


def test_inhibitions_in_a_real_alertmanager(alertmanager_factory):
    # Webhooks go to a port nothing listens on: this test only looks at inhibition.
    am = alertmanager_factory(CONFIG.read_text().replace(
        "templates/*.tmpl", str(ALERTMANAGER_DIR / "templates" / "*.tmpl")).replace(
        "http://127.0.0.1:8080", f"http://127.0.0.1:{free_port()}"))
    am.post_alerts([
        _alert({"alertname": "ApiLatencyP95High", "severity": "critical", "team": "oncall",
                "http_route": "/api/workouts"}),
        _alert({"alertname": "ApiLatencyP95High", "severity": "warning", "team": "oncall",
                "http_route": "/api/workouts"}),
        _alert({"alertname": "ApiLatencyP95High", "severity": "warning", "team": "oncall",
                "http_route": "/api/meals"}),
        _alert({"alertname": "IntegrationsExporterDown", "severity": "critical",
                "team": "oncall", "job": "integrations"}),
        _alert({"alertname": "IntegrationProbeFailing", "severity": "critical", "team": "oncall",
                "job": "integrations", "integration": "stripe"}),
        _alert({"alertname": "AiRecommendationAccuracyLow", "severity": "warning", "team": "ai",
                "model": "workout", "source_job": "integrations"}),
        _alert({"alertname": "IngestRejectionRatioHigh", "severity": "warning", "team": "data",
                "job": "events"}),
    ])

    def states():
        got = {}
        for a in am.alerts():
            key = (a["labels"]["alertname"], a["labels"].get("severity"),
                   a["labels"].get("http_route") or a["labels"].get("job", ""))
            got[key] = a["status"]["state"]
        return got if len(got) == 7 and "unprocessed" not in got.values() else None

    expected = {
        ("ApiLatencyP95High", "critical", "/api/workouts"): "active",
        ("ApiLatencyP95High", "warning", "/api/workouts"): "suppressed",
        ("ApiLatencyP95High", "warning", "/api/meals"): "active",
        ("IntegrationsExporterDown", "critical", "integrations"): "active",
        ("IntegrationProbeFailing", "critical", "integrations"): "suppressed",
        ("AiRecommendationAccuracyLow", "warning", ""): "suppressed",
        ("IngestRejectionRatioHigh", "warning", "events"): "active",
    }
    # Inhibition is evaluated when alerts are listed, from sources the inhibitor ingests in
    # the background: wait until it has caught up (a timeout shows the last states).
    seen: dict = {}

    def inhibited() -> bool:
        seen["states"] = states()
        return seen["states"] == expected

    try:
        wait_until(inhibited, 60, message="alerts ingested and inhibited")
    except AssertionError:
        pytest.fail(f"alert states {seen.get('states')}, expected {expected}")
