"""POST /hooks/alertmanager in process, delivering through real apprise to local HTTP sinks."""

from __future__ import annotations

import logging

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bridge import create_app
from bridge.services import incidents
from bridge.services.delivery_log import notification_key
from pulse.log import RedactingFormatter
from tests.bridge.conftest import auth, bridge_config
from tests.harness import WebhookSink

SECRET = "s3cr3t-channel-token-XYZ"


@pytest.fixture(scope="module")
def _sinks():
    a, b = WebhookSink().start(), WebhookSink().start()
    yield {"pager": a, "chat": b}
    a.stop()
    b.stop()


@pytest.fixture
def sinks(_sinks):
    """Two local HTTP sinks, `pager` and `chat`, empty and answering 200."""
    for sink in _sinks.values():
        sink.clear()
        sink.fail_status = None
    return _sinks


def make_app(tmp_path, sinks, grafana=None, **bridge):
    """A bridge whose channels post (json://) to the sinks; receivers map to them."""
    section = {
        "channels": {
            "pager": [f"json://127.0.0.1:{sinks['pager'].port}/{SECRET}"],
            "chat": [f"json://127.0.0.1:{sinks['chat'].port}/notify"],
        },
        "receivers": {"oncall-pager": ["pager", "chat"], "default": ["chat"]},
        **bridge,
    }
    return create_app(bridge_config(tmp_path, bridge=section,
                                    prometheus={"url": "http://127.0.0.1:9"},
                                    alertmanager={"url": "http://127.0.0.1:9",
                                                  "external_url": "https://am.fit.example"},
                                    grafana=grafana or {}))


def alert(status="firing", fingerprint="f1", **labels):
    """One webhook alert."""
    return {
        "status": status,
        "labels": {"alertname": "ApiLatencyP95High", "severity": "critical", "team": "oncall",
                   "http_route": "/api/workouts", **labels},
        "annotations": {"summary": "API p95 latency is above 2 s.",
                        "description": "p95 of /api/workouts is 2.7 s.", "value": "2.7",
                        "runbook_url": "http://127.0.0.1:8080/runbooks#apilatencyp95high",
                        "dashboard_url": "http://127.0.0.1:3000/d/pulse-system"},
        "startsAt": "2026-11-25T10:00:00Z",
        "endsAt": "2026-11-25T10:05:00Z" if status == "resolved" else "0001-01-01T00:00:00Z",
        "generatorURL": "http://prometheus/graph", "fingerprint": fingerprint,
    }


def payload(*alerts, receiver="oncall-pager", status=None, group="{}:{alertname=\"A\"}"):
    """A version 4 webhook payload."""
    alerts = list(alerts) or [alert()]
    return {
        "version": "4", "groupKey": group, "truncatedAlerts": 0,
        "status": status or ("firing" if any(a["status"] == "firing" for a in alerts)
                             else "resolved"),
        "receiver": receiver, "groupLabels": {"alertname": "ApiLatencyP95High"},
        "commonLabels": {"alertname": "ApiLatencyP95High", "severity": "critical"},
        "commonAnnotations": {}, "externalURL": "http://127.0.0.1:9093", "alerts": alerts,
    }


def sample(app, name, **labels):
    """A sample value from the app's registry."""
    return app.config["REGISTRY"].get_sample_value(name, labels) or 0.0


