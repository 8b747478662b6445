"""Grants and step-up tokens through the bridge API (the clock of the token store stopped)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from bridge.openapi import document
from pulse.grants import grants_path
from tests.bridge.conftest import TOKENS, auth
from tests.bridge.openapi_check import validate_response

GRANTS = "/api/analytics/access/grants"
STEP_UP = "/api/analytics/access/step-up"
AUDIT = "/api/analytics/audit"
WITHDRAW = "/api/analytics/privacy/withdraw"
RESEARCH = "/api/analytics/datasets/research"
NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
DOC = document()


class Clock:
    """A clock the test moves by hand (Unix seconds)."""

    def __init__(self, at: datetime):
        self.now = at.timestamp()

    def __call__(self) -> float:
        return self.now

    def advance(self, **delta) -> None:
        """Move the clock forward by a timedelta's arguments."""
        self.now += timedelta(**delta).total_seconds()


@pytest.fixture
def clock(app):
    """The app's token store on a clock stopped at NOW."""
    stopped = Clock(NOW)
    app.extensions["pulse.tokens"].clock = stopped
    return stopped


def stamp(at: datetime) -> str:
    return at.isoformat().replace("+00:00", "Z")


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def grant(client, role="auditor", subject="auditor-jane", ahead=timedelta(days=30), **extra):
    return client.post(GRANTS, json={"role": role, "subject": subject,
                                     "expiresAt": stamp(NOW + ahead), **extra},
                       headers=auth("admin"))


def test_a_grant_works_until_revoked_then_401_at_once(client, clock):
    made = grant(client)
    assert made.status_code == 201, made.json
    validate_response(DOC, "IssuedToken", made.json)
    body = made.json
    assert set(body) == {"id", "token", "role", "subject", "coachId", "scopes", "issuedAt",
                         "expiresAt"}
    assert body["role"] == "auditor" and body["subject"] == "auditor-jane"
    assert body["expiresAt"] == "2026-07-01T12:00:00.000Z"
    assert client.get(AUDIT, headers=bearer(body["token"])).status_code == 200
    # The role is the grant's: an auditor may not write rules.
    assert client.get(GRANTS, headers=bearer(body["token"])).status_code == 403

    revoked = client.delete(f"{GRANTS}/{body['id']}", headers=auth("admin"))
    assert revoked.status_code == 200 and revoked.json["status"] == "revoked"
    validate_response(DOC, "GrantInfo", revoked.json)
    refused = client.get(AUDIT, headers=bearer(body["token"]))
    assert refused.status_code == 401
    assert refused.json["error"]["code"] == "unauthorized"
    # Revoking twice changes nothing; an unknown id is a 404 naming it.
    again = client.delete(f"{GRANTS}/{body['id']}", headers=auth("admin"))
    assert again.status_code == 200 and again.json["revokedAt"] == revoked.json["revokedAt"]
    missing = client.delete(f"{GRANTS}/g-0000", headers=auth("admin"))
    assert missing.status_code == 404
    assert missing.json["error"]["details"] == [{"field": "id", "problem": "unknown grant"}]


def test_an_expired_grant_gets_401_without_a_restart(client, clock):
    token = grant(client, ahead=timedelta(minutes=5)).json["token"]
    clock.advance(minutes=4, seconds=59)
    assert client.get(AUDIT, headers=bearer(token)).status_code == 200
    clock.advance(seconds=1)
    assert client.get(AUDIT, headers=bearer(token)).status_code == 401
    listed = client.get(GRANTS, headers=auth("admin")).json["grants"]
    assert [g["status"] for g in listed] == ["expired"]


def test_the_list_and_the_file_hold_no_token(app, client, clock):
    made = grant(client).json
    grant(client, role="coach", subject="coach-9", coachId="coach-9")
    listed = client.get(GRANTS, headers=auth("admin"))
    assert listed.status_code == 200
    for item in listed.json["grants"]:
        validate_response(DOC, "GrantInfo", item)
    assert listed.json["count"] == 2
    assert {g["subject"] for g in listed.json["grants"]} == {"auditor-jane", "coach-9"}
    text = json.dumps(listed.json)
    assert made["token"] not in text and "hash" not in text
    stored = grants_path(app.config["PULSE"].data_dir)
    assert made["token"] not in stored.read_text()
    assert oct(stored.stat().st_mode & 0o777) == "0o600"
    # ...and the audit log never holds one either.
    log = (stored.parent.parent / "audit" / "audit.log").read_text()
    assert made["token"] not in log


