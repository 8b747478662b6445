"""The Segment-compatible /v1/* endpoints, write keys, rate limits and CORS (in process)."""

from __future__ import annotations

import base64
import gzip
import json
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from exporters.events.examples import EXAMPLES, example_event
from exporters.events.mapping import load_mapping
from exporters.events.segment import Refused, Translator, corrected_time, load_table
from exporters.events.sources import Source, TokenBucket
from pulse.rfc3339 import parse_time

WEB = {"name": "web", "write_key": "wk_web_0123", "platform": "web",
       "cors_origins": ["https://app.fit.example"]}
IOS = {"name": "ios", "write_key": "wk_ios_0123", "platform": "ios",
       "consent": {"canTrack": True, "canProfile": True}}
SLOW = {"name": "slow", "write_key": "wk_slow_0123", "platform": "android",
        "rate_limit": "2/s"}
SOURCE = Source("web", "web", True, False, frozenset())
RECEIVED = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


def auth(key: str) -> dict:
    return {"Authorization": "Basic " + base64.b64encode(f"{key}:".encode()).decode()}


def track(event="Workout Completed", **extra) -> dict:
    msg = {"type": "track", "event": event, "userId": "u-1", "messageId": str(uuid.uuid4()),
           "properties": {"workoutType": "strength", "duration": 1800},
           "timestamp": "2026-11-25T11:59:00.000Z",
           "context": {"device": {"type": "ios", "model": "iPhone15,2"},
                       "os": {"name": "iOS", "version": "18.1"}, "app": {"version": "4.12.0"}}}
    msg.update(extra)
    return msg


@pytest.fixture
def seg(make_intake):
    return make_intake(sources=[WEB, IOS, SLOW])


def post(intake, path, doc, key="wk_ios_0123", headers=None, raw=None):
    hdrs = {"Content-Type": "application/json", **(auth(key) if key else {}), **(headers or {})}
    data = raw if raw is not None else json.dumps(doc).encode()
    return intake.client.post(path, data=data, headers=hdrs)


# ---- translation -----------------------------------------------------------------------------

def test_the_default_table_covers_every_rule_of_the_default_mapping():
    table = load_table()
    translator = Translator(table)
    mapping = load_mapping(None, ())
    by_fields = {(r.event_type, r.category, r.action): name for name, r in table.track.items()}
    for rule, (metric, fields) in EXAMPLES.items():
        key = (fields["eventType"], fields["category"], fields["action"])
        assert key in by_fields, f"no Segment event name translates to the rule {rule}"
        msg = track(by_fields[key], properties=dict(fields["properties"]))
        if "value" in fields:
            path = table.track[by_fields[key]].value or ("properties", "value")
            msg.setdefault(path[0], {})[path[1]] = fields["value"]
        event = translator.translate(msg, {}, SOURCE, RECEIVED)
        assert metric in {m for m, _, _ in mapping.observe(event)}, rule


def test_workout_completed_becomes_workout_complete_with_its_properties():
    event = Translator(load_table()).translate(track(), {}, SOURCE, RECEIVED)
    assert (event["eventType"], event["category"], event["action"]) == (
        "user_action", "workout", "complete")
    assert event["value"] == 1800 and event["properties"]["workoutType"] == "strength"
    assert event["deviceInfo"] == {"platform": "ios", "appVersion": "4.12.0",
                                   "osVersion": "18.1", "deviceModel": "iPhone15,2"}
    assert event["userId"] == "u-1" and event["sessionId"] == "u-1"
    assert event["label"] == "Workout Completed"


def test_an_unlisted_event_is_translated_by_object_action_naming():
    event = Translator(load_table()).translate(track("Playlist Song Skipped"), {}, SOURCE,
                                               RECEIVED)
    assert (event["category"], event["action"]) == ("playlist_song", "skipped")
    event = Translator(load_table()).translate(track("Coach Chat Opened"), {}, SOURCE,
                                               RECEIVED)
    assert (event["category"], event["action"]) == ("coach_chat", "open")


