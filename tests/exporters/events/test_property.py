"""Property: no request body, however strange, gets a 5xx or logs an exception."""

from __future__ import annotations

import gzip
import json
import logging

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from exporters.events.examples import example_event
from tests.exporters.events.conftest import Intake

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=10), inner,
                                                                max_size=5),
    max_leaves=30)
KEYS = ["events", "batchId", "clientTimestamp", "checksums", "compressionType"]
ENVELOPES = st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=8), JSON_VALUES, max_size=6)


@st.composite
def mutated_events(draw):
    """A valid event with a few fields replaced, removed or added at random."""
    event = example_event(draw(st.sampled_from(["session_end", "ai_recommendation_outcome",
                                                "marketplace_revenue", "experiment_conversion"])))
    for _ in range(draw(st.integers(0, 3))):
        target = event
        inner = draw(st.sampled_from(["properties", "deviceInfo", "privacyFlags"]))
        if draw(st.booleans()) and isinstance(event.get(inner), dict):
            target = event[inner]
        key = draw(st.sampled_from(sorted(target) + ["extra"]))
        if draw(st.booleans()):
            target.pop(key, None)
        else:
            target[key] = draw(JSON_VALUES)
    return event


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    intake = Intake(tmp_path_factory.mktemp("property") / "data", max_properties_depth=3)
    intake.seen_batches = {}
    yield intake
    intake.close()


def _post(app, data: bytes, path: str, caplog, **headers):
    headers.setdefault("Content-Type", "application/json")
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        resp = app.client.post(path, data=data, headers=headers)
    assert resp.status_code < 500, (resp.status_code, resp.data)
    assert resp.is_json
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    return resp


PATHS = st.sampled_from(["/api/analytics/events", "/api/analytics/events/batch"])
SETTINGS = settings(max_examples=150, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])


@SETTINGS
@given(body=JSON_VALUES | ENVELOPES, path=PATHS)
def test_arbitrary_json_bodies_never_get_a_5xx(app, caplog, body, path):
    _post(app, json.dumps(body).encode(), path, caplog)


@SETTINGS
@given(events=st.lists(mutated_events() | JSON_VALUES, max_size=6), path=PATHS,
       batch_id=st.none() | st.text(max_size=10), gzipped=st.booleans(),
       checksums=st.none() | st.lists(st.text(max_size=64), max_size=6))
def test_arbitrary_events_in_a_valid_envelope_never_get_a_5xx(app, caplog, events, path,
                                                              batch_id, gzipped, checksums):
    doc = {"events": events, "clientTimestamp": "2026-11-25T10:00:00Z"}
    if batch_id is not None:
        doc["batchId"] = batch_id
    if checksums is not None:
        doc["checksums"] = checksums
    data = json.dumps(doc).encode()
    headers = {}
    if gzipped:
        data, headers = gzip.compress(data), {"Content-Encoding": "gzip"}
    resp = _post(app, data, path, caplog, **headers)
    if resp.status_code == 200:
        body = resp.get_json()
        seen = app.seen_batches.get(body["batchId"])
        if seen is None:
            assert body["accepted"] + body["rejected"] == len(events)
            app.seen_batches[body["batchId"]] = body
        else:
            # A batchId seen before answers with the original response, counting nothing.
            assert body == seen


@SETTINGS
@given(data=st.binary(max_size=300), encoding=st.sampled_from(["identity", "gzip"]),
       ctype=st.sampled_from(["application/json", "application/json; charset=utf-8",
                              "text/plain", ""]))
def test_arbitrary_bytes_never_get_a_5xx(app, caplog, data, encoding, ctype):
    _post(app, data, "/api/analytics/events", caplog, **{"Content-Encoding": encoding,
                                                         "Content-Type": ctype})


@SETTINGS
@given(event=mutated_events() | JSON_VALUES)
def test_any_event_is_answered_accepted_or_rejected_naming_a_field(app, event):
    resp = app.post([event])
    if resp.status_code == 413:  # properties nested too deep: the whole request is refused
        assert resp.get_json()["error"]["limit"] == "max_properties_depth"
        return
    assert resp.status_code == 200
    body = resp.get_json()
    assert body["accepted"] + body["rejected"] == 1
    if body["rejected"]:
        assert body["errors"][0]["field"] and body["errors"][0]["code"]


def test_the_validator_accepts_every_example(app):
    from exporters.events.examples import EXAMPLES
    for rule in EXAMPLES:
        app.intake.validate(example_event(rule))  # raises if not


@pytest.mark.parametrize(("stamp", "valid"), [
    ("2026-11-25T10:00:00Z", True), ("2026-11-25t10:00:00z", True),
    ("2016-12-31T23:59:60Z", True), ("2026-11-25T10:00:00.123456789+05:30", True),
    ("2026-11-25T10:00:00+0530", False),  # RFC 3339 needs the colon
    ("2026-11-25 10:00:00Z", False), ("yesterday", False),
])
def test_date_times_are_checked_as_rfc3339(app, stamp, valid):
    body = app.post([example_event("session_start", timestamp=stamp)]).get_json()
    assert body["accepted"] == (1 if valid else 0), body
