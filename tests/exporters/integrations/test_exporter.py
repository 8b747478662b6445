"""The real integrations exporter process, probing real local servers, scraped by Prometheus."""

from __future__ import annotations

import signal
import subprocess
import sys

import pytest
import requests

from pulse.audit import AuditLog, audit_log_path
from tests import harness
from tests.exporters.integrations.servers import Handler

API_KEY = "payments-api-key-0123456789"


class BlackboxPrometheus(harness.PrometheusServer):
    """Prometheus with one extra job scraping /probe the way blackbox_exporter is scraped."""

    probe_job: dict | None = None

    def config(self) -> dict:
        doc = super().config()
        if self.probe_job:
            doc["scrape_configs"].append(self.probe_job)
        return doc


@pytest.fixture(scope="module")
def stack(tmp_path_factory, http_server, https_server):
    """The exporter (probing every 1 s) and a Prometheus scraping it both ways."""
    tls, cert, not_after = https_server
    tmp = tmp_path_factory.mktemp("integrations")
    path = tmp / "pulse.yml"
    targets = [
        {"name": "payments", "url": f"{http_server.url}/ok", "body_regex": '"status": "ok"',
         "headers": {"X-Api-Key": "${PAYMENTS_API_KEY}"}},
        {"name": "failing", "url": f"{http_server.url}/fail"},
        {"name": "wrong_body", "url": f"{http_server.url}/wrong", "body_regex": '"ok"'},
        {"name": "slow", "url": f"{http_server.url}/slow", "timeout": "500ms"},
        {"name": "self_signed", "url": f"{tls.url}/ok"},
        {"name": "trusted_tls", "url": f"{tls.url}/ok", "ca_file": str(cert)},
        {"name": "closed", "url": f"tcp://127.0.0.1:{harness.free_port()}"},
    ]
    cfg = harness.write_pulse_config(path, tmp / "data", exporters={"integrations": {
        "interval": "1s", "targets": targets}})
    listen = cfg["exporters"]["integrations"]["listen"]
    env = harness.pulse_env(tmp / "data", PAYMENTS_API_KEY=API_KEY)
    log = tmp / "exporter.log"
    proc = harness.start_service("exporters.integrations", path, env, listen, log, timeout=60)
    prom = BlackboxPrometheus(tmp / "prometheus", targets={"integrations": [listen]})
    # /probe needs a token with integrations:probe: Prometheus reads it from a 0600 file, so
    # the rendered prometheus.yml never holds it.
    token_file = tmp / "probe.token"
    harness.write_atomic(token_file, env["PULSE_ADMIN_TOKEN"], mode=0o600)
    prom.probe_job = {
        "job_name": "blackbox", "metrics_path": "/probe", "params": {"module": ["http_2xx"]},
        "authorization": {"type": "Bearer", "credentials_file": str(token_file)},
        "static_configs": [{"targets": [f"{http_server.url}/ok"],
                            "labels": {"integration": "payments_multi_target"}}],
        "relabel_configs": [
            {"source_labels": ["__address__"], "target_label": "__param_target"},
            {"source_labels": ["__param_target"], "target_label": "instance"},
            {"target_label": "__address__", "replacement": listen}],
    }
    prom.start()
    state = {"proc": proc, "listen": listen, "prom": prom, "path": path, "env": env,
             "log": log, "not_after": not_after}
    yield state
    prom.stop()
    state["proc"].stop()


