"""The integrations app in process: golden scrape, scheduler, /probe and the email webhook."""

from __future__ import annotations

import threading

import pytest
from prometheus_client import CollectorRegistry

from exporters.integrations import create_app
from exporters.integrations.email import parse_outcomes
from exporters.integrations.probe import REASONS, ProbeResult, ProbeSpec
from exporters.integrations.probes import ProbesCollector
from exporters.integrations.scheduler import Scheduler, Target
from exporters.scrape import ScrapeCollector
from pulse.config import validate
from tests.bridge.conftest import TOKENS, token_entries
from tests.exporters.infrastructure.test_collectors import series_of

TARGETS = [{"name": "payments", "url": "https://pay.invalid/health", "interval": "1h"},
           {"name": "email", "url": "tcp://smtp.invalid:587", "interval": "1h", "tls": True}]
RESULTS = {
    "https://pay.invalid/health": ProbeResult(
        True, None, 0.25, {"resolve": 0.01, "connect": 0.02, "tls": 0.05, "processing": 0.1,
                           "transfer": 0.07}, 200, 1_800_000_000.0, 1_795_608_000.0),
    "tcp://smtp.invalid:587": ProbeResult(False, "connect", 0.02, {"resolve": 0.01,
                                                                   "connect": 0.01}, 0, None,
                                          1_795_608_000.0),
}


def fake_run(spec: ProbeSpec) -> ProbeResult:
    """Canned results by URL (the real prober is covered in test_probe.py)."""
    return RESULTS.get(spec.url, ProbeResult(False, "status", 0.1, {}, 500, None, 0.0))


def make_app(tmp_path, token="", **section):
    raw = {"data_dir": str(tmp_path), "bridge": {"tokens": token_entries()},
           "exporters": {"integrations": {
               "targets": TARGETS, "email_webhook": {"token": token}, **section}}}
    cfg = validate(raw, env={})
    return create_app(cfg, run=fake_run, start=False)


@pytest.fixture
def app(tmp_path):
    app = make_app(tmp_path)
    scheduler = app.extensions["pulse.scheduler"]
    for target in scheduler.targets:
        scheduler.probe_once(target)
    return app


GOLDEN = {
    *(f"integration_probe_{k}{{integration={n}}}" for n in ("payments", "email")
      for k in ("success", "duration_seconds", "http_status_code", "last_run_timestamp_seconds")),
    *(f"integration_probe_phase_duration_seconds{{integration=payments,phase={p}}}"
      for p in ("resolve", "connect", "tls", "processing", "transfer")),
    *(f"integration_probe_phase_duration_seconds{{integration=email,phase={p}}}"
      for p in ("resolve", "connect")),
    "integration_tls_cert_expiry_timestamp_seconds{integration=payments}",
    *(f"integration_probe_failure_reason{{integration={n},reason={r}}}"
      for n in ("payments", "email") for r in REASONS),
    *(f"integration_probe_failures_total{{integration={n},reason={r}}}"
      for n in ("payments", "email") for r in REASONS),
    "integration_probes_total{integration=payments}", "integration_probes_total{integration=email}",
    *(f"integration_email_messages_total{{status={s}}}"
      for s in ("delivered", "bounced", "complained", "deferred")),
    "integration_email_webhook_requests_total{result=accepted}",
    "integration_email_webhook_requests_total{result=rejected}",
    *(f"pulse_scrape_collector_{k}{{collector={c}}}" for c in ("probes", "email")
      for k in ("success", "duration_seconds")),
    "pulse_build_info{component=exporters.integrations,version=0.1.0}",
}


def test_golden_scrape(app):
    resp = app.test_client().get("/metrics")
    assert resp.status_code == 200
    assert series_of(resp.get_data(as_text=True)) == GOLDEN


