"""The ingest endpoints: checksums, gzip, limits, consent, PII, idempotency, dead letters."""

from __future__ import annotations

import gzip
import hashlib
import json

import orjson
import pytest

from exporters.events.examples import example_event
from exporters.events.intake import canonical_json

BATCH = "/api/analytics/events/batch"


def checksum(event) -> str:
    return hashlib.sha256(canonical_json(event)).hexdigest()


def post_raw(intake, data: bytes, path="/api/analytics/events", **headers):
    headers.setdefault("Content-Type", "application/json")
    return intake.client.post(path, data=data, headers=headers)


def events_doc(events, **extra) -> bytes:
    return json.dumps({"events": events, "clientTimestamp": "2026-11-25T10:00:00Z",
                       **extra}).encode()


def test_a_batch_is_accepted_counted_and_answered_with_its_batch_id(intake):
    resp = intake.post([example_event("workout_start") for _ in range(3)], batchId="b-1")
    assert resp.status_code == 200
    assert resp.get_json() == {"accepted": 3, "rejected": 0, "errors": [], "batchId": "b-1"}
    assert intake.value("fitness_workouts_started_total", platform="ios",
                        workout_type="strength") == 3
    assert intake.value("pulse_events_received_total") == 3
    assert intake.value("pulse_events_accepted_total") == 3


def test_a_batch_id_is_generated_when_absent(intake):
    body = intake.post([example_event("session_start")]).get_json()
    assert len(body["batchId"]) == 36


def test_batch_endpoint_checks_each_checksum(intake):
    good, bad = example_event("session_start"), example_event("session_start")
    resp = intake.post([good, bad], path=BATCH, checksums=[checksum(good), "0" * 64])
    body = resp.get_json()
    assert resp.status_code == 200
    assert body["accepted"] == 1 and body["rejected"] == 1
    assert body["errors"] == [{"index": 1, "field": "event", "code": "checksum_mismatch",
                               "message": "checksums[i] is not the SHA-256 of the event's "
                                          "canonical JSON"}]
    assert intake.value("pulse_events_rejected_total", reason="checksum_mismatch") == 1
    assert intake.value("fitness_sessions_total", platform="ios") == 1


