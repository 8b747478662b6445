"""PagerDuty and Opsgenie lifecycles against local servers speaking their APIs.

Real Alertmanager 0.25 drives both: trigger -> repeat -> a second alert joins the
group -> both resolve must be ONE incident per tool, opened once, updated, closed,
nothing else opened. Once through the bridge (Pulse's path), and once through
Alertmanager's own pagerduty_configs/opsgenie_configs, which checks that the local
servers answer like the real services do for a client nobody here wrote.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest

from tests import harness
from tests.harness import free_port, wait_until
from tests.incident_tools import OpsgenieServer, PagerDutyServer

pytestmark = pytest.mark.integration

ROUTING_KEY = "r" * 32
API_KEY = "opsgenie-key-0123456789"
ROUTE = {"receiver": "oncall-pager", "group_by": ["alertname"], "group_wait": "1s",
         "group_interval": "3s", "repeat_interval": "6s"}


def iso(t: datetime) -> str:
    return t.isoformat().replace("+00:00", "Z")


def am_alert(instance: str, ends: datetime | None = None) -> dict:
    now = datetime.now(UTC)
    return {"labels": {"alertname": "ApiDown", "severity": "critical", "team": "oncall",
                       "job": "api", "instance": instance},
            "annotations": {"summary": f"The API at {instance} is down.",
                            "runbook_url": "https://runbooks.fit.example/apidown"},
            "generatorURL": "http://127.0.0.1:9090/graph?g0.expr=up",
            "startsAt": iso(now - timedelta(seconds=5)),
            "endsAt": iso(ends or now + timedelta(minutes=10))}


@pytest.fixture
def tools():
    pd, og = PagerDutyServer(), OpsgenieServer(API_KEY)
    yield pd, og
    pd.stop()
    og.stop()


def bridge_am_config(bridge_url: str) -> dict:
    return {"route": ROUTE, "receivers": [{"name": "oncall-pager", "webhook_configs": [
        {"url": f"{bridge_url}/hooks/alertmanager", "send_resolved": True}]}]}


def native_am_config(pd: PagerDutyServer, og: OpsgenieServer, tmp_path) -> dict:
    (tmp_path / "pd.key").write_text(ROUTING_KEY)
    (tmp_path / "og.key").write_text(API_KEY)
    return {"route": ROUTE, "receivers": [{
        "name": "oncall-pager",
        "pagerduty_configs": [{"routing_key_file": str(tmp_path / "pd.key"),
                               "url": f"{pd.url}/v2/enqueue", "send_resolved": True}],
        "opsgenie_configs": [{"api_key_file": str(tmp_path / "og.key"),
                              "api_url": f"{og.url}/", "send_resolved": True}]}]}


def run_lifecycle(am: harness.AlertmanagerServer, pd, og) -> None:
    """trigger -> repeat -> second alert joins -> resolve, waiting for each step."""
    a = am_alert("api-1:8080")
    am.post_alerts([a])
    wait_until(lambda: len([e for e in pd.successful()
                            if (e["body"] or {}).get("event_action") == "trigger"]) >= 2,
               40, message="PagerDuty: the first trigger and its repeat")
    b = am_alert("api-2:8080")
    am.post_alerts([a, b])
    wait_until(lambda: any("[FIRING:2]" in ((e["body"] or {}).get("payload") or {}).get(
        "summary", "") for e in pd.successful()), 30, message="PagerDuty: the group of 2")
    # Both tools, before the resolve: each is sent on its own, so one may lag the other.
    wait_until(lambda: pd.incidents and og.incidents and all(
        i["updates"] >= 2 for tool in (pd, og) for i in tool.incidents.values()), 30,
        message="both tools: the repeat and the group of 2 reached the open incident")
    now = datetime.now(UTC)
    am.post_alerts([dict(x, endsAt=iso(now)) for x in (a, b)])
    wait_until(lambda: pd.incidents and all(i["state"] == "resolved"
                                            for i in pd.incidents.values())
               and og.incidents and all(i["state"] == "resolved"
                                        for i in og.incidents.values()),
               30, message="both incidents resolved")
    time.sleep(4)  # a group_interval more: anything sent late would show now


def assert_one_incident_each(pd, og) -> None:
    for tool in (pd, og):
        assert len(tool.incidents) == 1, tool.events
        (inc,) = tool.incidents.values()
        assert inc["opened"] == 1, tool.events
        assert inc["state"] == "resolved"
        assert inc["updates"] >= 2  # the repeat and the second alert went to the same one
    assert all(e["status"] < 300 for e in pd.events + og.events)


def test_bridge_pages_pagerduty_and_opsgenie_one_incident_per_group(tmp_path, tools):
    pd, og = tools
    data = tmp_path / "data"
    listen = f"127.0.0.1:{free_port()}"
    am = harness.AlertmanagerServer(tmp_path / "am", bridge_am_config(f"http://{listen}"))
    cfg_path = tmp_path / "pulse.yml"
    harness.write_pulse_config(
        cfg_path, data, alertmanager={"url": am.url, "external_url": "https://am.fit.example"},
        grafana={"url": "https://grafana.fit.example"},
        # replay_window below repeat_interval (6 s): a repeat is news, a copy is not.
        bridge={"listen": listen, "delivery": {"replay_window": "3s"},
                "receivers": {"oncall-pager": ["pager"]}, "channels": {
            "pager": [{"pagerduty": {"routing_key": ROUTING_KEY, "url": f"{pd.url}/v2/enqueue"}},
                      {"opsgenie": {"api_key": API_KEY, "url": og.url}}]}})
    bridge = harness.start_service("bridge", cfg_path, harness.pulse_env(data), listen,
                                   tmp_path / "bridge.log")
    try:
        am.start()
        run_lifecycle(am, pd, og)
    finally:
        am.stop()
        bridge.stop()
    assert_one_incident_each(pd, og)
    trigger = next(e["body"] for e in pd.successful()
                   if (e["body"] or {}).get("event_action") == "trigger")
    assert trigger["payload"]["severity"] == "critical"
    links = {link["text"]: link["href"] for link in trigger["links"]}
    assert links["Runbook"] == "https://runbooks.fit.example/apidown"
    assert links["Source"] == "http://127.0.0.1:9090/graph?g0.expr=up"
    assert links["Silence"].startswith("https://am.fit.example/#/silences/new?filter=%7B")
    keys = {e["body"].get("dedup_key") for e in pd.events}
    assert len(keys) == 1 and len(next(iter(keys))) == 64
    # Opsgenie: the group's text is updated on the open alert, then it is closed.
    paths = [(e["method"], e["path"].rsplit("/", 1)[-1]) for e in og.successful()]
    assert ("PUT", "description") in paths and paths[-1] == ("POST", "close")
    (inc,) = og.incidents.values()
    assert inc["last"]["message"].startswith("[FIRING:2] ApiDown (critical)")
    log = (tmp_path / "bridge.log").read_text()
    assert ROUTING_KEY not in log and API_KEY not in log


def test_the_local_servers_answer_alertmanagers_own_integrations_like_the_services(
        tmp_path, tools):
    pd, og = tools
    am = harness.AlertmanagerServer(tmp_path / "am", native_am_config(pd, og, tmp_path))
    try:
        am.start()
        run_lifecycle(am, pd, og)
    finally:
        am.stop()
    assert_one_incident_each(pd, og)
