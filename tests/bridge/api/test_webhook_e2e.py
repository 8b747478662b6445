"""End to end: real Prometheus rule -> real Alertmanager (the committed routing tree, intervals
shortened) -> the bridge as a real process -> real apprise -> a local HTTP sink (json://) and a
local SMTP server (mailto://). Firing and resolved, delivery latency, a failing channel with a
kill -9 of the bridge in the middle, and the alerts API against the real components.
"""

from __future__ import annotations

import email
import time
from email.header import decode_header, make_header
from pathlib import Path

import pytest
import requests
import yaml
from aiosmtpd.controller import Controller

from pulse.launcher.render import DEFAULT_BRIDGE_BASE
from pulse.paths import ALERTMANAGER_DIR
from tests import harness
from tests.bridge.stack import Exposition
from tests.harness import free_port, wait_until

pytestmark = pytest.mark.integration

TOKEN = "test-admin-token-0123456789"
RULES = """
groups:
  - name: pulse-e2e
    rules:
      - alert: PulseE2EPage
        expr: e2e_condition{case="page"} > 0
        for: 1s
        labels: {severity: critical, team: oncall}
        annotations:
          summary: The end-to-end page condition is true.
          description: 'e2e_condition is {{ $value }} for case {{ $labels.case }}.'
          value: '{{ $value }}'
          runbook_url: http://127.0.0.1:8080/runbooks#pulsee2epage
          dashboard_url: http://127.0.0.1:3000/d/pulse-self
      - alert: PulseE2EFault
        expr: e2e_condition{case="fault"} > 0
        for: 1s
        labels: {severity: critical, team: oncall}
        annotations:
          summary: The end-to-end fault condition is true.
          description: 'e2e_condition is {{ $value }}.'
          runbook_url: http://127.0.0.1:8080/runbooks#pulsee2efault
"""
# The scrape and evaluation interval and the shortened group_wait of the test stack.
SCRAPE = EVAL = GROUP_WAIT = FOR = 1.0


def condition() -> Exposition:
    """The metric the e2e rules watch: e2e_condition{case="page"|"fault"}, 0 until set."""
    source = Exposition()
    source.values.update({PAGE: 0, FAULT: 0})
    return source


PAGE = 'e2e_condition{case="page"}'
FAULT = 'e2e_condition{case="fault"}'


class SmtpSink:
    """A local SMTP server (aiosmtpd) keeping every message's subject and body."""

    def __init__(self):
        self.messages: list[tuple[str, str]] = []
        sink = self

        class Handler:
            async def handle_DATA(self, server, session, envelope):
                msg = email.message_from_bytes(envelope.content)
                subject = str(make_header(decode_header(msg["Subject"] or "")))
                part = next(p for p in msg.walk() if p.get_content_type() == "text/plain")
                sink.messages.append((subject, part.get_payload(decode=True).decode()))
                return "250 OK"

        self.port = free_port()
        self.controller = Controller(Handler(), hostname="127.0.0.1", port=self.port)
        self.controller.start()

    def subjects(self, word: str) -> list[str]:
        """Subjects of the messages containing word."""
        return [s for s, _ in self.messages if word in s]

    def stop(self):
        self.controller.stop()


def e2e_alertmanager_config(bridge_url: str) -> dict:
    """The committed alertmanager.yml pointed at bridge_url, every interval shortened."""
    text = (ALERTMANAGER_DIR / "alertmanager.yml").read_text()
    doc = yaml.safe_load(text.replace(DEFAULT_BRIDGE_BASE, bridge_url))
    doc["templates"] = [str(ALERTMANAGER_DIR / "templates" / "*.tmpl")]

    def shorten(route: dict) -> None:
        for key, value in (("group_wait", f"{GROUP_WAIT:g}s"), ("group_interval", "1s"),
                           ("repeat_interval", "1h")):
            if key in route or route is doc["route"]:
                route[key] = value
        for child in route.get("routes") or []:
            shorten(child)

    shorten(doc["route"])
    return doc