BAD_BODIES = [
    ("not json", "body"),
    ("[1, 2]", "body"),
    ('{"version": "3", "alerts": []}', "version"),
    ('{"receiver": "x"}', "version"),
    ('{"version": "4", "receiver": "r", "groupKey": "g", "status": "firing"}', "alerts"),
    ('{"version": "4", "receiver": "r", "groupKey": "g", "status": "firing", "alerts": []}',
     "alerts"),
    ('{"version": "4", "receiver": "r", "groupKey": "g", "status": "burning", "alerts": [{}]}',
     "status"),
    ('{"version": "4", "receiver": "r", "groupKey": "g", "status": "firing", "alerts": [1]}',
     "alerts[0]"),
    ('{"version": "4", "receiver": "r", "groupKey": "g", "status": "firing", '
     '"alerts": [{"status": "firing", "startsAt": "x"}]}', "alerts[0].labels"),
    ('{"version": "4", "receiver": "r", "groupKey": "g", "status": "firing", '
     '"alerts": [{"status": "firing", "labels": {"a": 1}, "startsAt": "x"}]}',
     "alerts[0].labels"),
    ('{"version": "4", "receiver": "r", "groupKey": "g", "status": "firing", '
     '"alerts": [{"status": "firing", "labels": {"severity": "x"}, "startsAt": "x"}]}',
     "alerts[0].labels"),
    ('{"version": "4", "receiver": 5, "groupKey": "g", "status": "firing", "alerts": [{}]}',
     "receiver"),
]


@pytest.mark.parametrize("body,field", BAD_BODIES)
def test_bad_bodies_are_400_and_nothing_is_sent(tmp_path, sinks, body, field):
    app = make_app(tmp_path, sinks)
    resp = app.test_client().post("/hooks/alertmanager", data=body,
                                  content_type="application/json")
    assert resp.status_code == 400, resp.json
    assert resp.json["error"]["details"][0]["field"] == field
    assert sinks["pager"].requests == [] and sinks["chat"].requests == []
    assert sample(app, "pulse_alertmanager_webhooks_total", outcome="invalid") == 1


def test_firing_then_resolved_reach_every_channel_of_the_receiver(tmp_path, sinks):
    app = make_app(tmp_path, sinks, grafana={"url": "http://127.0.0.1:3000"})
    client = app.test_client()
    resp = client.post("/hooks/alertmanager", json=payload())
    assert resp.status_code == 200, resp.json
    assert resp.json["channels"] == {"pager": "sent", "chat": "sent"}
    for sink in sinks.values():
        (msg,) = sink.json_bodies()
        assert msg["type"] == "failure"
        assert msg["title"] == "[FIRING:1] ApiLatencyP95High (critical)"
        for piece in ("API p95 latency is above 2 s.", "http_route=/api/workouts",
                      "Value: 2.7", "p95 of /api/workouts is 2.7 s.",
                      "Runbook: http://127.0.0.1:8080/runbooks#apilatencyp95high",
                      "Dashboard: http://127.0.0.1:3000/d/pulse-system"):
            assert piece in msg["message"]
        assert "Source: http://prometheus/graph" in msg["message"]
        # The silence link opens the public Alertmanager's new-silence form with the
        # alert's matchers (routing-only labels left out), whichever peer sent it.
        assert ("Silence: https://am.fit.example/#/silences/new?filter=%7Balertname%3D%22"
                "ApiLatencyP95High%22%2Chttp_route%3D%22%2Fapi%2Fworkouts%22%2Cseverity%3D%22"
                "critical%22%7D") in msg["message"]
    resp = client.post("/hooks/alertmanager", json=payload(alert("resolved")))
    assert resp.status_code == 200
    for sink in sinks.values():
        first, second = sink.json_bodies()
        assert second["type"] == "success"
        assert second["title"].startswith("[RESOLVED] ApiLatencyP95High")
        assert "Resolved:" in second["message"]
    assert sample(app, "pulse_notifications_total", channel="pager", result="success") == 2
    assert sample(app, "pulse_notification_delivery_duration_seconds_count",
                  channel="chat") == 2


def test_warning_maps_to_the_warning_type(tmp_path, sinks):
    app = make_app(tmp_path, sinks)
    resp = app.test_client().post("/hooks/alertmanager", json=payload(
        alert(severity="warning"), receiver="oncall"))
    assert resp.status_code == 200
    # `oncall` has no mapping and no channel of its name: the default receiver's (chat).
    assert sinks["pager"].json_bodies() == []
    assert sinks["chat"].json_bodies()[0]["type"] == "warning"


