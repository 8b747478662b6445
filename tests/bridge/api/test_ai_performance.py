"""GET /api/analytics/ai-performance: unit tests on a fake, and the real-Prometheus scenario."""

import re
import threading
import time

import pytest
import requests
from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server

from bridge import create_app
from bridge.api.ai_performance import accuracy, direction, rates, recommend
from tests.bridge.conftest import auth, bridge_config
from tests.bridge.openapi_check import validate_response
from tests.harness import free_port, pulse_env, wait_until, write_pulse_config

URL = "/api/analytics/ai-performance"
NOW = 1_790_000_000.0


class FakeProm:
    """Answers ai-performance's queries from tables (unit tests only)."""

    def __init__(self, outcomes, previous=None, baseline=None, evaluated=None, drift=None,
                 safety=None, feedback=None):
        self.outcomes, self.previous = outcomes, previous or {}
        self.baseline = baseline if baseline is not None else outcomes
        self.evaluated, self.drift = evaluated or {}, drift or {}
        self.safety, self.feedback = safety or {}, feedback or {}
        self.queries = []

    def query(self, expr, time=None):
        self.queries.append((expr, time))
        rows = []
        if "ai_recommendations_total" in expr:
            window = int(re.search(r"\[(\d+)s\]", expr).group(1))
            table = (self.previous if time < NOW else
                     self.baseline if window == 604800 else self.outcomes)
            for model, outcomes in table.items():
                for outcome, n in outcomes.items():
                    labels = {"model": model, "outcome": outcome}
                    if "model_version" in expr:
                        labels["model_version"] = "1.0"
                    rows.append((labels, n))
        elif expr == "ai_model_accuracy_ratio":
            rows = [({"model": m, "model_version": v}, a) for (m, v), a in self.evaluated.items()]
        elif expr == "ai_model_evaluation_timestamp_seconds":
            rows = [({"model": m, "model_version": v}, i)
                    for i, (m, v) in enumerate(self.evaluated)]
        elif "feedback_score_sum" in expr:
            rows = [({"model": m}, s) for m, (s, _) in self.feedback.items()]
        elif "feedback_score_count" in expr:
            rows = [({"model": m}, c) for m, (_, c) in self.feedback.items()]
        elif "ai_safety_events_total" in expr:
            rows = [({"model": m, "kind": k}, n) for (m, k), n in self.safety.items()]
        elif expr == "ai_model_drift_psi":
            rows = [({"model": m, "feature": f}, v) for (m, f), v in self.drift.items()]
        return [{"metric": labels, "value": [time, str(v)]} for labels, v in rows]

    def query_range(self, expr, start, end, step):
        return []


@pytest.fixture
def fake_app(app):
    app.extensions["pulse.clock"] = lambda: NOW
    return app


def get(app, prom, **params):
    app.extensions["pulse.prometheus"] = prom
    return app.test_client().get(URL, query_string=params, headers=auth("analyst"))


def test_pure_definitions():
    assert accuracy({"accepted": 60, "modified": 25, "rejected": 15, "ignored": 100}, 50) == (
        0.6, 100)
    assert accuracy({"accepted": 30, "rejected": 10}, 50) == (None, 40)
    assert rates({"accepted": 3, "modified": 1, "rejected": 0, "ignored": 4}) == {
        "acceptance": 0.375, "modification": 0.125, "rejection": 0.0, "ignored": 0.5}
    assert direction(0.6, 0.85) == "declining" and direction(0.85, 0.84) == "stable"
    codes = [r["code"] for r in recommend("m", 0.70, 0.9, 0.85, {"score": 0.25, "age": 0.1})]
    # 0.70 < 0.75; (0.85 - 0.70) / 0.85 = 17.6 % > 10 %; PSI 0.25 > 0.2 (0.1 is not)
    assert codes == ["accuracy_low", "accuracy_degraded", "drift"]
    assert recommend("m", 0.80, 0.9, 0.85, {}) == []  # 5.9 % drop only


