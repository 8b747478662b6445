"""The intake's requests in the one audit chain: refusals (a bad write key, a token without
the dead-letter permission) and allowed dead-letter reads; accepted ingest is not recorded."""

from __future__ import annotations

import base64

from exporters.events.examples import example_event
from pulse.audit import AuditLog, audit_log_path, verify
from tests.exporters.events.conftest import TOKENS

KEY = "wk_audited_0123"
SOURCE = {"name": "app", "write_key": KEY, "platform": "ios"}


def basic(key: str) -> dict:
    return {"Authorization": "Basic " + base64.b64encode(f"{key}:".encode()).decode()}


def test_refusals_and_guarded_reads_are_audited_accepted_ingest_is_not(make_intake):
    intake = make_intake(sources=[SOURCE])
    client = intake.client
    batch = {"events": [example_event("session_start")],
             "clientTimestamp": "2026-11-25T10:00:00Z"}
    assert client.post("/api/analytics/events", json=batch, headers=basic(KEY)).status_code \
        == 200
    assert client.post("/api/analytics/events", json=batch,
                       headers=basic("wk_wrong_0123")).status_code == 401
    assert client.post("/v1/batch", json={"batch": [], "writeKey": "wk_wrong_0123"}
                       ).status_code == 401
    assert intake.dead_letters(role="analyst").status_code == 403
    assert intake.dead_letters(role="admin").status_code == 200
    log = audit_log_path(intake.data_dir)
    records = AuditLog(log).read()
    assert [(r["who"], r["role"], r["method"], r["route"], r["status"], r["outcome"],
             r.get("cause")) for r in records] == [
        ("admin", "admin", "GET", "/api/analytics/events/rejected", 200, "allowed", None),
        ("analyst", "analyst", "GET", "/api/analytics/events/rejected", 403, "refused",
         "forbidden"),
        ("unknown-write-key", None, "POST", "/v1/batch", 401, "refused", "unauthorized"),
        ("unknown-write-key", None, "POST", "/api/analytics/events", 401, "refused",
         "unauthorized")]
    assert {r["process"] for r in records} == {"exporters.events"}
    assert records[1]["permission"] == "events:dead_letters"
    text = log.read_text()
    assert not any(secret in text for secret in (KEY, "wk_wrong_0123", *TOKENS.values()))
    assert verify(log) == (4, None)
