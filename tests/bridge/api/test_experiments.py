"""Experiments: validation, durable storage, deterministic assignment, results."""

import hashlib
import json
import random
import signal
import uuid
from collections import Counter
from datetime import UTC, datetime

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.proportion import confint_proportions_2indep, proportions_ztest

from bridge import create_app
from bridge.services.experiments import compute_results, slug
from exporters.events.intake import canonical_json
from pulse.profiles.experiments import project
from tests.bridge.conftest import auth, bridge_config
from tests.bridge.openapi_check import validate_response
from tests.harness import pulse_env, write_pulse_config
from tests.strategies import JSON

BASE = "/api/analytics/ai-experiments"
EXP = {
    "name": "Workout gen v2",
    "description": "Does the new generator get more workouts completed?",
    "modelVariants": [
        {"name": "control", "model": "workout_gen", "modelVersion": "1.4.2"},
        {"name": "candidate", "model": "workout_gen", "modelVersion": "2.0.0-rc.1"},
    ],
    "trafficSplit": [{"variant": "control", "percentage": 50},
                     {"variant": "candidate", "percentage": 50}],
    "successMetrics": ["workout_completed", "recommendation_accepted"],
    "duration": "14d",
    "targetAudience": {"platforms": ["ios", "android"]},
}


def event(user, action, variant, platform="ios", **props):
    """An experiment event in the demo's shape (demo/simulate.py)."""
    return {"id": str(uuid.uuid4()), "timestamp": datetime.now(UTC).isoformat(),
            "userId": user, "sessionId": f"s-{user}", "eventType": "ai_interaction",
            "category": "experiment", "action": action,
            "properties": {"experiment": "workout_gen_v2", "variant": variant, **props},
            "deviceInfo": {"platform": platform, "appVersion": "1.0", "osVersion": "17"},
            "privacyFlags": {"canTrack": True, "canProfile": True, "canShare": False,
                             "consentDate": "2026-01-01T00:00:00Z", "consentVersion": "2.1"}}


def record(app, events):
    """Write events to the unit store as the intake's sink does."""
    store = app.extensions["pulse.experiments"].units
    store.add(*project(events, app.config["PULSE"].privacy.salt))


def test_create_get_list_and_survive_restart(app, client, tmp_path):
    resp = client.post(BASE, json=EXP, headers=auth("engineer"))
    assert resp.status_code == 201, resp.json
    body = resp.json
    assert body["id"] == "workout_gen_v2" and body["status"] == "running"
    assert body["modelVariants"][0]["control"] is True
    assert client.post(BASE, json=EXP, headers=auth("engineer")).status_code == 409
    # A new app on the same data dir (a restart) still knows it.
    app2 = create_app(app.config["PULSE"])
    listed = app2.test_client().get(BASE, headers=auth("analyst")).json["experiments"]
    assert [e["id"] for e in listed] == ["workout_gen_v2"]


def test_permissions(client):
    assert client.post(BASE, json=EXP).status_code == 401
    assert client.post(BASE, json=EXP, headers=auth("analyst")).status_code == 403
    assert client.get(BASE, headers=auth("coach")).status_code == 403


def bad(change=None, drop=None, **kw):
    body = {**EXP, **(change or {}), **kw}
    for key in drop or ():
        body.pop(key)
    return body


V = EXP["modelVariants"]


@pytest.mark.parametrize("body, field", [
    (bad(trafficSplit=[{"variant": "control", "percentage": 50},
                       {"variant": "candidate", "percentage": 40}]), "trafficSplit"),
    (bad(trafficSplit=[{"variant": "control", "percentage": 100}]), "trafficSplit"),
    (bad(trafficSplit=[{"variant": "control", "percentage": 50},
                       {"variant": "nope", "percentage": 50}]), "trafficSplit[1].variant"),
    (bad(trafficSplit=[{"variant": "control", "percentage": -50},
                       {"variant": "candidate", "percentage": 150}]),
     "trafficSplit[0].percentage"),
    (bad(modelVariants=[V[0], {**V[1], "name": "control"}]), "modelVariants[1].name"),
    (bad(modelVariants=[V[0], {**V[1], "modelVersion": "newest"}]),
     "modelVariants[1].modelVersion"),
    (bad(modelVariants=[V[0]]), "modelVariants"),
    (bad(modelVariants=[{**V[0], "control": True}, {**V[1], "control": True}]), "modelVariants"),
    (bad(successMetrics=["happiness"]), "successMetrics[0]"),
    (bad(successMetrics=[]), "successMetrics"),
    (bad(duration="fortnight"), "duration"),
    (bad(duration="10m"), "duration"),
    (bad(drop=["duration"]), "duration"),
    (bad(name="!!!"), "name"),
    (bad(drop=["name"]), "name"),
    (bad(targetAudience={"platforms": ["windows"]}), "targetAudience.platforms"),
    (bad(targetAudience={"userIds": ["u1"]}), "targetAudience.userIds"),
    (bad(colour="red"), "colour"),
    (bad(name="   "), "name"),
    (bad(trafficSplit=[{"variant": "control", "percentage": 0},
                       {"variant": "candidate", "percentage": 100}]),
     "trafficSplit[0].percentage"),
    (bad(successMetrics=["workout_completed", "workout_completed"]), "successMetrics"),
    (bad(targetAudience={"plans": ["Premium"]}), "targetAudience.plans"),
])
def test_bad_experiment_names_the_field(client, body, field):
    resp = client.post(BASE, json=body, headers=auth("engineer"))
    assert resp.status_code == 400, resp.json
    assert resp.json["error"]["details"][0]["field"] == field
    assert client.get(BASE, headers=auth("engineer")).json["experiments"] == []