def test_recommends_retraining_only_the_failing_model(fake_app):
    prom = FakeProm(
        outcomes={"workout_gen": {"accepted": 60, "modified": 25, "rejected": 15, "ignored": 10},
                  "nutrition": {"accepted": 90, "modified": 5, "rejected": 5}},
        previous={"workout_gen": {"accepted": 85, "modified": 10, "rejected": 5},
                  "nutrition": {"accepted": 88, "modified": 7, "rejected": 5}},
        baseline={"workout_gen": {"accepted": 850, "modified": 100, "rejected": 50},
                  "nutrition": {"accepted": 900, "modified": 50, "rejected": 50}},
        evaluated={("workout_gen", "1.4.2"): 0.81, ("nutrition", "2.0"): 0.92},
        drift={("nutrition", "score"): 0.05}, safety={("workout_gen", "medical_contradiction"): 2},
        feedback={"workout_gen": (35.0, 10.0)})
    resp = get(fake_app, prom, timeRange="1h")
    assert resp.status_code == 200, resp.json
    body = resp.json
    models = {m["model"]: m for m in body["models"]}
    wg = models["workout_gen"]
    assert wg["accuracy"]["online"] == 0.6 and wg["accuracy"]["evaluated"] == 0.81
    assert wg["rates"]["acceptance"] == pytest.approx(60 / 110, abs=1e-4)
    assert wg["comparison"] == {"previousAccuracy": 0.85, "previousSamples": 100,
                                "change": -0.25, "direction": "declining"}
    assert wg["degradation"]["relativeDrop"] == pytest.approx((0.85 - 0.6) / 0.85, abs=1e-4)
    assert wg["satisfaction"] == {"average": 3.5, "responses": 10}
    assert wg["safety"] == {"total": 2, "byKind": {"medical_contradiction": 2}}
    assert models["nutrition"]["drift"]["psi"] == {"score": 0.05}
    assert {r["model"] for r in body["recommendations"]} == {"workout_gen"}
    assert {r["code"] for r in body["recommendations"]} == {"accuracy_low", "accuracy_degraded"}
    assert all(r["action"] == "retrain" for r in body["recommendations"])
    assert body["aggregates"]["modelsNeedingRetraining"] == 1
    doc = fake_app.test_client().get("/api/openapi.json").json
    validate_response(doc, "AIPerformanceResponse", body)
    assert body["timeRange"]["seconds"] == 3600
    # The previous range is queried at the start of this one.
    assert any(t == NOW - 3600 for _, t in prom.queries)


def test_min_samples_hides_accuracy_and_filters_models(fake_app):
    prom = FakeProm(outcomes={"workout_gen": {"accepted": 10, "rejected": 20},
                              "nutrition": {"accepted": 90, "rejected": 10}})
    body = get(fake_app, prom, timeRange="1h", modelTypes="workout_gen",
               includeComparisons="false").json
    assert [m["model"] for m in body["models"]] == ["workout_gen"]
    assert body["models"][0]["accuracy"]["online"] is None
    assert body["models"][0]["accuracy"]["sufficientSamples"] is False
    assert "comparison" not in body["models"][0]
    assert body["recommendations"] == []


def test_segmentation_by_model_version(fake_app):
    prom = FakeProm(outcomes={"workout_gen": {"accepted": 70, "rejected": 30}})
    body = get(fake_app, prom, timeRange="1h", segmentation="model_version").json
    assert body["models"][0]["segments"] == [
        {"modelVersion": "1.0", "accuracy": 0.7, "samples": 100}]


def test_drift_above_threshold_recommends_retraining(fake_app):
    prom = FakeProm(outcomes={}, drift={("recovery", "hrv"): 0.31})
    body = get(fake_app, prom, timeRange="1h").json
    assert body["recommendations"][0]["code"] == "drift"
    assert body["recommendations"][0]["feature"] == "hrv"