def test_platform_from_context_else_the_source():
    translator = Translator(load_table())
    ctx = {"os": {"name": "Android", "version": "14"}}
    assert translator.translate(track(context=ctx), {}, SOURCE, RECEIVED)[
        "deviceInfo"]["platform"] == "android"
    ios_source = Source("ios", "ios", True, False, frozenset())
    event = translator.translate(track(context={}), {}, ios_source, RECEIVED)
    assert event["deviceInfo"] == {"platform": "ios", "appVersion": "unknown",
                                   "osVersion": "unknown"}
    web = translator.translate(track(context={"userAgent": "Mozilla/5.0"}), {}, ios_source,
                               RECEIVED)
    assert web["deviceInfo"]["platform"] == "web"


def test_consent_from_the_context_field_else_the_source_default():
    translator = Translator(load_table())
    flags = translator.translate(track(), {}, SOURCE, RECEIVED)["privacyFlags"]
    assert flags == {"canTrack": True, "canProfile": False, "canShare": False,
                     "consentDate": "2026-11-25T12:00:00.000Z", "consentVersion": "source:web"}
    msg = track(context={"consent": {"canTrack": True, "canProfile": True}})
    assert translator.translate(msg, {}, SOURCE, RECEIVED)["privacyFlags"]["canProfile"]
    other = Translator(load_table(), "properties.privacy")
    msg = track(properties={"privacy": {"canTrack": False}})
    assert other.translate(msg, {}, SOURCE, RECEIVED)["privacyFlags"]["canTrack"] is False


def test_identify_traits_are_never_kept():
    msg = {"type": "identify", "userId": "u-1", "traits": {"email": "a@b.example"}}
    event = Translator(load_table()).translate(msg, {}, SOURCE, RECEIVED)
    assert event["properties"] == {}
    assert (event["category"], event["action"]) == ("identity", "identify")


@pytest.mark.parametrize(("msg", "field", "code"), [
    ({"type": "track", "userId": "u"}, "event", "missing_field"),
    ({"type": "track", "event": "X Y"}, "userId", "missing_field"),
    ({"type": "wave", "userId": "u"}, "type", "invalid_value"),
    ({"userId": "u"}, "type", "missing_field"),
    ({"type": "page", "userId": "u", "messageId": "m" * 129}, "messageId", "invalid_value"),
    ({"type": "page", "userId": "u", "messageId": 7}, "messageId", "invalid_type"),
    ("text", "message", "invalid_type"),
])
def test_untranslatable_messages_are_refused_naming_the_field(msg, field, code):
    out = Translator(load_table()).translate(msg, {}, SOURCE, RECEIVED)
    assert isinstance(out, Refused) and (out.field, out.code) == (field, code)


def test_a_message_without_message_id_gets_a_stable_digest_ignoring_sent_at():
    translator = Translator(load_table())
    msg = {"type": "page", "userId": "u", "name": "Home"}
    first = translator.translate({**msg, "sentAt": "2026-11-25T11:00:00Z"}, {}, SOURCE, RECEIVED)
    again = translator.translate({**msg, "sentAt": "2026-11-25T11:05:00Z"}, {}, SOURCE, RECEIVED)
    assert first["id"] == again["id"] and first["id"].startswith("sha256:")


# ---- the clock -------------------------------------------------------------------------------

def test_clock_correction_cancels_a_device_clock_an_hour_ahead():
    # The device clock is 1 h fast: it says the event happened at 13:00 and was sent at 13:01.
    msg = {"timestamp": "2026-11-25T13:00:00Z"}
    stamp = corrected_time(msg, {"sentAt": "2026-11-25T13:01:00Z"}, RECEIVED)
    assert stamp == RECEIVED - timedelta(minutes=1)


def test_an_event_kept_offline_for_a_day_keeps_its_own_time():
    msg = {"originalTimestamp": "2026-11-24T12:00:00Z", "timestamp": "2026-11-25T11:00:00Z",
           "sentAt": "2026-11-25T12:00:00Z"}
    assert corrected_time(msg, {}, RECEIVED) == RECEIVED - timedelta(days=1)


