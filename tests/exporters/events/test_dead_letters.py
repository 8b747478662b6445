"""The intake's dead letters: readable by admin and engineer only, and free of personal data."""

from __future__ import annotations

import json

import pytest

from exporters.events.examples import example_event

EMAIL, PHONE, USER, SESSION = "jane.doe@example.org", "+44 20 7946 0958", "u-secret-41", "s-9f3"
SECRETS = (EMAIL, PHONE, USER, SESSION, "jane.doe", "7946 0958")


def _pii_laden_rejects() -> list:
    """Events that are rejected, each carrying an e-mail, a phone number and ids."""
    props = {"note": f"call me on {PHONE} or write to {EMAIL}", "contact": EMAIL,
             "nested": {"phones": [PHONE]}, EMAIL: "as a key"}
    return [
        # a bad timestamp: rejected, the rest of the event kept for diagnosis
        example_event("session_start", userId=USER, sessionId=SESSION, timestamp="bad",
                      properties=props),
        # PII as the offending value itself (it ends up in the schema's message)
        example_event("session_start", userId=USER, sessionId=SESSION, eventType=EMAIL),
        example_event("session_start", userId=USER, sessionId=SESSION, timestamp=PHONE),
        # not even an object
        [EMAIL, PHONE],
    ]


def test_pii_of_rejected_events_rests_nowhere_on_disk_nor_in_any_response(intake):
    resp = intake.post(_pii_laden_rejects())
    assert resp.status_code == 200 and resp.get_json()["rejected"] == 4
    answers = [resp.get_data(as_text=True)]
    for role in ("admin", "engineer"):
        letters = intake.dead_letters("?limit=10", role=role)
        assert letters.status_code == 200 and letters.get_json()["count"] == 4
        answers.append(letters.get_data(as_text=True))
    intake.restart()  # the dead letters are read back from the log and snapshot
    answers.append(intake.dead_letters("?limit=10").get_data(as_text=True))
    answers.append(intake.client.get("/metrics").get_data(as_text=True))
    intake.close()
    stored = b"".join(p.read_bytes() for d in intake.storage for p in d.rglob("*")
                      if p.is_file())
    assert stored, "the dead letters are on disk"
    for secret in SECRETS:
        assert secret.encode() not in stored, f"{secret!r} rests on disk"
        for text in answers:
            assert secret not in text and json.dumps(secret)[1:-1] not in text
    intake.start()


def test_a_scrubbed_dead_letter_still_says_what_was_wrong(intake):
    intake.post(_pii_laden_rejects()[:1])
    (letter,) = intake.dead_letters().get_json()["rejected"]
    assert letter["error"]["field"] == "timestamp" and letter["reason"] == "invalid"
    event = letter["event"]
    assert event["userId"] == "<redacted>" and event["sessionId"] == "<redacted>"
    assert event["properties"]["contact"] == "<pii:email>"
    assert event["properties"]["note"] == "call me on <pii:phone> or write to <pii:email>"
    assert event["properties"]["nested"] == {"phones": ["<pii:phone>"]}
    # what names no one is kept as sent
    sent = example_event("session_start")
    assert event["eventType"] == sent["eventType"] and event["timestamp"] == "bad"


def test_dead_letters_need_a_token(intake):
    resp = intake.dead_letters(role=None)
    assert resp.status_code == 401
    assert resp.get_json()["error"]["details"][0]["field"] == "Authorization"
    bad = intake.client.get("/api/analytics/events/rejected",
                            headers={"Authorization": "Bearer not-a-known-token-123"})
    assert bad.status_code == 401 and bad.get_json()["error"]["code"] == "unauthorized"


@pytest.mark.parametrize("role", ["analyst"])
def test_dead_letters_are_refused_to_other_roles_naming_the_permission(intake, role):
    resp = intake.dead_letters(role=role)
    assert resp.status_code == 403
    error = resp.get_json()["error"]
    assert error["code"] == "forbidden" and "events:dead_letters" in error["message"]
    assert error["details"] == [{"field": "permission",
                                 "problem": "events:dead_letters required"}]