@pytest.mark.parametrize("params, field", [
    ({"timeRange": "yesterday"}, "timeRange"),
    ({"timeRange": "1h", "start": "2026-01-01T00:00:00Z"}, "timeRange"),
    ({"end": "2026-01-01T00:00:00Z"}, "start"),
    ({"start": "soon"}, "start"),
    ({"start": "nan"}, "start"),
    ({"start": str(NOW - 10), "end": "inf"}, "end"),
    ({"start": str(NOW - 10), "end": str(NOW - 20)}, "end"),
    ({"start": str(NOW - 10), "end": str(NOW + 3600)}, "end"),
    ({"timeRange": "365d"}, "timeRange"),
    ({"modelTypes": "Workout Gen"}, "modelTypes"),
    ({"segmentation": "country"}, "segmentation"),
    ({"includeComparisons": "maybe"}, "includeComparisons"),
    ({"minSamples": "-1"}, "minSamples"),
    ({"baselineWindow": "a week"}, "baselineWindow"),
    ({"colour": "red"}, "colour"),
])
def test_bad_parameters_name_the_field(fake_app, params, field):
    resp = get(fake_app, FakeProm({}), **params)
    assert resp.status_code == 400, resp.json
    assert resp.json["error"]["details"][0]["field"] == field


def test_permissions_and_unreachable_prometheus(client):
    assert client.get(URL).status_code == 401
    assert client.get(URL, headers=auth("coach")).status_code == 403
    assert client.get(URL, headers=auth("executive")).status_code == 503


def test_openapi_documents_the_endpoints(client):
    paths = client.get("/api/openapi.json").json["paths"]
    assert "get" in paths["/api/analytics/ai-performance"]
    assert {"get", "post"} <= set(paths["/api/analytics/ai-experiments"])
    assert "get" in paths["/api/analytics/ai-experiments/{id}/assignment"]


def _accuracy_expr(window: str) -> str:
    return (f'sum by (model) (increase(ai_recommendations_total{{outcome="accepted"}}[{window}]))'
            f' / sum by (model) (increase(ai_recommendations_total'
            f'{{outcome=~"accepted|modified|rejected"}}[{window}]))')