def test_a_small_split_is_accepted(client):
    # The schema's `exclusiveMinimum: true` (OpenAPI 3.0) bounds at 0, not at 1.
    body = bad(trafficSplit=[{"variant": "control", "percentage": 99.5},
                             {"variant": "candidate", "percentage": 0.5}])
    resp = client.post(BASE, json=body, headers=auth("engineer"))
    assert resp.status_code == 201, resp.json
    assert resp.json["trafficSplit"][1]["percentage"] == 0.5


def test_a_nan_percentage_names_the_field(client):
    text = json.dumps(EXP).replace('"percentage": 50}]', '"percentage": NaN}]')
    resp = client.post(BASE, data=text, content_type="application/json",
                       headers=auth("engineer"))
    assert resp.status_code == 400, resp.json
    assert resp.json["error"]["details"][0]["field"] == "trafficSplit[1].percentage"


def test_non_object_body(client):
    resp = client.post(BASE, data="[]", content_type="application/json",
                       headers=auth("engineer"))
    assert resp.status_code == 400 and resp.json["error"]["details"][0]["field"] == "body"


def test_slug():
    assert slug("Workout Gen v2!") == "workout_gen_v2"
    assert slug("2026 test") == "exp_2026_test"


def test_assignment_is_deterministic_and_matches_split(client):
    three = {**EXP, "name": "three way",
             "modelVariants": [*V, {"name": "wild", "model": "workout_gen", "modelVersion": "3"}],
             "trafficSplit": [{"variant": "control", "percentage": 50},
                              {"variant": "candidate", "percentage": 30},
                              {"variant": "wild", "percentage": 20}]}
    assert client.post(BASE, json=three, headers=auth("engineer")).status_code == 201
    url = f"{BASE}/three_way/assignment"
    q = {"unit": "user-42", "platform": "ios"}
    first = client.get(url, query_string=q, headers=auth("analyst")).json
    again = client.get(url, query_string=q, headers=auth("analyst")).json
    assert first == again and first["active"] is True
    assert first["model"] == "workout_gen"
    # 100 000 units through the endpoint's own function, checked with a chi-square test.
    from bridge.services.stats import assign, sample_ratio_mismatch
    split = [("control", 50.0), ("candidate", 30.0), ("wild", 20.0)]
    counts = Counter(assign("three_way", f"unit-{i}", split) for i in range(100_000))
    srm = sample_ratio_mismatch([counts[v] for v, _ in split], [w for _, w in split])
    assert srm["pValue"] > 0.001, counts
    assert first["variant"] == assign("three_way", "user-42", split)
    resp = client.get(url, headers=auth("analyst"))
    assert resp.status_code == 400 and resp.json["error"]["details"][0]["field"] == "unit"
    assert client.get(f"{BASE}/nope/assignment", query_string={"unit": "u"},
                      headers=auth("analyst")).status_code == 404


