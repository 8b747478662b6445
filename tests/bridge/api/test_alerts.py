"""GET /api/analytics/alerts without its backends, permissions, and the OpenAPI fragment."""

from bridge.openapi import document
from tests.bridge.conftest import auth


def test_overview_needs_alerts_read(client):
    assert client.get("/api/analytics/alerts").status_code == 401
    assert client.get("/api/analytics/alerts", headers=auth("coach")).status_code == 403


def test_overview_is_503_naming_alertmanager_when_it_is_down(client):
    resp = client.get("/api/analytics/alerts", headers=auth("analyst"))
    assert resp.status_code == 503
    assert "Alertmanager" in resp.json["error"]["message"]


def test_overview_limit_is_validated(client):
    resp = client.get("/api/analytics/alerts?limit=0", headers=auth("analyst"))
    assert resp.status_code == 400
    assert resp.json["error"]["details"][0]["field"] == "limit"


def test_incident_status_is_validated(client):
    resp = client.get("/api/analytics/alerts/incidents?status=x", headers=auth("analyst"))
    assert resp.status_code == 400


def test_every_delivery_route_is_documented(app):
    paths = document()["paths"]
    for rule in app.url_map.iter_rules():
        path = rule.rule.replace("<iid>", "{id}")
        if rule.endpoint.split(".")[0] in ("hooks", "alerts_overview", "runbooks"):
            assert path in paths, path
            for method in rule.methods - {"HEAD", "OPTIONS"}:
                assert method.lower() in paths[path], (path, method)
