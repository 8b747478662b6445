"""The harness itself: real Prometheus and Alertmanager start, load rules, deliver, stop."""

import yaml

from tests import harness


def test_prometheus_and_alertmanager_answer(prometheus, alertmanager):
    assert prometheus.query_value("vector(42)") == 42
    assert prometheus.api("status/buildinfo")["version"].startswith("2.")
    assert isinstance(alertmanager.alerts(), list)


def test_rule_fires_and_alertmanager_delivers_to_sink(tmp_path, prometheus, webhook_sink):
    rules = tmp_path / "harness.rules.yml"
    rules.write_text(yaml.safe_dump({"groups": [{"name": "harness", "rules": [{
        "alert": "HarnessAlwaysFiring", "expr": "vector(1) > 0", "for": "0s",
        "labels": {"severity": "info", "team": "oncall"},
        "annotations": {"summary": "The harness works."}}]}]}))
    prometheus.configure(rule_files=[rules])
    try:
        prometheus.wait_for_alert("HarnessAlwaysFiring", timeout=30)
        body = webhook_sink.wait_for(
            lambda b: isinstance(b, dict) and b.get("version") == "4" and any(
                a["labels"].get("alertname") == "HarnessAlwaysFiring" for a in b["alerts"]),
            timeout=30, path_prefix="/alertmanager")
        alert = next(a for a in body["alerts"] if a["labels"]["alertname"] ==
                     "HarnessAlwaysFiring")
        assert alert["status"] == "firing"
        assert alert["labels"]["severity"] == "info"
        assert alert["annotations"]["summary"] == "The harness works."
    finally:
        prometheus.configure(rule_files=[])


def test_scrape_target_and_private_instance(prometheus_factory, webhook_sink):
    # The sink answers any path, so it is a (metric-less) scrape target that is up.
    prom = prometheus_factory(targets={"sink": [webhook_sink.url.replace("http://", "")]})
    targets = prom.wait_for_targets_up(["sink"], timeout=30)
    assert targets[0]["labels"]["job"] == "sink"
    assert prom.wait_for_value('up{job="sink"}', lambda v: v == 1) == 1
    pid = prom.process.pid
    prom.stop()
    assert not prom.process.alive()
    assert pid not in [p.pid for p in harness.live_processes()]


def test_missing_binary_fails_with_install_command(monkeypatch):
    import pytest

    monkeypatch.setattr(harness.shutil, "which", lambda name: None)
    with pytest.raises(pytest.fail.Exception) as info:
        harness.require_binary("prometheus")
    assert "apt-get install -y --no-install-recommends prometheus" in str(info.value)


def test_wait_until_reports_last_value():
    import pytest

    with pytest.raises(AssertionError, match="last value 0"):
        harness.wait_until(lambda: 0, timeout=0.3, message="never")