def test_a_failing_channel_gives_5xx_and_the_retry_goes_only_to_it(tmp_path, sinks):
    app = make_app(tmp_path, sinks)
    sinks["pager"].fail_status = 503
    client = app.test_client()
    for _ in range(3):
        resp = client.post("/hooks/alertmanager", json=payload())
        assert resp.status_code == 503
        assert resp.json["error"]["details"] == [{"field": "channel",
                                                  "problem": "pager: delivery failed"}]
    assert len(sinks["chat"].json_bodies()) == 1
    sinks["pager"].fail_status = None
    # A restart (a new app on the same data dir) keeps what was delivered.
    app2 = make_app(tmp_path, sinks)
    resp = app2.test_client().post("/hooks/alertmanager", json=payload())
    assert resp.status_code == 200, resp.json
    assert len(sinks["pager"].json_bodies()) == 1
    assert len(sinks["chat"].json_bodies()) == 1
    assert sample(app2, "pulse_notifications_total", channel="chat", result="skipped") == 1
    # The same notification again right away is a retry after a lost answer: not re-sent.
    resp = app2.test_client().post("/hooks/alertmanager", json=payload())
    assert resp.json["status"] == "duplicate"
    assert len(sinks["pager"].json_bodies()) == 1


def test_a_repeat_after_the_replay_window_is_delivered_again(tmp_path, sinks):
    app = make_app(tmp_path, sinks, delivery={"replay_window": "0s"})
    client = app.test_client()
    assert client.post("/hooks/alertmanager", json=payload()).status_code == 200
    assert client.post("/hooks/alertmanager", json=payload()).json["status"] == "delivered"
    assert len(sinks["chat"].json_bodies()) == 2


def test_the_channels_label_adds_channels_and_unknown_ones_are_dropped(tmp_path, sinks):
    app = make_app(tmp_path, sinks)
    resp = app.test_client().post("/hooks/alertmanager", json=payload(
        alert(severity="info", channels="pager, nosuch"), receiver="ai-team"))
    assert resp.status_code == 200
    assert resp.json["channels"] == {"chat": "sent", "pager": "sent"}
    assert sample(app, "pulse_notifications_total", channel="unknown", result="dropped") == 1


def test_a_receiver_without_any_channel_is_accepted_and_counted(tmp_path, sinks):
    app = create_app(bridge_config(tmp_path, bridge={"channels": {}}))
    resp = app.test_client().post("/hooks/alertmanager", json=payload())
    assert resp.status_code == 200
    assert sample(app, "pulse_notifications_total", channel="none", result="dropped") == 1


def test_long_messages_are_one_message_truncated_with_a_note(tmp_path, sinks):
    app = make_app(tmp_path, sinks)
    long = alert()
    long["annotations"]["description"] = "x" * 70000
    resp = app.test_client().post("/hooks/alertmanager", json=payload(long))
    assert resp.status_code == 200
    # json:// carries at most 32768 characters per message: one message, cut with a
    # note saying how much was left out (a split page would be several pages).
    (part,) = sinks["chat"].json_bodies()
    assert len(part["message"]) <= 32768
    assert part["title"] == "[FIRING:1] ApiLatencyP95High (critical)"
    assert part["message"].startswith("Firing:\nAPI p95 latency is above 2 s.")
    assert part["message"].endswith(" more chars)") and "… (truncated, " in part["message"]


def test_secrets_never_reach_logs_responses_or_history(tmp_path, sinks, caplog):
    app = make_app(tmp_path, sinks)
    client = app.test_client()
    sinks["pager"].fail_status = 503
    with caplog.at_level(logging.DEBUG):
        client.post("/hooks/alertmanager", json=payload())
        sinks["pager"].fail_status = None
        client.post("/hooks/alertmanager", json=payload())
        client.post("/api/analytics/alerts/test", json={"channel": "pager"},
                    headers=auth("admin"))
    formatter = RedactingFormatter("%(name)s %(message)s")
    texts = [caplog.text, "\n".join(formatter.format(r) for r in caplog.records)]
    texts += [r.get_data(as_text=True) for r in (
        client.get("/api/analytics/alerts/incidents?status=all", headers=auth("admin")),
        client.get("/metrics"), client.get("/api/openapi.json"))]
    for path in (tmp_path / "data").rglob("*"):
        if path.is_file():
            texts.append(path.read_text(errors="replace"))
    for text in texts:
        assert SECRET not in text


