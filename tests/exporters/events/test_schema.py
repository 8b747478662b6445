"""The published AnalyticsEvent schema: what it accepts and what it rejects, field by field."""

from __future__ import annotations

import json

import pytest
from jsonschema import Draft7Validator, FormatChecker

from exporters.events.examples import EXAMPLES, example_event
from exporters.events.intake import EVENT_SCHEMA

SCHEMA = json.loads(EVENT_SCHEMA.read_text())
REQUIRED = SCHEMA["required"]
DEVICE_REQUIRED = SCHEMA["properties"]["deviceInfo"]["required"]
PRIVACY_REQUIRED = SCHEMA["properties"]["privacyFlags"]["required"]


def test_the_published_schema_is_a_valid_draft7_schema():
    Draft7Validator.check_schema(SCHEMA)


@pytest.mark.parametrize("rule", sorted(EXAMPLES))
def test_every_documented_example_is_valid_for_the_reference_validator(rule):
    errors = list(Draft7Validator(SCHEMA, format_checker=FormatChecker())
                  .iter_errors(example_event(rule)))
    assert errors == []


def _reject(intake, event):
    resp = intake.post([event])
    assert resp.status_code == 200, resp.get_json()
    body = resp.get_json()
    assert body["accepted"] == 0 and body["rejected"] == 1
    return body["errors"][0]


@pytest.mark.parametrize("field", REQUIRED)
def test_each_required_field_missing_is_rejected_naming_it(intake, field):
    event = example_event("session_start")
    del event[field]
    error = _reject(intake, event)
    assert error == {"index": 0, "field": field, "code": "missing_field",
                     "message": f"{field} is required"}


@pytest.mark.parametrize(("parent", "field"), [("deviceInfo", f) for f in DEVICE_REQUIRED]
                         + [("privacyFlags", f) for f in PRIVACY_REQUIRED if f != "canTrack"])
def test_each_required_nested_field_missing_is_rejected_naming_it(intake, parent, field):
    event = example_event("session_start")
    del event[parent][field]
    error = _reject(intake, event)
    assert (error["field"], error["code"]) == (f"{parent}.{field}", "missing_field")


@pytest.mark.parametrize(("path", "bad", "code"), [
    ("eventType", "user_click", "invalid_value"),
    ("deviceInfo.platform", "windows", "invalid_value"),
    ("id", 17, "invalid_type"),
    ("id", "", "invalid_value"),
    ("timestamp", "yesterday", "invalid_format"),
    ("privacyFlags.consentDate", "2026-13-45", "invalid_format"),
    ("privacyFlags.canProfile", "yes", "invalid_type"),
    ("value", "12", "invalid_type"),
    ("properties", [], "invalid_type"),
    ("category", "", "invalid_value"),
    ("deviceInfo", "iphone", "invalid_type"),
])
def test_bad_values_are_rejected_with_field_and_code(intake, path, bad, code):
    event = example_event("session_start")
    target = event
    *parents, last = path.split(".")
    for p in parents:
        target = target[p]
    target[last] = bad
    error = _reject(intake, event)
    assert (error["field"], error["code"]) == (path, code), error


@pytest.mark.parametrize("value", ["user_action", "system_event", "ai_interaction",
                                   "business_event"])
def test_every_event_type_is_accepted(intake, value):
    assert intake.post([example_event("session_start", eventType=value)]).get_json()[
        "accepted"] == 1


@pytest.mark.parametrize("platform", ["ios", "android", "web"])
def test_every_platform_is_accepted(intake, platform):
    event = example_event("session_start")
    event["deviceInfo"]["platform"] = platform
    assert intake.post([event]).get_json()["accepted"] == 1


def test_unknown_top_level_field_is_rejected(intake):
    error = _reject(intake, example_event("session_start", email="a@b.example"))
    assert (error["field"], error["code"]) == ("email", "unknown_field")


def test_optional_fields_may_be_absent_and_user_segment_is_open(intake):
    event = example_event("session_start", userSegment={"tier": "premium"})
    for key in ("userId",):
        del event[key]
    for key in ("deviceModel", "connectionType"):
        del event["deviceInfo"][key]
    assert intake.post([event]).get_json()["accepted"] == 1


def test_a_non_object_event_is_rejected_without_touching_its_neighbours(intake):
    body = intake.post([example_event("session_start"), "hello", None,
                        example_event("session_start")]).get_json()
    assert body["accepted"] == 2 and body["rejected"] == 2
    assert [(e["index"], e["code"]) for e in body["errors"]] == [(1, "invalid_type"),
                                                                (2, "invalid_type")]
