"""Incident-tool events built from a notification: key, severity, links, limits."""

import hashlib

from bridge.services.pagers import incident_key, opsgenie_alert, pagerduty_event, severity_of
from bridge.services.templates import Rendered, truncate


def notification(status="firing", *severities):
    alerts = [{"status": status, "labels": {"alertname": "ApiDown", "severity": s}}
              for s in severities or ("critical",)]
    return {"receiver": "oncall-pager", "groupKey": '{}:{alertname="ApiDown"}',
            "status": status, "alerts": alerts,
            "commonLabels": {"alertname": "ApiDown", "job": "api", "channels": "x"}}


PAGE = Rendered("[FIRING:1] ApiDown", "[FIRING:1] ApiDown: " + "s" * 2000, "body",
                [("Runbook", "https://rb/x"), ("Silence", "https://am/#/silences/new?f")])


def test_the_key_is_stable_for_the_group_and_apart_per_receiver():
    key = incident_key("oncall-pager", '{}:{alertname="ApiDown"}')
    assert key == hashlib.sha256(b'oncall-pager\n{}:{alertname="ApiDown"}').hexdigest()
    assert key != incident_key("ai-team", '{}:{alertname="ApiDown"}')
    assert len(key) == 64  # PagerDuty dedup_key <= 255, Opsgenie alias <= 512


def test_pagerduty_trigger_and_resolve():
    event = pagerduty_event("r" * 32, "k", notification(), PAGE)
    assert event["event_action"] == "trigger" and event["dedup_key"] == "k"
    assert len(event["payload"]["summary"]) == 1024
    assert event["payload"]["summary"].endswith(" more chars)")
    assert event["payload"]["severity"] == "critical"
    assert event["links"] == [{"href": "https://rb/x", "text": "Runbook"},
                              {"href": "https://am/#/silences/new?f", "text": "Silence"}]
    assert "channels" not in event["payload"]["custom_details"]["labels"]
    assert pagerduty_event("r" * 32, "k", notification("resolved"), PAGE) == {
        "routing_key": "r" * 32, "dedup_key": "k", "event_action": "resolve"}


def test_severity_is_the_worst_firing_one():
    assert severity_of(notification("firing", "warning", "critical")) == "critical"
    assert severity_of(notification("firing", "info")) == "info"
    assert severity_of(notification("firing", "bogus")) == "error"


def test_opsgenie_create_fits_its_limits_and_carries_the_links():
    body = opsgenie_alert("k", notification("firing", "warning"), PAGE)
    assert body["alias"] == "k" and body["priority"] == "P3"
    assert len(body["message"]) == 130
    assert body["details"]["Runbook"] == "https://rb/x"


def test_truncate_notes_what_it_cut():
    assert truncate("short", 10) == "short"
    cut = truncate("x" * 500, 100)
    kept = cut.split("…")[0]
    assert len(cut) == 100 and cut.endswith(f"(truncated, {500 - len(kept)} more chars)")
