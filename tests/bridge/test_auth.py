"""Tokens, roles, permissions and the audit log."""

import pytest
from flask import Blueprint

from bridge import auth as bridge_auth
from bridge import create_app
from tests.bridge.conftest import TOKENS, auth, bridge_config

probe = Blueprint("probe", __name__)


@probe.get("/api/analytics/_probe/rules")
@bridge_auth.require("rules:write")
def needs_rules_write():
    """A view for the test."""
    return {"ok": True}


@pytest.fixture
def probe_client(tmp_path):
    app = create_app(bridge_config(tmp_path))
    app.register_blueprint(probe)
    return app, app.test_client()


def test_missing_token_is_401_json(probe_client):
    _, client = probe_client
    resp = client.get("/api/analytics/_probe/rules")
    assert resp.status_code == 401
    assert resp.json["error"]["code"] == "unauthorized"


def test_wrong_token_is_401(probe_client):
    _, client = probe_client
    resp = client.get("/api/analytics/_probe/rules", headers={"Authorization": "Bearer nope"})
    assert resp.status_code == 401


@pytest.mark.parametrize("role,status", [("admin", 200), ("engineer", 200), ("analyst", 403),
                                         ("executive", 403), ("coach", 403), ("auditor", 403)])
def test_role_permissions(probe_client, role, status):
    _, client = probe_client
    resp = client.get("/api/analytics/_probe/rules", headers=auth(role))
    assert resp.status_code == status
    if status == 403:
        assert "rules:write" in resp.json["error"]["message"]


def test_expired_token_is_refused():
    store = bridge_auth.TokenStore([{"name": "old", "role": "auditor", "token": "t" * 20,
                                     "expires": "2020-01-01T00:00:00Z"}])
    assert store.authenticate("t" * 20) is None


def test_audit_logs_every_api_request_without_tokens(probe_client):
    app, client = probe_client
    client.get("/api/analytics/_probe/rules", headers=auth("admin"))
    client.get("/api/analytics/_probe/rules", headers=auth("analyst"))
    client.get("/api/analytics/_probe/rules")
    entries = app.extensions["pulse.audit"].read()
    assert [(e["who"], e["status"], e["outcome"]) for e in entries] == [
        ("anonymous", 401, "refused"), ("analyst-user", 403, "refused"),
        ("admin-user", 200, "allowed")]
    text = app.extensions["pulse.audit"].path.read_text()
    assert not any(token in text for token in TOKENS.values())


def test_openapi_document_is_served(client):
    resp = client.get("/api/openapi.json")
    assert resp.status_code == 200
    assert resp.json["openapi"].startswith("3.")
    assert "/api/analytics/health" in resp.json["paths"]


def test_unknown_path_is_json_404(client):
    resp = client.get("/api/analytics/nope")
    assert resp.status_code == 404
    assert resp.json["error"]["code"] == "not_found"


def test_openapi_fragments_never_redefine_a_schema_and_document_401_403():
    from bridge.openapi import HERE, document

    doc = document()
    seen = {}
    import yaml

    for fragment in sorted(HERE.glob("*.yaml")):
        for name in (yaml.safe_load(fragment.read_text()).get("components") or {}).get(
                "schemas", {}):
            assert name not in seen or fragment.name == seen[name], (name, seen.get(name))
            seen[name] = fragment.name
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            if isinstance(op, dict) and op.get("security", doc["security"]) != []:
                assert {"401", "403"} <= set(op["responses"]), (method, path)