def test_results_count_units_not_events(app, client):
    """Three exposures per user (one per recommendation, as the demo sends) count once."""
    client.post(BASE, json=EXP, headers=auth("engineer"))
    events = []
    for variant, converters in (("control", 200), ("candidate", 250)):
        for i in range(1000):
            user = f"{variant}-{i}"
            events += [event(user, "exposure", variant) for _ in range(3)]
            if i < converters:
                events += [event(user, "conversion", variant, metric="workout_completed")] * 2
            if i < 500:
                events.append(event(user, "conversion", variant,
                                    metric="recommendation_accepted"))
    # Ten users saw both variants: reported and excluded. Five are on the web, outside
    # the audience (ios, android): excluded.
    events += [event(f"control-{i}", "exposure", "candidate") for i in range(990, 1000)]
    events += [event(f"web-{i}", "exposure", "control", platform="web") for i in range(5)]
    record(app, events)
    body = client.get(f"{BASE}/workout_gen_v2", headers=auth("executive")).json
    res = body["results"]
    assert res["totalUnits"] == 1990 and res["excludedMultipleVariants"] == 10
    assert res["excludedOutsideAudience"] == 5
    units = {v["variant"]: v for v in res["variants"]}
    assert units["control"]["units"] == 990 and units["candidate"]["units"] == 1000
    assert units["control"]["excludedMultipleVariants"] == 10
    assert units["control"]["metrics"]["workout_completed"]["conversions"] == 200
    comp = {c["metric"]: c for c in res["comparisons"]}
    wc = comp["workout_completed"]
    ref = confint_proportions_2indep(250, 1000, 200, 990, method="newcomb", compare="diff")
    assert wc["confidenceInterval"] == pytest.approx(list(ref), abs=1e-12)
    assert wc["absoluteDifference"] == pytest.approx(0.25 - 200 / 990)
    assert wc["fixedHorizon"]["pValue"] == pytest.approx(
        proportions_ztest([250, 200], [1000, 990])[1])
    assert wc["bayesian"]["chanceToBeatControl"] > 0.99
    assert wc["sequential"]["looks"] == 1
    assert wc["power"]["requiredUnitsPerVariant"] > 0
    assert wc["fixedHorizon"]["holmAdjustedPValue"] == pytest.approx(
        multipletests([wc["fixedHorizon"]["pValue"],
                       comp["recommendation_accepted"]["fixedHorizon"]["pValue"]],
                      method="holm")[1][0])
    assert comp["recommendation_accepted"]["verdict"] in ("keep_running",
                                                          "no_detectable_difference")
    assert "cuped" not in wc  # no pre-period values sent
    assert res["sampleRatioMismatch"]["mismatch"] is False
    doc = client.get("/api/openapi.json").json
    validate_response(doc, "Experiment", body)
    validate_response(doc, "ExperimentResults", res)


def test_results_use_pre_period_values_for_cuped(app, client):
    client.post(BASE, json={**EXP, "successMetrics": ["workout_completed"]},
                headers=auth("engineer"))
    rng = random.Random(3)
    events = []
    for variant in ("control", "candidate"):
        for i in range(600):
            pre = rng.randint(0, 10)
            events.append(event(f"{variant}-{i}", "exposure", variant, preValue=pre))
            if rng.random() < 0.05 + 0.08 * pre + (0.03 if variant == "candidate" else 0):
                events.append(event(f"{variant}-{i}", "conversion", variant,
                                    metric="workout_completed"))
    record(app, events)
    res = client.get(f"{BASE}/workout_gen_v2", headers=auth("analyst")).json["results"]
    cuped = res["comparisons"][0]["cuped"]
    assert cuped["unitsWithPreValue"] == 1200
    assert cuped["standardError"] < cuped["unadjustedStandardError"]


def _rows(counts: dict, start=1000.0):
    return [(f"{v}-{i}".encode(), v, start + 1, "ios", None, None, None)
            for v, n in counts.items() for i in range(n)]


def test_results_flag_srm_and_not_enough_data():
    exp = {"trafficSplit": [{"variant": "a", "percentage": 50},
                            {"variant": "b", "percentage": 50}],
           "modelVariants": [{"name": "a", "control": True}, {"name": "b", "control": False}],
           "successMetrics": ["workout_completed"], "startedAt": 1000.0}
    conv = [(f"a-{i}".encode(), "a", "workout_completed", 1002.0) for i in range(530)]
    res = compute_results(exp, _rows({"a": 5300, "b": 4700}), conv, 5000.0)
    assert res["sampleRatioMismatch"]["mismatch"] is True
    assert res["sampleRatioMismatch"]["chiSquare"] == pytest.approx(36.0)
    assert res["comparisons"][0]["verdict"] == "invalid"
    res = compute_results(exp, _rows({"a": 40, "b": 60}), conv[:4], 5000.0)
    assert res["status"] == "not_enough_data"
    assert res["comparisons"][0]["status"] == "not_enough_data"
    assert res["sampleRatioMismatch"]["status"] == "not_enough_data"


def test_sequential_result_reads_every_day(app):
    """Looks are day boundaries since the start; the p-value is their running minimum."""
    exp = {"trafficSplit": [{"variant": "a", "percentage": 50},
                            {"variant": "b", "percentage": 50}],
           "modelVariants": [{"name": "a", "control": True}, {"name": "b", "control": False}],
           "successMetrics": ["workout_completed"], "startedAt": 0.0}
    rows, conv = [], []
    for day in range(5):
        for v, rate in (("a", 0.1), ("b", 0.3)):
            for i in range(200):
                unit = f"{v}-{day}-{i}".encode()
                rows.append((unit, v, day * 86400.0 + 10, "ios", None, None, None))
                if i < rate * 200:
                    conv.append((unit, v, "workout_completed", day * 86400.0 + 20))
    res = compute_results(exp, rows, conv, 5 * 86400.0 - 1)
    c = res["comparisons"][0]
    assert c["sequential"]["looks"] == 5
    assert c["sequential"]["pValue"] < 0.05 and c["verdict"] == "variant_better"
    low, high = c["sequential"]["confidenceSequence"]
    assert low < 0.2 < high and low > 0