def test_webhook_token(tmp_path, sinks):
    app = make_app(tmp_path, sinks, webhook_token="hook-token-0123456789")
    client = app.test_client()
    assert client.post("/hooks/alertmanager", json=payload()).status_code == 401
    assert client.post("/hooks/alertmanager", json=payload(),
                       headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert sinks["chat"].requests == []
    resp = client.post("/hooks/alertmanager", json=payload(),
                       headers={"Authorization": "Bearer hook-token-0123456789"})
    assert resp.status_code == 200


def test_a_critical_alert_opens_an_incident_that_resolves(tmp_path, sinks):
    app = make_app(tmp_path, sinks)
    client = app.test_client()
    client.post("/hooks/alertmanager", json=payload(alert(), alert(severity="warning",
                                                                   fingerprint="f2")))
    (inc,) = incidents.active(app)
    assert inc["alert"] == "ApiLatencyP95High"
    assert inc["startsAt"] == "2026-11-25T10:00:00Z"
    assert inc["runbook"] == "http://127.0.0.1:8080/runbooks#apilatencyp95high"
    assert inc["channelsNotified"] == ["chat", "pager"]
    assert inc["acknowledged"] is False
    resp = client.post(f"/api/analytics/alerts/incidents/{inc['id']}/acknowledge",
                       headers=auth("analyst"))
    assert resp.status_code == 403
    resp = client.post(f"/api/analytics/alerts/incidents/{inc['id']}/acknowledge",
                       headers=auth("engineer"))
    assert resp.status_code == 200
    assert resp.json["acknowledgedBy"] == "engineer-user"
    assert client.post("/api/analytics/alerts/incidents/inc-nope/acknowledge",
                       headers=auth("engineer")).status_code == 404
    # The acknowledgement is on disk: a new app (a restart) sees it.
    app2 = make_app(tmp_path, sinks)
    assert incidents.active(app2)[0]["acknowledged"] is True
    app2.test_client().post("/hooks/alertmanager", json=payload(alert("resolved")))
    assert incidents.active(app2) == []
    listed = app2.test_client().get("/api/analytics/alerts/incidents?status=resolved",
                                    headers=auth("auditor")).json["incidents"]
    assert [i["status"] for i in listed] == ["resolved"]
    assert listed[0]["resolvedAt"] == "2026-11-25T10:05:00Z"


def test_notification_key_separates_status_and_alerts():
    base = payload()
    assert notification_key(base) == notification_key(payload())
    assert notification_key(base) != notification_key(payload(alert("resolved")))
    assert notification_key(base) != notification_key(payload(alert(), alert(fingerprint="f9")))


def test_send_a_test_notification(tmp_path, sinks):
    app = make_app(tmp_path, sinks)
    client = app.test_client()
    resp = client.post("/api/analytics/alerts/test", json={"channel": "chat",
                                                           "message": "hello"},
                       headers=auth("engineer"))
    assert resp.status_code == 200, resp.json
    assert resp.json == {"channel": "chat", "targets": 1, "delivered": 1}
    assert sinks["chat"].json_bodies()[0]["message"] == "hello"
    assert client.post("/api/analytics/alerts/test", json={"channel": "nosuch"},
                       headers=auth("engineer")).status_code == 404
    for body, field in (({}, "channel"), ({"channel": "chat", "severity": "x"}, "severity"),
                        ({"channel": "chat", "color": 1}, "color"),
                        ({"channel": "chat", "message": ""}, "message")):
        resp = client.post("/api/analytics/alerts/test", json=body, headers=auth("engineer"))
        assert resp.status_code == 400
        assert resp.json["error"]["details"][0]["field"] == field
    assert client.post("/api/analytics/alerts/test", json={"channel": "chat"},
                       headers=auth("analyst")).status_code == 403
    assert client.post("/api/analytics/alerts/test",
                       json={"channel": "chat"}).status_code == 401
    sinks["pager"].fail_status = 503
    resp = client.post("/api/analytics/alerts/test", json={"channel": "pager"},
                       headers=auth("engineer"))
    assert resp.status_code == 503
    assert len(sinks["chat"].json_bodies()) == 1


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner,
                                                                 max_size=4),
    max_leaves=12)


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=st.fixed_dictionaries(
    {"version": st.sampled_from(["4", 4, None]),
     "receiver": st.sampled_from(["oncall-pager", 1, None]),
     "groupKey": st.sampled_from(["g", None]),
     "status": st.sampled_from(["firing", "resolved", "x"]),
     "alerts": json_values | st.lists(st.dictionaries(
         st.sampled_from(["status", "labels", "annotations", "startsAt", "endsAt",
                          "fingerprint"]), json_values), max_size=2)}))