def test_without_sent_at_the_time_is_used_and_never_after_receipt():
    assert corrected_time({"timestamp": "2026-11-25T11:00:00Z"}, {}, RECEIVED) == (
        RECEIVED - timedelta(hours=1))
    assert corrected_time({"timestamp": "2027-01-01T00:00:00Z"}, {}, RECEIVED) == RECEIVED
    assert corrected_time({"timestamp": "yesterday"}, {}, RECEIVED) == RECEIVED
    # Found by schemathesis: a skew that would leave the calendar.
    assert corrected_time({"originalTimestamp": "0810-04-03T11:29:28-08:09",
                           "sentAt": "2978-11-12T05:08:23+22:04"}, {}, RECEIVED) == RECEIVED


@pytest.mark.parametrize(("text", "ok"), [
    ("2026-11-25t10:00:00z", True), ("2016-12-31T23:59:60Z", True),
    ("2026-11-25T10:00:00.123456789Z", True), ("2026-11-25", False),
    ("2026-11-25T10:00:00", False), ("soon", False), (17, False),
])
def test_rfc3339_parsing_of_the_corners(text, ok):
    assert (parse_time(text) is not None) is ok


def test_token_bucket_lets_a_request_overdraw_then_waits():
    now = [0.0]
    bucket = TokenBucket(2.0, 2.0, clock=lambda: now[0])
    assert bucket.take(10) == 0
    assert bucket.take(1) > 0
    now[0] += 5
    assert bucket.take(1) == 0


# ---- the endpoints ---------------------------------------------------------------------------

def test_batch_is_translated_counted_and_answered_as_segment_does(seg):
    batch = [track() for _ in range(3)] + [
        {"type": "identify", "userId": "u-1", "messageId": str(uuid.uuid4())},
        {"type": "page", "anonymousId": "a-1", "name": "Home", "messageId": str(uuid.uuid4())},
        {"type": "screen", "userId": None, "anonymousId": "a-1", "name": "Today",
         "messageId": str(uuid.uuid4())}]
    resp = post(seg, "/v1/batch", {"batch": batch, "sentAt": "2026-11-25T11:59:00Z"})
    assert resp.status_code == 200 and resp.get_json() == {"success": True}
    assert seg.value("fitness_workouts_completed_total", platform="ios",
                     workout_type="strength") == 3
    assert seg.value("pulse_events_accepted_total") == 6


def test_a_resent_batch_and_regrouped_messages_are_not_counted_twice(seg):
    batch = [track() for _ in range(4)]
    assert post(seg, "/v1/batch", {"batch": batch}).status_code == 200
    assert post(seg, "/v1/batch", {"batch": batch}).status_code == 200
    assert post(seg, "/v1/batch", {"batch": batch[2:] + [track()]}).status_code == 200
    assert seg.value("fitness_workouts_completed_total", platform="ios",
                     workout_type="strength") == 5
    assert seg.value("pulse_events_duplicates_total") == 2


@pytest.mark.parametrize("path", ["/v1/track", "/v1/t"])
def test_single_message_endpoints_take_their_type_from_the_path(seg, path):
    msg = track()
    del msg["type"]
    assert post(seg, path, msg).get_json() == {"success": True}
    assert seg.value("pulse_events_accepted_total") == 1


def test_invalid_messages_in_a_batch_are_dead_lettered_but_answered_200(seg):
    batch = [track(), {"type": "track", "userId": "u-9", "traits": {"email": "x@y.example"}}]
    resp = post(seg, "/v1/b", {"batch": batch})
    assert resp.status_code == 200
    assert seg.value("pulse_events_accepted_total") == 1
    assert seg.value("pulse_events_rejected_total", reason="invalid") == 1
    (letter,) = seg.client.get("/api/analytics/events/rejected").get_json()["rejected"]
    assert letter["error"]["field"] == "event"
    assert "x@y.example" not in json.dumps(letter) and "u-9" not in json.dumps(letter)