def test_a_coach_grant_carries_its_coach(app, client, clock):
    made = grant(client, role="coach", subject="coach-9", coachId="coach-9").json
    assert made["coachId"] == "coach-9"
    principal = app.extensions["pulse.tokens"].authenticate(made["token"])
    assert (principal.role, principal.coach_id, principal.name) == ("coach", "coach-9",
                                                                    "coach-9")


@pytest.mark.parametrize("body,field,problem", [
    ({"subject": "x", "expiresAt": stamp(NOW + timedelta(days=1))}, "role", "is required"),
    ({"role": "boss", "subject": "x", "expiresAt": stamp(NOW + timedelta(days=1))}, "role",
     "one of admin, analyst, auditor, coach, engineer, executive"),
    ({"role": "auditor", "subject": "x", "expiresAt": stamp(NOW - timedelta(seconds=1))},
     "expiresAt", "must be in the future"),
    ({"role": "auditor", "subject": "x", "expiresAt": stamp(NOW + timedelta(days=90, seconds=1))},
     "expiresAt", "at most 90 days ahead"),
    ({"role": "auditor", "subject": "x", "expiresAt": "next tuesday"}, "expiresAt", None),
    ({"role": "auditor", "subject": "x", "expiresAt": "2026-07-01T12:00:00"}, "expiresAt", None),
    ({"role": "auditor", "subject": "a b", "expiresAt": stamp(NOW + timedelta(days=1))},
     "subject", None),
    ({"role": "coach", "subject": "c", "expiresAt": stamp(NOW + timedelta(days=1))},
     "coachId", None),
    ({"role": "auditor", "subject": "c", "coachId": "c", "expiresAt":
      stamp(NOW + timedelta(days=1))}, "coachId", None),
    ({"role": "auditor", "subject": "c", "expiresAt": stamp(NOW + timedelta(days=1)),
      "token": "mine"}, "token", None),
    ([], "body", None),
])
def test_bad_grants_name_the_field(client, clock, body, field, problem):
    resp = client.post(GRANTS, json=body, headers=auth("admin"))
    assert resp.status_code == 400, resp.json
    detail = resp.json["error"]["details"][0]
    assert detail["field"] == field
    if problem is not None:
        assert detail["problem"] == problem


def test_90_days_ahead_is_allowed(client, clock):
    assert grant(client, ahead=timedelta(days=90)).status_code == 201


def test_grants_are_for_admins(client, clock):
    for role in ("engineer", "analyst", "executive", "coach", "auditor"):
        resp = client.post(GRANTS, json={"role": "admin", "subject": "me",
                                         "expiresAt": stamp(NOW + timedelta(days=1))},
                           headers=auth(role))
        assert resp.status_code == 403
        assert resp.json["error"]["details"][0]["problem"] == "access:grants required"
        assert client.get(GRANTS, headers=auth(role)).status_code == 403
    assert client.get(GRANTS).status_code == 401


def test_a_grant_may_not_outlive_the_grant_that_makes_it(client, clock):
    admin = grant(client, role="admin", subject="consultant", ahead=timedelta(days=2)).json
    resp = client.post(GRANTS, json={"role": "engineer", "subject": "friend",
                                     "expiresAt": stamp(NOW + timedelta(days=3))},
                       headers=bearer(admin["token"]))
    assert resp.status_code == 400
    assert resp.json["error"]["details"][0]["field"] == "expiresAt"


def test_personal_data_needs_a_step_up_token(client, clock):
    for path, body, role in ((WITHDRAW, {"userId": "user-1"}, "admin"),
                             (RESEARCH, {}, "analyst")):
        refused = client.post(path, json=body, headers=auth(role))
        assert refused.status_code == 403
        detail = refused.json["error"]["details"][0]
        assert detail["field"] == "scope" and detail["problem"].startswith("personal_data")
        assert "personal_data" in refused.json["error"]["message"]

    stepped = client.post(STEP_UP, json={"reason": "ticket DPO-17: erasure request"},
                          headers=auth("admin"))
    assert stepped.status_code == 201, stepped.json
    validate_response(DOC, "IssuedToken", stepped.json)
    assert stepped.json["scopes"] == ["personal_data"] and stepped.json["role"] == "admin"
    assert stepped.json["subject"] == "admin-user"
    expires = datetime.fromisoformat(stepped.json["expiresAt"].replace("Z", "+00:00"))
    assert NOW < expires <= NOW + timedelta(hours=1)
    token = stepped.json["token"]
    assert client.post(WITHDRAW, json={"userId": "user-1"},
                       headers=bearer(token)).status_code == 200
    # The step-up token is the admin's own role, no more.
    assert client.get(AUDIT, headers=bearer(token)).status_code == 200