def test_audience_is_applied_in_assignment(client):
    client.post(BASE, json={**EXP, "targetAudience": {"platforms": ["ios"], "plans": ["annual"],
                                                      "newUsersOnly": True}},
                headers=auth("engineer"))
    url = f"{BASE}/workout_gen_v2/assignment"
    ok = {"unit": "u1", "platform": "ios", "plan": "annual", "newUser": "true"}
    body = client.get(url, query_string=ok, headers=auth("analyst")).json
    assert body["inAudience"] is True and body["variant"] in ("control", "candidate")
    for change, words in (({"platform": "web"}, "platform web"), ({"plan": "monthly"}, "plan"),
                          ({"newUser": "false"}, "new user")):
        body = client.get(url, query_string={**ok, **change}, headers=auth("analyst")).json
        assert body["variant"] is None and body["inAudience"] is False
        assert words in body["reason"]
    body = client.get(url, query_string={"unit": "u1"}, headers=auth("analyst")).json
    assert body["variant"] is None and "unknown" in body["reason"]
    for field, value in (("platform", "tv"), ("newUser", "yes"), ("plan", "Bad Plan")):
        resp = client.get(url, query_string={**ok, field: value}, headers=auth("analyst"))
        assert resp.status_code == 400 and resp.json["error"]["details"][0]["field"] == field


def test_results_bad_parameters(client):
    client.post(BASE, json=EXP, headers=auth("engineer"))
    resp = client.get(f"{BASE}/workout_gen_v2", query_string={"confidence": "2"},
                      headers=auth("analyst"))
    assert resp.status_code == 400 and resp.json["error"]["details"][0]["field"] == "confidence"
    assert client.get(f"{BASE}/unknown", headers=auth("analyst")).status_code == 404


def test_demo_exposures_through_the_intake(tmp_path):
    """The demo's events through the real intake app reach the bridge's results per user."""
    from exporters.events import create_app as intake_app
    cfg = bridge_config(tmp_path)
    bridge = create_app(cfg).test_client()
    assert bridge.post(BASE, json=EXP, headers=auth("engineer")).status_code == 201
    intake = intake_app(cfg).test_client()
    events = []
    for i in range(300):
        variant = ("control", "candidate")[i % 2]
        # Several exposures per user, as the demo sends one per recommendation.
        events += [event(f"user-{i}", "exposure", variant) for _ in range(4)]
    for start in range(0, len(events), 500):
        part = events[start:start + 500]
        resp = intake.post("/api/analytics/events/batch",
                           json={"batchId": str(uuid.uuid4()), "events": part,
                                 "checksums": [hashlib.sha256(canonical_json(e)).hexdigest()
                                               for e in part]})
        assert resp.status_code == 200 and resp.json["accepted"] == len(part), resp.data
    res = bridge.get(f"{BASE}/workout_gen_v2", headers=auth("analyst")).json["results"]
    assert res["totalUnits"] == 300
    assert {v["variant"]: v["units"] for v in res["variants"]} == {"control": 150,
                                                                   "candidate": 150}


@settings(max_examples=80, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(field=st.sampled_from(sorted(EXP)), value=JSON)
def test_any_field_value_is_a_4xx_or_accepted_never_a_500(client, field, value):
    resp = client.post(BASE, json={**EXP, "name": "fuzz", field: value}, headers=auth("admin"))
    assert resp.status_code in (201, 400, 409), resp.json
    if resp.status_code == 400:
        assert resp.json["error"]["details"][0]["field"]


@pytest.mark.integration
def test_acknowledged_experiment_survives_kill_9(tmp_path, service):
    """The bridge as a real process: an experiment answered 201 is there after kill -9."""
    path = tmp_path / "pulse.yml"
    cfg = write_pulse_config(path, tmp_path / "data")
    env = pulse_env(tmp_path / "data")
    listen = cfg["bridge"]["listen"]
    headers = {"Authorization": f"Bearer {env['PULSE_ADMIN_TOKEN']}"}
    proc = service("bridge", path, env, listen)
    resp = requests.post(f"http://{listen}{BASE}", json=EXP, headers=headers, timeout=10)
    assert resp.status_code == 201, resp.text
    proc.kill(signal.SIGKILL)
    service("bridge", path, env, listen)
    resp = requests.get(f"http://{listen}{BASE}/workout_gen_v2/assignment",
                        params={"unit": "user-1"}, headers=headers, timeout=10)
    assert resp.status_code == 200 and resp.json()["experimentId"] == "workout_gen_v2"