def test_write_key_in_basic_auth_or_in_the_body_else_401(seg):
    assert post(seg, "/v1/batch", {"batch": [track()]}, key=None).status_code == 401
    assert post(seg, "/v1/batch", {"batch": [track()]}, key="wrong-key-0").status_code == 401
    resp = post(seg, "/v1/batch", {"batch": [track()], "writeKey": "wk_ios_0123"}, key=None)
    assert resp.status_code == 200
    body = post(seg, "/v1/batch", {"batch": [track()], "writeKey": "nope"}, key=None)
    assert body.status_code == 401 and body.get_json()["success"] is False
    assert "wk_" not in body.get_data(as_text=True)
    assert seg.value("pulse_events_accepted_total") == 1
    assert seg.value("pulse_ingest_requests_rejected_total", reason="unauthorized") == 3


@pytest.mark.parametrize(("raw", "code", "field"), [
    (b"{nope", "invalid_json", "body"),
    (b'{"batch": {}}', "invalid_request", "batch"),
    (b"[]", "invalid_request", "body"),
    (json.dumps({"batch": [track(properties={"x": "y" * 33000})]}).encode(),
     "event_too_large", "batch[0]"),
    (json.dumps({"batch": [track(properties={"x": "y" * 30000}) for _ in range(18)]}).encode(),
     "payload_too_large", "body"),
])
def test_segment_limits_and_malformed_bodies_get_400_with_a_message(seg, raw, code, field):
    resp = post(seg, "/v1/batch", None, raw=raw)
    assert resp.status_code == 400
    body = resp.get_json()
    assert body["success"] is False and body["code"] == code and body["field"] == field
    assert body["message"]
    assert seg.value("pulse_events_received_total") == 0


def test_gzip_and_text_plain_bodies_are_accepted(seg):
    data = gzip.compress(json.dumps({"batch": [track()]}).encode())
    resp = post(seg, "/v1/batch", None, raw=data, headers={"Content-Encoding": "gzip"})
    assert resp.status_code == 200
    beacon = json.dumps({"batch": [track()], "writeKey": "wk_ios_0123"}).encode()
    resp = post(seg, "/v1/batch", None, key=None, raw=beacon,
                headers={"Content-Type": "text/plain;charset=UTF-8"})
    assert resp.status_code == 200
    assert seg.value("pulse_events_accepted_total") == 2


def test_a_source_over_its_rate_limit_gets_429_with_retry_after(seg):
    assert post(seg, "/v1/batch", {"batch": [track()] * 3}, key="wk_slow_0123"
                ).status_code == 200
    resp = post(seg, "/v1/batch", {"batch": [track()]}, key="wk_slow_0123")
    assert resp.status_code == 429
    assert int(resp.headers["Retry-After"]) >= 1 and "X-RateLimit-Reset" in resp.headers
    assert seg.value("pulse_ingest_requests_rejected_total", reason="rate_limited") == 1
    # Other sources are not affected.
    assert post(seg, "/v1/batch", {"batch": [track()]}).status_code == 200


# ---- CORS -----------------------------------------------------------------------------------

@pytest.mark.parametrize("path", ["/v1/batch", "/v1/t", "/api/analytics/events"])
def test_preflight_for_an_allowed_origin_only(seg, path):
    ok = seg.client.options(path, headers={
        "Origin": "https://app.fit.example", "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization,content-type"})
    assert ok.status_code == 204
    assert ok.headers["Access-Control-Allow-Origin"] == "https://app.fit.example"
    assert "Authorization" in ok.headers["Access-Control-Allow-Headers"]
    assert "Access-Control-Allow-Credentials" not in ok.headers
    bad = seg.client.options(path, headers={"Origin": "https://evil.example",
                                            "Access-Control-Request-Method": "POST"})
    assert bad.status_code == 403 and "Access-Control-Allow-Origin" not in bad.headers


def test_a_post_from_a_disallowed_origin_is_refused_and_counts_nothing(seg):
    web = {"Origin": "https://app.fit.example"}
    resp = post(seg, "/v1/batch", {"batch": [track()]}, key="wk_web_0123", headers=web)
    assert resp.status_code == 200
    assert resp.headers["Access-Control-Allow-Origin"] == "https://app.fit.example"
    evil = {"Origin": "https://evil.example", "Content-Type": "text/plain"}
    assert post(seg, "/v1/batch", {"batch": [track()], "writeKey": "wk_web_0123"}, key=None,
                headers=evil).status_code == 403
    # The key of a source without that origin does not help either.
    assert post(seg, "/v1/batch", {"batch": [track()]}, headers=web).status_code == 403
    seed = seg.client.post("/api/analytics/events", headers=evil, data=json.dumps(
        {"events": [example_event("session_start")], "clientTimestamp": "2026-11-25T10:00:00Z"}))
    assert seed.status_code == 403
    assert seg.value("pulse_events_received_total") == 1
    assert seg.value("pulse_ingest_requests_rejected_total", reason="origin_not_allowed") == 3