def test_any_json_body_is_answered_200_or_400_never_500(tmp_path, body):
    app = create_app(bridge_config(tmp_path, bridge={"channels": {}}))
    resp = app.test_client().post("/hooks/alertmanager", json=body)
    assert resp.status_code in (200, 400), resp.json


def test_the_shipped_config_sends_every_receiver_to_the_demo_channel():
    from bridge.services.notifier import channels_for
    from pulse.config import load_config
    from pulse.paths import DEFAULT_CONFIG

    cfg = load_config(DEFAULT_CONFIG, env={"PULSE_ADMIN_TOKEN": "a" * 32,
                                           "PULSE_PRIVACY_SALT": "s" * 32})
    assert cfg.bridge.webhook_token == ""
    for receiver in ("oncall-pager", "oncall", "ai-team", "product", "business",
                     "data-engineering", "heartbeat", "default"):
        assert channels_for(receiver, [], cfg.bridge.channels, cfg.bridge.receivers) == \
            (["demo"], [])


def test_without_grafana_url_no_dashboard_link_and_truncated_alerts_are_counted(
        tmp_path, sinks):
    app = make_app(tmp_path, sinks)
    body = payload(alert())
    body["alerts"][0]["annotations"]["suggested_action"] = "Retrain the recommendation model."
    body["truncatedAlerts"] = 3
    resp = app.test_client().post("/hooks/alertmanager", json=body)
    assert resp.status_code == 200, resp.json
    message = sinks["chat"].json_bodies()[0]["message"]
    assert "Dashboard:" not in message and "127.0.0.1:3000" not in message
    assert "Suggested action: Retrain the recommendation model." in message
    assert "…and 3 more alert(s) in this group" in message


def test_another_peers_copy_and_a_late_firing_after_the_resolve_are_dropped(tmp_path, sinks):
    app = make_app(tmp_path, sinks)
    client = app.test_client()
    peer = {"externalURL": "http://127.0.0.1:9095"}
    assert client.post("/hooks/alertmanager", json=payload()).json["status"] == "delivered"
    assert client.post("/hooks/alertmanager",
                       json={**payload(), **peer}).json["status"] == "duplicate"
    resolved = payload(alert("resolved"))
    assert client.post("/hooks/alertmanager", json=resolved).json["status"] == "delivered"
    # A lagging peer: the firing again after the resolve, then the resolve again.
    late = {**payload(), **peer}
    late["alerts"][0]["labels"]["peer"] = "x"  # not the same key: only the group log knows
    late["alerts"][0]["fingerprint"] = "f1"
    assert client.post("/hooks/alertmanager", json=late).json["status"] == "duplicate"
    assert client.post("/hooks/alertmanager",
                       json={**resolved, **peer}).json["status"] == "duplicate"
    # After a restart too.
    app2 = make_app(tmp_path, sinks)
    assert app2.test_client().post("/hooks/alertmanager",
                                   json=late).json["status"] == "duplicate"
    for sink in sinks.values():
        assert [b["type"] for b in sink.json_bodies()] == ["failure", "success"]
    # The same alert firing anew (a new start) is news.
    again = payload(alert())
    again["alerts"][0]["startsAt"] = "2026-11-25T11:00:00Z"
    assert client.post("/hooks/alertmanager", json=again).json["status"] == "delivered"
