"""The audit endpoint and the access-control rules around it."""

import pytest

from bridge import auth as bridge_auth
from pulse.config import ConfigError, validate
from tests.bridge.conftest import TOKENS, auth


def test_admin_and_auditor_read_the_audit_log_others_do_not(client):
    client.get("/api/analytics/alerts/rules", headers=auth("analyst"))
    for role in ("admin", "auditor"):
        resp = client.get("/api/analytics/audit", headers=auth(role))
        assert resp.status_code == 200
    for role in ("engineer", "analyst", "executive", "coach"):
        resp = client.get("/api/analytics/audit", headers=auth(role))
        assert resp.status_code == 403
        assert "audit:read" in resp.json["error"]["message"]
    assert client.get("/api/analytics/audit").status_code == 401
    entries = client.get("/api/analytics/audit?limit=1000", headers=auth("admin")).json["entries"]
    assert ("analyst-user", "refused", 403) in {(e["who"], e["outcome"], e["status"])
                                                for e in entries}
    # Refused audit reads are audited too.
    assert ("coach-user", "/api/analytics/audit") in {(e["who"], e["path"]) for e in entries}


def test_filters_and_limit(client):
    for _ in range(3):
        client.get("/api/analytics/alerts/rules", headers=auth("engineer"))
    client.get("/api/analytics/alerts/rules", headers=auth("executive"))
    body = client.get("/api/analytics/audit?who=engineer-user&limit=2",
                      headers=auth("auditor")).json
    assert body["count"] == 2 and {e["who"] for e in body["entries"]} == {"engineer-user"}
    refused = client.get("/api/analytics/audit?outcome=refused&path=/api/analytics/alerts",
                         headers=auth("auditor")).json["entries"]
    assert [e["who"] for e in refused] == ["executive-user"]
    none = client.get("/api/analytics/audit?since=2999-01-01T00:00:00Z",
                      headers=auth("auditor")).json
    assert none["count"] == 0
    text = client.application.extensions["pulse.audit"].path.read_text()
    assert not any(t in text for t in TOKENS.values())


@pytest.mark.parametrize("query,field", [("limit=0", "limit"), ("limit=x", "limit"),
                                         ("outcome=maybe", "outcome"), ("method=BREW", "method"),
                                         ("since=yesterday", "since"),
                                         ("since=2026-01-01T00:00:00", "since")])
def test_bad_filters_are_400_naming_the_field(client, query, field):
    resp = client.get(f"/api/analytics/audit?{query}", headers=auth("admin"))
    assert resp.status_code == 400
    assert resp.json["error"]["details"][0]["field"] == field


def test_auditor_tokens_must_expire():
    raw = {"bridge": {"tokens": [{"name": "ext", "role": "auditor", "token": "x" * 20}]},
           "privacy": {"salt": "s" * 32}}
    with pytest.raises(ConfigError) as err:
        validate(raw, "test", {})
    assert "bridge.tokens[0].expires" in str(err.value)
    with pytest.raises(ValueError):
        bridge_auth.TokenStore([{"name": "ext", "role": "auditor", "token": "x" * 20}])


def test_expr_needs_the_rules_expr_permission():
    assert bridge_auth.Principal("e", "engineer").can("rules:expr")
    assert bridge_auth.Principal("a", "admin").can("rules:expr")
    assert not bridge_auth.Principal("x", "auditor").can("rules:write")


def test_refusals_of_open_routes_are_audited_their_allowed_requests_are_not(tmp_path):
    from bridge import create_app
    from tests.bridge.conftest import bridge_config

    app = create_app(bridge_config(tmp_path, bridge={"webhook_token": "hook-token-0123456789"},
                                   prometheus={"url": "http://127.0.0.1:9"},
                                   alertmanager={"url": "http://127.0.0.1:9"}))
    client = app.test_client()
    client.get("/api/analytics/health")
    client.get("/api/openapi.json")
    client.get("/metrics")
    assert client.post("/hooks/alertmanager", json={},
                       headers={"Authorization": "Bearer wrong-token-0123"}).status_code == 401
    (record,) = app.extensions["pulse.audit"].read()
    assert (record["process"], record["method"], record["route"], record["outcome"]) == (
        "bridge", "POST", "/hooks/alertmanager", "refused")
    assert "wrong-token-0123" not in app.extensions["pulse.audit"].path.read_text()