def test_the_step_up_reason_is_in_the_audit_log_and_the_token_is_not(app, client, clock):
    token = client.post(STEP_UP, json={"reason": "ticket DPO-17"},
                        headers=auth("admin")).json["token"]
    client.post(WITHDRAW, json={"userId": "user-1"}, headers=bearer(token))
    entries = client.get(AUDIT, query_string={"path": "/api/analytics/"},
                         headers=auth("admin")).json["entries"]
    asked = next(e for e in entries if e["path"] == STEP_UP)
    assert asked["reason"] == "ticket DPO-17" and asked["who"] == "admin-user"
    used = next(e for e in entries if e["path"] == WITHDRAW)
    assert used["grant"].startswith("g-") and used["outcome"] == "allowed"
    log = (grants_path(app.config["PULSE"].data_dir).parent.parent / "audit" / "audit.log")
    assert token not in log.read_text()


def test_a_step_up_older_than_one_hour_is_refused(app, client, clock):
    token = client.post(STEP_UP, json={"reason": "r", "expiresAt": stamp(NOW + timedelta(hours=1))},
                        headers=auth("admin")).json["token"]
    clock.advance(minutes=59)
    assert client.post(WITHDRAW, json={"userId": "u"}, headers=bearer(token)).status_code == 200
    clock.advance(minutes=1, seconds=1)
    assert client.post(WITHDRAW, json={"userId": "u"}, headers=bearer(token)).status_code == 401

    # A scoped token issued over an hour ago that has not expired (a clock set back, a file
    # edited by hand) is refused by its age, naming the scope.
    stored = grants_path(app.config["PULSE"].data_dir)
    doc = json.loads(stored.read_text())
    fresh = client.post(STEP_UP, json={"reason": "r"}, headers=auth("admin")).json
    doc = json.loads(stored.read_text())
    for record in doc["grants"]:
        if record["id"] == fresh["id"]:
            record["issued_at"] -= 3601
    stored.write_text(json.dumps(doc))
    old = client.post(WITHDRAW, json={"userId": "u"}, headers=bearer(fresh["token"]))
    assert old.status_code == 403
    assert old.json["error"]["details"][0]["field"] == "scope"
    assert "issued too long ago" in old.json["error"]["message"]


@pytest.mark.parametrize("body,field", [
    ({}, "reason"), ({"reason": ""}, "reason"), ({"reason": "   "}, "reason"),
    ({"reason": "x" * 501}, "reason"), ({"reason": "r", "expiresAt": "soon"}, "expiresAt"),
    ({"reason": "r", "scopes": ["all"]}, "scopes")])
def test_bad_step_ups_name_the_field(client, clock, body, field):
    resp = client.post(STEP_UP, json=body, headers=auth("admin"))
    assert resp.status_code == 400
    assert resp.json["error"]["details"][0]["field"] == field


def test_a_step_up_is_at_most_an_hour(client, clock):
    resp = client.post(STEP_UP, json={"reason": "r",
                                      "expiresAt": stamp(NOW + timedelta(hours=1, seconds=1))},
                       headers=auth("admin"))
    assert resp.status_code == 400
    assert resp.json["error"]["details"][0] == {"field": "expiresAt",
                                                "problem": "at most 60 minutes ahead"}


def test_step_up_keeps_the_role_of_the_caller(client, clock):
    for role in ("engineer", "executive", "coach", "auditor"):
        resp = client.post(STEP_UP, json={"reason": "r"}, headers=auth(role))
        assert resp.status_code == 403, role
    analyst = client.post(STEP_UP, json={"reason": "study"}, headers=auth("analyst")).json
    assert analyst["role"] == "analyst"
    headers = bearer(analyst["token"])
    assert client.post(RESEARCH, json={}, headers=headers).status_code == 201
    # personal_data does not add a permission: an analyst still may not withdraw consent.
    refused = client.post(WITHDRAW, json={"userId": "u"}, headers=headers)
    assert refused.status_code == 403
    assert refused.json["error"]["details"][0]["problem"] == "privacy:withdraw required"


def test_the_static_tokens_keep_working(client, clock):
    assert client.get(AUDIT, headers=auth("auditor")).status_code == 200
    assert TOKENS["admin"] not in json.dumps(client.get(GRANTS, headers=auth("admin")).json)
