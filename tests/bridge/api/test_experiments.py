"""Experiments: validation, durable storage, deterministic assignment, results."""

import signal
import threading
import time
from collections import Counter

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client import Counter as PromCounter

from bridge import create_app
from bridge.services.experiments import compute_results, slug
from tests.bridge.conftest import auth, bridge_config
from tests.bridge.openapi_check import validate_response
from tests.harness import free_port, pulse_env, wait_until, write_pulse_config
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


class FakeProm:
    """Answers the two result queries from fixed numbers (unit tests only)."""

    def __init__(self, exposures, conversions):
        self.exposures, self.conversions = exposures, conversions
        self.queries = []

    def query(self, expr, time=None):
        self.queries.append((expr, time))
        if "exposures" in expr:
            return [{"metric": {"variant": v}, "value": [0, str(n)]}
                    for v, n in self.exposures.items()]
        return [{"metric": {"variant": v, "metric": m}, "value": [0, str(n)]}
                for (v, m), n in self.conversions.items()]


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
])
def test_bad_experiment_names_the_field(client, body, field):
    resp = client.post(BASE, json=body, headers=auth("engineer"))
    assert resp.status_code == 400, resp.json
    assert resp.json["error"]["details"][0]["field"] == field
    assert client.get(BASE, headers=auth("engineer")).json["experiments"] == []


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
    first = client.get(url, query_string={"unit": "user-42"}, headers=auth("analyst")).json
    again = client.get(url, query_string={"unit": "user-42"}, headers=auth("analyst")).json
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


def test_results_by_hand(app, client):
    client.post(BASE, json=EXP, headers=auth("engineer"))
    app.extensions["pulse.prometheus"] = FakeProm(
        {"control": 1000, "candidate": 1000},
        {("control", "workout_completed"): 200, ("candidate", "workout_completed"): 250,
         ("control", "recommendation_accepted"): 500,
         ("candidate", "recommendation_accepted"): 500})
    body = client.get(f"{BASE}/workout_gen_v2", headers=auth("executive")).json
    res = body["results"]
    assert res["status"] == "ok"
    comp = {c["metric"]: c for c in res["comparisons"]}
    wc = comp["workout_completed"]
    # Hand-checked in tests/bridge/services/test_stats.py: z = 2.677398, p = 0.007419.
    assert wc["zScore"] == pytest.approx(2.677398, abs=1e-6)
    assert wc["pValue"] == pytest.approx(0.007419, abs=1e-6)
    assert wc["significant"] is True
    assert comp["recommendation_accepted"]["pValue"] == pytest.approx(1.0)
    assert res["sampleRatioMismatch"]["mismatch"] is False
    assert res["variants"][1]["metrics"]["workout_completed"]["rate"] == 0.25
    assert 'experiment="workout_gen_v2"' in app.extensions["pulse.prometheus"].queries[0][0]
    doc = client.get("/api/openapi.json").json
    validate_response(doc, "Experiment", body)
    validate_response(doc, "ExperimentResults", res)


def test_results_flag_srm_and_not_enough_data():
    exp = {"trafficSplit": [{"variant": "a", "percentage": 50},
                            {"variant": "b", "percentage": 50}],
           "modelVariants": [{"name": "a", "control": True}, {"name": "b", "control": False}],
           "successMetrics": ["workout_completed"]}
    res = compute_results(exp, {"a": 5300, "b": 4700},
                          {("a", "workout_completed"): 530, ("b", "workout_completed"): 470})
    assert res["sampleRatioMismatch"]["mismatch"] is True
    assert res["sampleRatioMismatch"]["chiSquare"] == pytest.approx(36.0)
    res = compute_results(exp, {"a": 40, "b": 60}, {("a", "workout_completed"): 4})
    assert res["status"] == "not_enough_data"
    assert res["comparisons"][0]["status"] == "not_enough_data"
    assert res["sampleRatioMismatch"]["status"] == "not_enough_data"


def test_results_bad_parameters(client):
    client.post(BASE, json=EXP, headers=auth("engineer"))
    resp = client.get(f"{BASE}/workout_gen_v2", query_string={"confidence": "2"},
                      headers=auth("analyst"))
    assert resp.status_code == 400 and resp.json["error"]["details"][0]["field"] == "confidence"
    assert client.get(f"{BASE}/unknown", headers=auth("analyst")).status_code == 404


def test_results_unreachable_prometheus_is_503(client):
    client.post(BASE, json=EXP, headers=auth("engineer"))
    assert client.get(f"{BASE}/workout_gen_v2", headers=auth("analyst")).status_code == 503


@pytest.mark.integration
def test_results_from_real_prometheus(tmp_path, prometheus_factory):
    """Exposures and conversions scraped by a real Prometheus give the experiment's results."""
    registry = CollectorRegistry()
    exposures = PromCounter("ai_experiment_exposures", "exposures", ["experiment", "variant"],
                            registry=registry)
    conversions = PromCounter("ai_experiment_conversions", "conversions",
                              ["experiment", "variant", "metric"], registry=registry)
    port = free_port()
    server, thread = start_http_server(port, addr="127.0.0.1", registry=registry)
    try:
        prom = prometheus_factory(targets={"events": [f"127.0.0.1:{port}"]})
        cfg = bridge_config(tmp_path, prometheus={"url": prom.url})
        client = create_app(cfg).test_client()
        assert client.post(BASE, json=EXP, headers=auth("engineer")).status_code == 201
        for variant in ("control", "candidate"):
            exposures.labels("workout_gen_v2", variant)
            conversions.labels("workout_gen_v2", variant, "workout_completed")
        prom.wait_for_value('count(ai_experiment_exposures_total{experiment="workout_gen_v2"})',
                            lambda v: v == 2, timeout=60)
        stop = threading.Event()

        def feed():
            # 50/50 exposures; control converts 20 %, the candidate 40 %.
            while not stop.is_set():
                for variant, rate in (("control", 2), ("candidate", 4)):
                    exposures.labels("workout_gen_v2", variant).inc(10)
                    conversions.labels("workout_gen_v2", variant, "workout_completed").inc(rate)
                time.sleep(0.1)
        feeder = threading.Thread(target=feed, daemon=True)
        feeder.start()

        def results():
            body = client.get(f"{BASE}/workout_gen_v2", headers=auth("analyst")).json
            res = body["results"]
            # Enough volume that one in-flight feeder tick cannot move a rate by 0.03.
            return res if res["status"] == "ok" and res["totalExposures"] >= 1000 else None
        res = wait_until(results, timeout=60, interval=1, message="enough exposures")
        stop.set()
        feeder.join()
        rates = {v["variant"]: v["metrics"]["workout_completed"]["rate"] for v in res["variants"]}
        assert rates["control"] == pytest.approx(0.2, abs=0.03)
        assert rates["candidate"] == pytest.approx(0.4, abs=0.03)
        comp = res["comparisons"][0]
        assert comp["variant"] == "candidate" and comp["significant"] is True
        assert res["sampleRatioMismatch"]["mismatch"] is False
        assert requests.get(f"{prom.url}/-/ready", timeout=5).ok
    finally:
        server.shutdown()
        server.server_close()


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