@pytest.mark.integration
def test_falling_acceptance_is_seen_and_retraining_recommended(tmp_path, prometheus_factory,
                                                               service):
    """Acceptance of workout_gen falls from 85 % to 60 % while nutrition stays at 90 %."""
    # The outcome counters come from a prometheus_client exposition served here, scraped by
    # the real Prometheus as the `events` job (the events intake is built in parallel).
    registry = CollectorRegistry()
    outcomes = Counter("ai_recommendations", "outcomes", ["model", "model_version", "outcome"],
                       registry=registry)
    feedback = Histogram("ai_recommendation_feedback_score", "feedback", ["model"],
                         buckets=(1, 2, 3, 4, 5), registry=registry)
    src_port = free_port()
    server, _ = start_http_server(src_port, addr="127.0.0.1", registry=registry)

    # The real AI exporter, with evaluations and a drift reference posted to its API.
    cfg_path = tmp_path / "pulse.yml"
    cfg = write_pulse_config(cfg_path, tmp_path / "data",
                             exporters={"ai": {"drift": {"min_observations": 10}}})
    ai_listen = cfg["exporters"]["ai"]["listen"]
    env = pulse_env(tmp_path / "data")
    service("exporters.ai", cfg_path, env, ai_listen)
    ai = f"http://{ai_listen}/api/analytics/ai"
    jobs = requests.Session()  # the model-ops jobs: the exporter's API needs ai:write
    jobs.headers["Authorization"] = f"Bearer {env['PULSE_ADMIN_TOKEN']}"
    for model, version, acc in (("workout_gen", "1.4.2", 0.81), ("nutrition", "2.0.1", 0.92)):
        resp = jobs.post(f"{ai}/evaluations", timeout=10, json={
            "model": model, "modelVersion": version, "task": "workout_generation"
            if model == "workout_gen" else "nutrition", "metrics": {"accuracy": acc},
            "sampleSize": 2000})
        assert resp.status_code == 201, resp.text
        jobs.post(f"{ai}/drift/reference", timeout=10, json={
            "model": model, "feature": "score", "bins": [0, 0.5, 1], "counts": [50, 50]})
        jobs.post(f"{ai}/drift/observations", timeout=10, json={
            "model": model, "feature": "score", "counts": [48, 52]})
    try:
        prom = prometheus_factory(targets={"events": [f"127.0.0.1:{src_port}"],
                                           "ai": [ai_listen]})
        for model, version in (("workout_gen", "1.4.2"), ("nutrition", "2.0.1")):
            for outcome in ("accepted", "modified", "rejected", "ignored"):
                outcomes.labels(model, version, outcome)
        prom.wait_for_targets_up(["events", "ai"], timeout=60)
        prom.wait_for_value('count(ai_recommendations_total)', lambda v: v == 8, timeout=60)
        prom.wait_for_value('count(ai_model_drift_psi)', lambda v: v == 2, timeout=60)

        mix = {"workout_gen": (17, 2, 1), "nutrition": (18, 1, 1)}  # accepted, modified, rejected
        stop = threading.Event()

        def feed():
            while not stop.is_set():
                for model, (acc, mod, rej) in list(mix.items()):
                    version = "1.4.2" if model == "workout_gen" else "2.0.1"
                    outcomes.labels(model, version, "accepted").inc(acc)
                    outcomes.labels(model, version, "modified").inc(mod)
                    outcomes.labels(model, version, "rejected").inc(rej)
                    outcomes.labels(model, version, "ignored").inc(2)
                    feedback.labels(model).observe(4 if model == "nutrition" else 3)
                time.sleep(0.1)
        feeder = threading.Thread(target=feed, daemon=True)
        # Each phase lasts until Prometheus holds 8 scrapes of it (1 s apart), so the 6 s
        # windows at t1 and t2 lie wholly inside one phase.
        phase1 = time.time()
        feeder.start()
        t1 = prom.wait_for_samples('ai_recommendations_total{outcome="accepted"}', phase1, 8)
        mix["workout_gen"] = (12, 5, 3)  # 60 % accepted from now on
        t2 = prom.wait_for_samples('ai_recommendations_total{outcome="accepted"}', t1, 8)
        # Let the last scrape of phase 2 land before querying at t2.
        wait_until(lambda: prom.query("ai_recommendations_total", time.time() - 1.5) and
                   time.time() > t2 + 2, timeout=30)
        stop.set()
        feeder.join()

        before = {r["metric"]["model"]: float(r["value"][1])
                  for r in prom.query(_accuracy_expr("6s"), t1)}
        after = {r["metric"]["model"]: float(r["value"][1])
                 for r in prom.query(_accuracy_expr("6s"), t2)}
        assert before["workout_gen"] == pytest.approx(0.85, abs=0.04), before
        assert after["workout_gen"] == pytest.approx(0.60, abs=0.04), after
        assert after["nutrition"] == pytest.approx(0.90, abs=0.04), after

        bridge = create_app(bridge_config(tmp_path / "bridge", prometheus={
            "url": prom.url, "scrape_interval": "1s"}))
        resp = bridge.test_client().get(URL, headers=auth("analyst"), query_string={
            "start": f"{t1 + 1:.3f}", "end": f"{t2:.3f}", "minSamples": "50",
            "baselineWindow": "60s"})
        assert resp.status_code == 200, resp.json
        body = resp.json
        models = {m["model"]: m for m in body["models"]}
        wg, nu = models["workout_gen"], models["nutrition"]
        assert wg["accuracy"]["online"] == pytest.approx(0.60, abs=0.04)
        assert wg["accuracy"]["evaluated"] == 0.81
        assert wg["comparison"]["direction"] == "declining"
        assert wg["comparison"]["previousAccuracy"] > 0.75
        assert nu["accuracy"]["online"] == pytest.approx(0.90, abs=0.04)
        assert nu["drift"]["psi"]["score"] < 0.2
        assert nu["satisfaction"]["average"] == pytest.approx(4.0)
        assert {r["model"] for r in body["recommendations"]} == {"workout_gen"}
        assert "accuracy_low" in {r["code"] for r in body["recommendations"]}
        trend = next(t for t in body["trends"] if t["model"] == "workout_gen")
        assert trend["points"], trend
    finally:
        server.shutdown()
        server.server_close()