def test_seed_endpoints_take_an_optional_key_and_answer_cors(seg):
    doc = {"events": [example_event("session_start")], "clientTimestamp": "2026-11-25T10:00Z"}
    resp = seg.client.post("/api/analytics/events", data=json.dumps(doc), headers={
        "Content-Type": "text/plain", "Origin": "https://app.fit.example"})
    assert resp.status_code == 200 and resp.get_json()["accepted"] == 1
    assert resp.headers["Access-Control-Allow-Origin"] == "https://app.fit.example"
    assert seg.client.post("/api/analytics/events", json=doc, headers=auth("bad-key-00")
                           ).status_code == 401
    for _ in range(2):
        doc["events"] = [example_event("session_start") for _ in range(3)]
        last = seg.client.post("/api/analytics/events", json=doc, headers=auth("wk_slow_0123"))
    assert last.status_code == 429 and "Retry-After" in last.headers


# ---- lateness and unmapped events -------------------------------------------------------------

def test_late_events_are_measured_and_counted_beyond_late_after(make_intake):
    app = make_intake(sources=[IOS], late_after="1h")
    now = datetime.now(UTC)
    stamp = (now - timedelta(days=1)).isoformat().replace("+00:00", "Z")
    sent = now.isoformat().replace("+00:00", "Z")
    recent = (now - timedelta(minutes=5)).isoformat().replace("+00:00", "Z")
    batch = [track(originalTimestamp=stamp, timestamp=stamp), track(timestamp=recent)]
    assert post(app, "/v1/batch", {"batch": batch, "sentAt": sent}).status_code == 200
    assert app.value("pulse_events_late_total", platform="ios") == 1
    assert app.value("pulse_events_late_total", platform="web") == 0
    assert app.value("pulse_event_lateness_seconds_count", platform="ios") == 2
    assert app.value("pulse_event_lateness_seconds_bucket", platform="ios", le="3600.0") == 1
    assert app.value("pulse_event_lateness_seconds_bucket", platform="ios", le="86400.0") == 1
    assert app.value("pulse_event_lateness_seconds_bucket", platform="ios",
                     le="259200.0") == 2
    # A resend counts nothing again, lateness included.
    assert post(app, "/v1/batch", {"batch": batch, "sentAt": sent}).status_code == 200
    assert app.value("pulse_event_lateness_seconds_count", platform="ios") == 2
    app.restart()
    assert app.value("pulse_events_late_total", platform="ios") == 1


def test_events_feeding_no_metric_are_counted_as_unmapped_with_bounded_labels(seg):
    batch = [track(), track("Playlist Song Skipped"),
             {"type": "identify", "userId": "u-1", "messageId": str(uuid.uuid4())},
             {"type": "page", "userId": "u-1", "name": "Home", "messageId": str(uuid.uuid4())},
             {"type": "page", "userId": "u-1", "name": "Plans", "messageId": str(uuid.uuid4())}]
    assert post(seg, "/v1/batch", {"batch": batch}).status_code == 200
    unmapped = "pulse_events_unmapped_total"
    assert seg.value(unmapped, eventType="system_event", category="identity") == 1
    assert seg.value(unmapped, eventType="user_action", category="navigation") == 2
    assert seg.value(unmapped, eventType="user_action", category="other") == 1
    assert seg.value(unmapped, eventType="user_action", category="workout") is None
    # A seed event no rule matches, in a category the mapping knows.
    odd = example_event("workout_start", action="pause")
    seg.client.post("/api/analytics/events", json={"events": [odd],
                                                   "clientTimestamp": "2026-11-25T10:00Z"})
    assert seg.value(unmapped, eventType="user_action", category="workout") == 1