class Stack:
    """Prometheus, Alertmanager, the bridge process, an HTTP sink and an SMTP sink."""

    def __init__(self, workdir: Path):
        self.workdir = workdir
        self.sink = harness.WebhookSink().start()
        self.smtp = SmtpSink()
        self.cond = condition()
        self.bridge_port = free_port()
        self.bridge_url = f"http://127.0.0.1:{self.bridge_port}"
        self.am = harness.AlertmanagerServer(workdir / "am",
                                             e2e_alertmanager_config(self.bridge_url)).start()
        rules = workdir / "e2e.rules.yml"
        rules.write_text(RULES)
        self.prom = harness.PrometheusServer(
            workdir / "prom", scrape_interval=f"{SCRAPE:g}s", evaluation_interval=f"{EVAL:g}s",
            rule_files=[rules], targets={"e2e": [self.cond.address]},
            alertmanagers=[self.am.url]).start()
        self.config_path = workdir / "pulse.yml"
        harness.write_pulse_config(
            self.config_path, workdir / "data",
            prometheus={"url": self.prom.url}, alertmanager={"url": self.am.url},
            grafana={"url": "http://127.0.0.1:3000"},  # pages carry dashboard links
            bridge={"listen": f"127.0.0.1:{self.bridge_port}",
                    "channels": {
                        "pager-http": [f"json://127.0.0.1:{self.sink.port}/notify"],
                        "pager-mail": [f"mailto://pulse@example.com?smtp=127.0.0.1&port="
                                       f"{self.smtp.port}&to=oncall@example.com&mode=insecure"],
                    },
                    "receivers": {"oncall-pager": ["pager-http", "pager-mail"]}})
        self.env = harness.pulse_env(workdir / "data")
        self.bridge = None
        self.start_bridge()

    def start_bridge(self) -> None:
        """Start (or restart) the bridge process on its fixed port and data dir."""
        self.bridge = harness.start_service(
            "bridge", self.config_path, self.env, f"127.0.0.1:{self.bridge_port}",
            self.workdir / "logs" / f"bridge-{time.monotonic_ns()}.log", timeout=60)

    def http_messages(self, alertname: str) -> list[dict]:
        """Messages the HTTP sink accepted (2xx) for an alert."""
        return [b for b in self.sink.json_bodies("/notify") if alertname in b.get("title", "")]

    def stop(self) -> None:
        if self.bridge:
            self.bridge.stop()
        self.prom.stop()
        self.am.stop()
        self.sink.stop()
        self.smtp.stop()
        self.cond.stop()


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    """The whole delivery path, shared by this module's tests."""
    harness.require_binary("prometheus")
    harness.require_binary("prometheus-alertmanager")
    s = Stack(tmp_path_factory.mktemp("e2e"))
    s.prom.wait_for_targets_up(["e2e"], timeout=60)
    yield s
    s.stop()


def api(stack: Stack, path: str) -> dict:
    """GET a bridge API path as admin."""
    resp = requests.get(f"{stack.bridge_url}{path}", timeout=30,
                        headers={"Authorization": f"Bearer {TOKEN}"})
    assert resp.status_code == 200, resp.text
    return resp.json()