def test_real_output_is_promtool_clean(stack):
    text = requests.get(f"http://{stack['listen']}/metrics", timeout=30).text
    result = subprocess.run([harness.require_binary("promtool"), "check", "metrics"], input=text,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and not (result.stdout + result.stderr).strip(), \
        result.stdout + result.stderr


def test_prometheus_sees_each_integration_and_failure_reason(stack):
    prom = stack["prom"]
    prom.wait_for_targets_up(["integrations", "blackbox"], timeout=60)
    prom.wait_for_value('integration_probe_success{integration="payments"}', lambda v: v == 1,
                        timeout=60)
    for name, reason in (("failing", "status"), ("wrong_body", "body"), ("slow", "timeout"),
                         ("self_signed", "tls"), ("closed", "connect")):
        prom.wait_for_value(
            f'integration_probe_failures_total{{integration="{name}",reason="{reason}"}}',
            lambda v: v >= 1, timeout=60)
        assert prom.query_value(f'integration_probe_success{{integration="{name}"}}') == 0
    assert prom.query_value(
        'integration_probe_http_status_code{integration="failing"}') == 503
    expiry = prom.wait_for_value(
        'integration_tls_cert_expiry_timestamp_seconds{integration="trusted_tls"}')
    assert expiry == pytest.approx(stack["not_after"])
    prom.wait_for_value('integration_probe_phase_duration_seconds'
                        '{integration="trusted_tls",phase="tls"}', lambda v: v > 0)
    # The scheduled probe sent the header from the environment; the key is never logged.
    assert any(h.get("X-Api-Key") == API_KEY for h in Handler.seen_headers)
    assert API_KEY not in stack["log"].read_text()


def test_multi_target_probe_through_prometheus(stack):
    prom = stack["prom"]
    prom.wait_for_targets_up(["blackbox"], timeout=60)
    result = prom.query('integration_probe_success{job="blackbox"}')
    assert result and result[0]["metric"]["integration"] == "payments_multi_target"
    assert result[0]["metric"]["instance"].endswith("/ok")
    assert float(result[0]["value"][1]) == 1
    # Each scrape of /probe is an audited request of the admin token; the token itself is in
    # neither Prometheus's configuration nor the audit log.
    log = audit_log_path(stack["path"].parent / "data")
    assert ("admin", "/probe", "allowed") in {
        (r["who"], r["route"], r["outcome"]) for r in AuditLog(log).read(limit=1000)}
    token = stack["env"]["PULSE_ADMIN_TOKEN"]
    assert token not in log.read_text()
    assert token not in prom.config_path.read_text()


def test_email_outcomes_survive_kill_9(stack):
    base = f"http://{stack['listen']}"
    resp = requests.post(f"{base}/webhooks/email", json=[{"status": "delivered"},
                                                         {"status": "bounced"}], timeout=30)
    assert resp.status_code == 200
    bad = requests.post(f"{base}/webhooks/email", json={"status": "opened"}, timeout=30)
    assert bad.status_code == 400
    assert bad.json()["error"]["details"] == [
        {"field": "status", "problem": "must be one of delivered, bounced, complained, deferred"}]
    stack["proc"].kill(signal.SIGKILL)
    stack["proc"] = harness.start_service("exporters.integrations", stack["path"], stack["env"],
                                          stack["listen"], stack["log"], timeout=60)
    text = requests.get(f"{base}/metrics", timeout=30).text
    assert 'integration_email_messages_total{status="delivered"} 1.0' in text
    assert 'integration_email_messages_total{status="bounced"} 1.0' in text


def test_check_config_names_bad_integration_settings(tmp_path):
    path = tmp_path / "pulse.yml"
    harness.write_pulse_config(path, tmp_path / "data", exporters={"integrations": {
        "interval": "-5s",
        "targets": [{"name": "stripe", "url": "htp//api.stripe.com"},
                    {"name": "mail", "url": "tcp://smtp.example.com:587", "interval": "0s"}],
    }})
    result = subprocess.run([sys.executable, "-m", "pulse", "check-config", str(path)],
                            capture_output=True, text=True, timeout=60, cwd=harness.ROOT,
                            env=harness.pulse_env(tmp_path / "data"))
    assert result.returncode == 1
    for where in ("exporters.integrations.interval: '-5s'",
                  "exporters.integrations.targets[0].url: 'htp//api.stripe.com'",
                  "exporters.integrations.targets[1].interval: '0s'"):
        assert where in result.stderr, result.stderr