def test_scrape_reports_last_results_and_failure_reasons(app):
    from prometheus_client.parser import text_string_to_metric_families

    text = app.test_client().get("/metrics").get_data(as_text=True)
    values = {(s.name, tuple(sorted(s.labels.items()))): s.value
              for f in text_string_to_metric_families(text) for s in f.samples}
    assert values[("integration_probe_success", (("integration", "payments"),))] == 1
    assert values[("integration_probe_success", (("integration", "email"),))] == 0
    assert values[("integration_probe_failures_total",
                   (("integration", "email"), ("reason", "connect")))] == 1
    assert values[("integration_probe_failure_reason",
                   (("integration", "email"), ("reason", "connect")))] == 1
    assert values[("integration_probe_failure_reason",
                   (("integration", "email"), ("reason", "dns")))] == 0
    assert values[("integration_tls_cert_expiry_timestamp_seconds",
                   (("integration", "payments"),))] == 1_800_000_000


def test_a_hanging_probe_never_blocks_the_scrape():
    release = threading.Event()

    def run(spec):
        if "hang" in spec.url:
            release.wait(60)
        return fake_run(spec)

    targets = [Target("hangs", ProbeSpec("http://hang.invalid/"), 3600.0),
               Target("payments", ProbeSpec("https://pay.invalid/health"), 3600.0)]
    scheduler = Scheduler(targets, run).start()
    try:
        registry = CollectorRegistry()
        registry.register(ScrapeCollector([("probes", ProbesCollector(scheduler))]))
        from tests.harness import wait_until
        wait_until(lambda: registry.get_sample_value("integration_probe_success",
                                                     {"integration": "payments"}) == 1, 60)
        # The hanging target's probe is still running: it has no result yet, and the
        # scrape above returned anyway.
        assert registry.get_sample_value("integration_probe_success",
                                         {"integration": "hangs"}) is None
        assert registry.get_sample_value("integration_probes_total",
                                         {"integration": "hangs"}) == 0
    finally:
        release.set()
        scheduler.stop()


def prober(app):
    """A test client sending an engineer's token (integrations:probe)."""
    client = app.test_client()
    client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {TOKENS['engineer']}"
    return client


def test_probe_needs_a_token_with_the_probe_permission(app):
    client = app.test_client()
    query = {"target": "https://pay.invalid/health"}
    assert client.get("/probe", query_string=query).status_code == 401
    refused = client.get("/probe", query_string=query,
                         headers={"Authorization": f"Bearer {TOKENS['analyst']}"})
    assert refused.status_code == 403
    assert "integrations:probe" in refused.get_json()["error"]["message"]
    # Both refusals are in the audit chain, as the allowed probe after them is.
    assert prober(app).get("/probe", query_string=query).status_code == 200
    records = app.extensions["pulse.audit"].read()
    assert [(r["who"], r["status"], r["route"], r["process"]) for r in records] == [
        ("engineer-user", 200, "/probe", "exporters.integrations"),
        ("analyst-user", 403, "/probe", "exporters.integrations"),
        ("anonymous", 401, "/probe", "exporters.integrations")]


def test_probe_endpoint_validates_and_probes(app):
    client = prober(app)
    # Without a scheme the target is taken as http://, as blackbox_exporter does.
    plain = client.get("/probe", query_string={"target": "pay.invalid/health"})
    assert plain.status_code == 200
    assert 'integration_probe_failure_reason{reason="status"} 1.0' in plain.get_data(as_text=True)
    ok = client.get("/probe", query_string={"target": "https://pay.invalid/health"})
    assert ok.status_code == 200
    assert "integration_probe_success 1.0" in ok.get_data(as_text=True)
    assert "integration=" not in ok.get_data(as_text=True)
    tcp = client.get("/probe", query_string={"target": "smtp.invalid:587",
                                             "module": "tls_connect"})
    assert 'integration_probe_failure_reason{reason="connect"} 1.0' in tcp.get_data(as_text=True)
    for params, field in (({"target": "x", "module": "icmp"}, "module"),
                          ({"module": "http_2xx"}, "target"),
                          ({"target": "ftp://x/", "module": "http_2xx"}, "target"),
                          ({"target": "no-port", "module": "tcp_connect"}, "target")):
        bad = client.get("/probe", query_string=params)
        assert bad.status_code == 400, params
        assert bad.get_json()["error"]["details"][0]["field"] == field