def test_firing_and_resolved_reach_http_and_smtp(stack):
    t0 = time.time()
    stack.cond.values[PAGE] = 1
    firing = wait_until(lambda: [m for m in stack.http_messages("PulseE2EPage")
                                 if m["title"].startswith("[FIRING")], 60,
                        message="the page at the HTTP sink")
    delivered_at = next(r["time"] for r in stack.sink.requests
                        if b"PulseE2EPage" in r["body"] and r["status"] < 300)
    latency = delivered_at - t0
    bound = SCRAPE + EVAL + FOR + GROUP_WAIT
    print(f"\ncondition true -> delivered at the HTTP sink: {latency:.2f} s "
          f"(scrape + eval + for + group_wait = {bound:g} s)")
    # Not a timing benchmark: a loose ceiling that only a stuck pipeline breaks.
    assert latency < bound + 25
    msg = firing[0]
    assert msg["type"] == "failure"
    assert msg["title"] == "[FIRING:1] PulseE2EPage (critical)"
    for piece in ("The end-to-end page condition is true.", "case=page", "Value: 1",
                  "Runbook: http://127.0.0.1:8080/runbooks#pulsee2epage",
                  "Dashboard: http://127.0.0.1:3000/d/pulse-self"):
        assert piece in msg["message"]
    wait_until(lambda: stack.smtp.subjects("[FIRING:1] PulseE2EPage"), 30,
               message="the page by email")
    body = next(b for s, b in stack.smtp.messages if "PulseE2EPage" in s)
    assert "Runbook: http://127.0.0.1:8080/runbooks#pulsee2epage" in body

    # The incident opened, and the alerts API sees the real Alertmanager and Prometheus.
    overview = api(stack, "/api/analytics/alerts")
    assert "PulseE2EPage" in [a["name"] for a in overview["active"]]
    assert {"PulseE2EPage", "PulseE2EFault"} <= {r["name"] for r in overview["alertRules"]}
    assert overview["recent"][0]["name"] == "PulseE2EPage"
    assert overview["recent"][0]["channels"] == {"pager-http": "sent", "pager-mail": "sent"}
    (incident,) = [i for i in api(stack, "/api/analytics/alerts/incidents")["incidents"]
                   if i["alert"] == "PulseE2EPage"]
    assert incident["channelsNotified"] == ["pager-http", "pager-mail"]

    stack.cond.values[PAGE] = 0
    resolved = wait_until(lambda: [m for m in stack.http_messages("PulseE2EPage")
                                   if m["title"].startswith("[RESOLVED")], 60,
                          message="the resolved notification at the HTTP sink")
    assert resolved[0]["type"] == "success"
    wait_until(lambda: stack.smtp.subjects("[RESOLVED] PulseE2EPage"), 30,
               message="the resolved email")
    assert len([m for m in stack.http_messages("PulseE2EPage")
                if m["title"].startswith("[FIRING")]) == 1
    assert len(stack.smtp.subjects("[FIRING:1] PulseE2EPage")) == 1
    assert not [i for i in api(stack, "/api/analytics/alerts/incidents")["incidents"]
                if i["alert"] == "PulseE2EPage"]


def test_failing_channel_gets_it_once_after_recovery_and_a_kill_9(stack):
    stack.sink.fail_status = 503

    def failed_attempts():
        return [r for r in stack.sink.requests
                if b"PulseE2EFault" in r["body"] and r["status"] >= 500]

    stack.cond.values[FAULT] = 1
    wait_until(lambda: stack.smtp.subjects("[FIRING:1] PulseE2EFault"), 60,
               message="the fault alert by email")
    wait_until(lambda: len(failed_attempts()) >= 2, 60, message="Alertmanager retrying")
    # The bridge dies hard while the HTTP channel still fails; its state must survive.
    stack.bridge.kill()
    before = len(failed_attempts())
    stack.start_bridge()
    wait_until(lambda: len(failed_attempts()) > before, 60,
               message="a retry reaching the restarted bridge")
    stack.sink.fail_status = None
    wait_until(lambda: [m for m in stack.http_messages("PulseE2EFault")
                        if m["title"].startswith("[FIRING")], 60,
               message="the fault alert at the recovered HTTP sink")

    stack.cond.values[FAULT] = 0
    wait_until(lambda: [m for m in stack.http_messages("PulseE2EFault")
                        if m["title"].startswith("[RESOLVED")], 60,
               message="the fault alert resolved")
    wait_until(lambda: stack.smtp.subjects("[RESOLVED] PulseE2EFault"), 30,
               message="the fault alert resolved by email")
    # A group's notifications go out one after another: once its resolution has arrived,
    # any retry of the firing one would have too. Delivered once, never duplicated.
    assert len([m for m in stack.http_messages("PulseE2EFault")
                if m["title"].startswith("[FIRING")]) == 1
    assert len(stack.smtp.subjects("[FIRING:1] PulseE2EFault")) == 1
    metrics = requests.get(f"{stack.bridge_url}/metrics", timeout=10).text
    assert 'pulse_notifications_total{channel="pager-http",result="success"}' in metrics
    assert "pulse_notification_delivery_duration_seconds_bucket" in metrics


def test_bad_webhook_bodies_to_the_real_process_are_400(stack):
    sent = len(stack.sink.requests), len(stack.smtp.messages)
    for body in (b"not json", b'{"version": "3"}',
                 b'{"version": "4", "receiver": "oncall-pager", "groupKey": "g", '
                 b'"status": "firing"}'):
        resp = requests.post(f"{stack.bridge_url}/hooks/alertmanager", data=body, timeout=10,
                             headers={"Content-Type": "application/json"})
        assert resp.status_code == 400
        assert resp.json()["error"]["details"]
    assert (len(stack.sink.requests), len(stack.smtp.messages)) == sent