def test_checksum_accepts_python_json_number_spelling(intake):
    event = example_event("client_api_request", value=0.00001)
    text = json.dumps(event, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert "1e-05" in text
    digest = hashlib.sha256(text.encode()).hexdigest()
    assert intake.post([event], path=BATCH, checksums=[digest]).get_json()["accepted"] == 1


def test_gzip_bodies_are_accepted_on_both_endpoints(intake):
    event = example_event("session_start")
    data = gzip.compress(json.dumps({"events": [event], "compressionType": "gzip",
                                     "checksums": [checksum(event)]}).encode())
    resp = post_raw(intake, data, BATCH, **{"Content-Encoding": "gzip"})
    assert resp.status_code == 200 and resp.get_json()["accepted"] == 1
    resp = post_raw(intake, gzip.compress(events_doc([example_event("session_start")])),
                    **{"Content-Encoding": "gzip"})
    assert resp.get_json()["accepted"] == 1


@pytest.mark.parametrize(("data", "headers", "code", "field"), [
    (b"{not json", {}, "invalid_json", "body"),
    (b"\xff\xfe", {}, "invalid_json", "body"),
    (b"", {}, "invalid_json", "body"),
    (b"[1, 2]", {}, "invalid_request", "body"),
    (b'{"events": {}}', {}, "invalid_request", "events"),
    (b'{"events": []}', {}, "invalid_request", "clientTimestamp"),
    (b'{"events": [], "clientTimestamp": "x", "batchId": 5}', {}, "invalid_request", "batchId"),
    (b"not gzip", {"Content-Encoding": "gzip"}, "invalid_gzip", "body"),
    (gzip.compress(b'{"events": []}', mtime=0)[:-6], {"Content-Encoding": "gzip"},
     "invalid_gzip", "body"),
    (b"{}", {"Content-Encoding": "br"}, "unsupported_content_encoding", "Content-Encoding"),
    (b"{}", {"Content-Type": "application/xml"}, "unsupported_content_type", "Content-Type"),
    (b'{"events": [1], "clientTimestamp": 1, "x": NaN}', {}, "invalid_json", "body"),
    (rb'{"events": [{"id": "\ud800"}], "clientTimestamp": "x"}', {}, "invalid_json", "body"),
    (rb'{"events": [], "batchId": "\udfff", "clientTimestamp": "x"}', {}, "invalid_json",
     "body"),
])
def test_malformed_requests_get_400_naming_the_problem(intake, data, headers, code, field):
    resp = post_raw(intake, data, **headers)
    assert resp.status_code == 400, resp.data
    error = resp.get_json()["error"]
    assert error["code"] == code
    assert error["details"][0]["field"] == field
    assert error["message"]


def test_batch_endpoint_requires_one_checksum_per_event(intake):
    resp = intake.post([example_event("session_start")], path=BATCH, checksums=[])
    assert resp.status_code == 400
    assert resp.get_json()["error"]["details"][0]["field"] == "checksums"
    resp = intake.post([], path=BATCH, checksums=[], compressionType="zip")
    assert resp.get_json()["error"]["details"][0]["field"] == "compressionType"


def test_big_integers_are_valid_json_and_handled(intake):
    data = b'{"events": [{"id": 123456789012345678901234567890}], "clientTimestamp": "x"}'
    resp = post_raw(intake, data)
    assert resp.status_code == 200
    assert resp.get_json()["rejected"] == 1


def test_wrong_method_gets_405(intake):
    assert intake.client.get("/api/analytics/events").status_code == 405


@pytest.mark.parametrize(("section", "build", "limit"), [
    ({"max_body_bytes": 2048}, lambda: events_doc([example_event("session_start")] * 10),
     "max_body_bytes"),
    ({"max_events_per_batch": 2}, lambda: events_doc([example_event("session_start")] * 3),
     "max_events_per_batch"),
    ({"max_event_bytes": 1024},
     lambda: events_doc([example_event("session_start", properties={"x": "y" * 2000})]),
     "max_event_bytes"),
    ({"max_properties_depth": 2},
     lambda: events_doc([example_event("session_start", properties={"a": {"b": {"c": 1}}})]),
     "max_properties_depth"),
])
def test_limits_answer_413_naming_the_limit_and_count_nothing(make_intake, section, build,
                                                                limit):
    app = make_intake(**section)
    resp = post_raw(app, build())
    assert resp.status_code == 413
    error = resp.get_json()["error"]
    assert error["limit"] == limit and limit in error["message"]
    assert app.value("pulse_events_received_total") == 0
    assert app.value("pulse_ingest_requests_rejected_total", reason=error["code"]) == 1


def test_a_gzip_bomb_is_refused_with_413(make_intake):
    app = make_intake(max_body_bytes=4096)
    bomb = gzip.compress(b'{"events": [], "pad": "' + b" " * 200_000 + b'"}')
    assert len(bomb) < 4096
    resp = post_raw(app, bomb, **{"Content-Encoding": "gzip"})
    assert resp.status_code == 413
    assert resp.get_json()["error"]["limit"] == "max_body_bytes"


def test_no_consent_is_counted_only_and_stored_nowhere(intake):
    event = example_event("session_start", userId="u-secret-42")
    event["privacyFlags"]["canTrack"] = False
    body = intake.post([event, example_event("session_start")]).get_json()
    assert body["accepted"] == 1 and body["rejected"] == 1
    assert body["errors"][0]["code"] == "no_consent"
    assert intake.value("pulse_events_rejected_total", reason="no_consent") == 1
    assert intake.value("fitness_sessions_total", platform="ios") == 1
    assert intake.client.get("/api/analytics/events/rejected").get_json()["count"] == 0
    stored = b"".join(p.read_bytes() for p in intake.data_dir.rglob("*") if p.is_file())
    assert b"u-secret-42" not in stored and event["id"].encode() not in stored


def test_pii_and_identifiers_never_become_label_values(intake):
    events = [
        example_event("experiment_exposure", userId="jane@example.com",
                      properties={"experiment": "jane@example.com", "variant": "a"}),
        example_event("experiment_exposure",
                      properties={"experiment": "5551234567890", "variant": "b"}),
        example_event("experiment_exposure",
                      properties={"experiment": "4111-1111-1111-1111", "variant": "c"}),
        example_event("client_api_request", sessionId="s-sensitive",
                      properties={"endpoint": "/api/users/jane@example.com"}),
    ]
    assert intake.post(events).get_json()["accepted"] == 4
    text = intake.client.get("/metrics").get_data(as_text=True)
    for secret in ("jane", "555123", "4111", "s-sensitive", "u-10293"):
        assert secret not in text
    assert intake.value("ai_experiment_exposures_total", experiment="other", variant="a") == 1
    assert intake.value("ai_experiment_exposures_total", experiment="other", variant="b") == 1


def test_a_retried_batch_returns_the_original_response_and_counts_nothing(intake):
    events = [example_event("workout_complete"), {"id": "broken"}]
    first = intake.post(events, batchId="retry-1").get_json()
    again = intake.post(events, batchId="retry-1")
    assert again.status_code == 200 and again.get_json() == first
    assert intake.value("fitness_workouts_completed_total", platform="ios",
                        workout_type="strength") == 1
    assert intake.value("pulse_events_received_total") == 2
    assert intake.value("pulse_events_rejected_total", reason="invalid") == 1
    assert len(intake.client.get("/api/analytics/events/rejected").get_json()["rejected"]) == 1


def test_a_repeated_event_id_is_acknowledged_but_not_counted_twice(intake):
    event = example_event("nutrition_log")
    assert intake.post([event, event]).get_json()["accepted"] == 2
    assert intake.post([event]).get_json()["accepted"] == 1
    assert intake.value("fitness_nutrition_logs_total", platform="ios", meal="lunch") == 1
    assert intake.value("pulse_events_duplicates_total") == 2
    assert intake.value("pulse_events_accepted_total") == 1


def test_dead_letters_keep_reason_error_and_no_user_id(make_intake):
    app = make_intake(dead_letter_max=3)
    for i in range(5):
        app.post([example_event("session_start", userId="u-77", timestamp=f"bad-{i}")],
                 batchId=f"dl-{i}")
    resp = app.client.get("/api/analytics/events/rejected?limit=2").get_json()
    assert resp["count"] == 2 and resp["kept"] == 3
    newest = resp["rejected"][0]
    assert newest["batchId"] == "dl-4" and newest["reason"] == "invalid"
    assert newest["error"]["field"] == "timestamp"
    assert newest["event"]["userId"] == "<redacted>"
    assert app.value("pulse_events_dead_letters") == 3


@pytest.mark.parametrize("limit", ["0", "abc", "100000", "-1"])
def test_dead_letter_limit_is_validated(intake, limit):
    resp = intake.client.get(f"/api/analytics/events/rejected?limit={limit}")
    assert resp.status_code == 400
    assert resp.get_json()["error"]["details"][0]["field"] == "limit"


def test_sinks_get_consented_new_events_after_they_are_durable(intake):
    seen = []

    class Profiler:
        requires_profile_consent = True

        def consume(self, events, batch_id):
            on_disk = b"".join(p.read_bytes() for p in intake.data_dir.glob("events/log-*"))
            seen.append((batch_id, [e["id"] for e in events], batch_id.encode() in on_disk))

    class Broken:
        requires_profile_consent = False

        def consume(self, events, batch_id):
            raise RuntimeError("boom")

    intake.intake.add_sink(Profiler())
    intake.intake.add_sink(Broken())
    keep, no_profile = example_event("session_start"), example_event("session_start")
    no_profile["privacyFlags"]["canProfile"] = False
    assert intake.post([keep, no_profile], batchId="s-1").status_code == 200
    assert intake.post([keep], batchId="s-2").status_code == 200  # a duplicate: not again
    assert seen == [("s-1", [keep["id"]], True)]


def test_responses_are_json_with_content_length(intake):
    resp = intake.post([example_event("session_start")])
    assert resp.headers["Content-Type"] == "application/json"
    assert int(resp.headers["Content-Length"]) == len(resp.data)
    assert orjson.loads(resp.data)["accepted"] == 1
