"""Exactly once per channel from a real 3-peer Alertmanager cluster.

Real Prometheus evaluates two rules and sends to all three peers; every peer has
the bridge as its webhook; the bridge delivers to an apprise channel (json:// to
a local sink) and to a local PagerDuty server. During the incidents one peer is
SIGKILLed (and later restarted on its storage), the apprise channel answers 503
for a while, and the bridge is SIGKILLed and restarted in the middle. Still every
firing and every resolved notification reaches each channel exactly once, and
PagerDuty has one incident per group, opened once and resolved.

A silence created through one peer mutes the alert on all three.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests import harness
from tests.bridge.stack import Exposition
from tests.harness import free_port, wait_until
from tests.incident_tools import PagerDutyServer

pytestmark = pytest.mark.integration

ROUTING_KEY = "c" * 32
RULES = """
groups:
  - name: cluster-e2e
    rules:
      - alert: ClusterPageA
        expr: cluster_condition{case="a"} > 0
        for: 1s
        labels: {severity: critical, team: oncall}
        annotations: {summary: Condition A is true.}
      - alert: ClusterPageB
        expr: cluster_condition{case="b"} > 0
        for: 1s
        labels: {severity: critical, team: oncall}
        annotations: {summary: Condition B is true.}
"""
A, B = 'cluster_condition{case="a"}', 'cluster_condition{case="b"}'


def am_config(bridge_url: str) -> dict:
    # group_interval well above (peers - 1) x peer_timeout (2 s): see docs/alerting.md.
    return {"route": {"receiver": "oncall-pager", "group_by": ["alertname"],
                      "group_wait": "1s", "group_interval": "8s", "repeat_interval": "1h"},
            "receivers": [{"name": "oncall-pager", "webhook_configs": [
                {"url": f"{bridge_url}/hooks/alertmanager", "send_resolved": True}]}]}


def messages(sink: harness.WebhookSink) -> list[str]:
    """Titles of the notifications the apprise channel accepted, in order."""
    return [b["title"] for b in sink.json_bodies() if isinstance(b, dict) and "title" in b]


def counts(titles: list[str]) -> dict[tuple[str, str], int]:
    out: dict[tuple[str, str], int] = {}
    for title in titles:
        status = "resolved" if title.startswith("[RESOLVED]") else "firing"
        name = title.split("] ", 1)[1].split(" ")[0]
        out[(name, status)] = out.get((name, status), 0) + 1
    return out


def partly_delivered(data: Path) -> bool:
    """Whether the bridge's delivery log holds a notification some target got and that is
    not done (the pager's success for B, while the chat channel fails)."""
    sent, done = set(), set()
    for path in data.rglob("state.jsonl"):
        for line in path.read_text().splitlines():
            try:
                rec = json.loads(line)
            except ValueError:
                continue  # a line being appended
            (done if rec.get("done") else sent).add(rec.get("k"))
    return bool(sent - done)


@pytest.mark.e2e
def test_every_notification_exactly_once_per_channel_through_kills_and_outages(tmp_path):
    source = Exposition()
    source.values.update({A: 0, B: 0})
    sink = harness.WebhookSink().start()
    pd = PagerDutyServer()
    listen = f"127.0.0.1:{free_port()}"
    peers = harness.alertmanager_cluster(tmp_path, am_config(f"http://{listen}"))
    rules = tmp_path / "cluster.rules.yml"
    rules.write_text(RULES)
    prom = harness.PrometheusServer(tmp_path / "prom", rule_files=[rules],
                                    targets={"source": [source.address]},
                                    alertmanagers=[p.url for p in peers])
    data = tmp_path / "data"
    cfg_path = tmp_path / "pulse.yml"
    harness.write_pulse_config(
        cfg_path, data, alertmanager={"url": peers[0].url},
        bridge={"listen": listen, "receivers": {"oncall-pager": ["chat", "pager"]},
                "channels": {
                    "chat": [f"json://127.0.0.1:{sink.port}/notify"],
                    "pager": [{"pagerduty": {"routing_key": ROUTING_KEY,
                                             "url": f"{pd.url}/v2/enqueue"}}]}})
    env = harness.pulse_env(data)

    def start_bridge():
        return harness.start_service("bridge", cfg_path, env, listen, tmp_path / "bridge.log")

    bridge = start_bridge()
    try:
        for peer in peers:
            peer.start()
        wait_until(lambda: all(p.cluster_peers() == 3 for p in peers), 30,
                   message="3 peers in every peer's cluster status")
        prom.start()
        source.values[A] = 1
        wait_until(lambda: counts(messages(sink)).get(("ClusterPageA", "firing")), 60,
                   message="A's firing on the apprise channel")
        # One peer dies during the incident (the one most likely to be notifying).
        peers[0].process.kill(signal.SIGKILL)
        # The channel fails for a while; B fires meanwhile; the bridge is killed and
        # restarted in the middle.
        sink.fail_status = 503
        source.values[B] = 1
        wait_until(lambda: any(r["status"] == 503 for r in list(sink.requests)), 60,
                   message="a delivery of B refused by the failing channel")
        # Kill once the pager's success for B is durable: a kill between PagerDuty's 202
        # and that fsync is at-least-once by design (PagerDuty's dedup_key keeps it to
        # one incident), and this test counts exact deliveries.
        wait_until(lambda: partly_delivered(data), 60,
                   message="B's pager success recorded while its chat delivery is pending")
        bridge.kill(signal.SIGKILL)
        bridge = start_bridge()
        time.sleep(10)
        sink.fail_status = None
        wait_until(lambda: counts(messages(sink)).get(("ClusterPageB", "firing")), 90,
                   message="B's firing once the channel is back")
        peers[0].start()  # back on its own storage: its notification log is behind
        source.values[A] = 0
        source.values[B] = 0
        wait_until(lambda: counts(messages(sink)).get(("ClusterPageA", "resolved")) and
                   counts(messages(sink)).get(("ClusterPageB", "resolved")), 90,
                   message="both resolved")
        time.sleep(20)  # more than every peer's delay: any late copy would arrive now
    finally:
        prom.stop()
        for peer in peers:
            peer.stop()
        bridge.stop()
        sink.stop()
        pd.stop()
        source.stop()
    assert counts(messages(sink)) == {
        ("ClusterPageA", "firing"): 1, ("ClusterPageA", "resolved"): 1,
        ("ClusterPageB", "firing"): 1, ("ClusterPageB", "resolved"): 1}, messages(sink)
    assert len(pd.incidents) == 2, pd.events
    for inc in pd.incidents.values():
        assert inc["opened"] == 1 and inc["state"] == "resolved", pd.events
    triggers = [e for e in pd.successful() if e["body"]["event_action"] == "trigger"]
    resolves = [e for e in pd.successful() if e["body"]["event_action"] == "resolve"]
    assert len(triggers) == 2 and len(resolves) == 2, pd.events


def test_a_silence_made_through_one_peer_mutes_the_alert_on_all(tmp_path):
    sink = harness.WebhookSink().start()
    peers = harness.alertmanager_cluster(tmp_path, harness.alertmanager_webhook_config(
        f"{sink.url}/hook"))
    amtool = harness.require_binary("amtool")
    try:
        for peer in peers:
            peer.start()
        wait_until(lambda: all(p.cluster_peers() == 3 for p in peers), 30,
                   message="3 peers in every peer's cluster status")
        result = subprocess.run(
            [amtool, f"--alertmanager.url={peers[1].url}", "silence", "add",
             "alertname=ClusterSilenced", "--comment=maintenance", "--author=test",
             "--duration=10m"], capture_output=True, text=True, timeout=30)
        assert result.returncode == 0, result.stderr
        silence = result.stdout.strip()
        now = datetime.now(UTC)
        alert = {"labels": {"alertname": "ClusterSilenced", "instance": "x:1"},
                 "startsAt": now.isoformat(),
                 "endsAt": (now + timedelta(minutes=5)).isoformat()}
        for peer in peers:
            peer.post_alerts([alert])

        def muted_everywhere():
            states = [p.alerts(filter='alertname="ClusterSilenced"') for p in peers]
            return all(s and s[0]["status"]["state"] == "suppressed" and
                       s[0]["status"]["silencedBy"] == [silence] for s in states)

        wait_until(muted_everywhere, 30, message="the alert suppressed on all 3 peers")
        time.sleep(3)  # more than group_wait: a notification would have gone out
        assert [b for b in sink.json_bodies("/hook")
                if json.dumps(b).find("ClusterSilenced") >= 0] == []
    finally:
        for peer in peers:
            peer.stop()
        sink.stop()