def test_email_webhook_counts_outcomes_durably(tmp_path):
    client = make_app(tmp_path).test_client()
    assert client.post("/webhooks/email", json={"status": "delivered"}).status_code == 200
    assert client.post("/webhooks/email", json=[{"event": "bounce", "email": "a@b.c"},
                                                {"event": "delivered"}]).status_code == 200
    resp = client.post("/webhooks/email", json={"events": [{"status": "complained"},
                                                           {"status": "deferred"}]})
    assert resp.get_json() == {"accepted": 2}
    # A fresh process over the same data directory (a restart, or kill -9) still knows.
    registry = CollectorRegistry()
    raw = {"data_dir": str(tmp_path)}
    create_app(validate(raw, env={}), registry, run=fake_run, start=False)
    assert registry.get_sample_value("integration_email_messages_total",
                                     {"status": "delivered"}) == 2
    for status in ("bounced", "complained", "deferred"):
        assert registry.get_sample_value("integration_email_messages_total",
                                         {"status": status}) == 1
    assert "a@b.c" not in (tmp_path / "integrations" / "email_messages.json").read_text()


@pytest.mark.parametrize("body, field", [
    ({"status": "opened"}, "status"),
    ({"events": [{"status": "delivered"}, {"status": 3}]}, "events[1].status"),
    ({"events": [{"status": "delivered"}, {}]}, "events[1].status"),
    ({"events": "delivered"}, "events"),
    ([], "<body>"),
    ("delivered", "<body>"),
])
def test_email_webhook_rejects_bad_bodies_whole(tmp_path, body, field):
    app = make_app(tmp_path)
    client = app.test_client()
    resp = client.post("/webhooks/email", json=body)
    assert resp.status_code == 400
    error = resp.get_json()["error"]
    assert error["details"][0]["field"] == field
    text = client.get("/metrics").get_data(as_text=True)
    assert 'integration_email_messages_total{status="delivered"} 0.0' in text


def test_email_webhook_rejects_invalid_json_and_wrong_token(tmp_path):
    client = make_app(tmp_path, token="hook-token-123456").test_client()
    assert client.post("/webhooks/email", json={"status": "delivered"}).status_code == 401
    headers = {"Authorization": "Bearer hook-token-123456"}
    bad = client.post("/webhooks/email", data=b"{nope", headers=headers,
                      content_type="application/json")
    assert bad.status_code == 400 and bad.get_json()["error"]["code"] == "invalid_json"
    ok = client.post("/webhooks/email", json={"status": "delivered"}, headers=headers)
    assert ok.status_code == 200


def test_parse_outcomes_aliases():
    counts = parse_outcomes([{"event": "spamreport"}, {"status": "Deferral"}, {"event": "bounce"}])
    assert counts == {"complained": 1, "deferred": 1, "bounced": 1}


def test_probe_timeout_is_cut_to_the_scrape_timeout(tmp_path):
    seen = []

    def run(spec):
        seen.append(spec)
        return fake_run(spec)

    cfg = validate({"data_dir": str(tmp_path), "bridge": {"tokens": token_entries()},
                    "exporters": {"integrations": {"timeout": "10s"}}}, env={})
    client = prober(create_app(cfg, run=run, start=False))
    client.get("/probe", query_string={"target": "https://pay.invalid/health"},
               headers={"X-Prometheus-Scrape-Timeout-Seconds": "3"})
    client.get("/probe", query_string={"target": "https://pay.invalid/health"})
    assert [s.timeout for s in seen] == [2.5, 10.0]
