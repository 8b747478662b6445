"""The AI exporter's API and scrape, in process (a real Prometheus scrape is in test_scrape)."""

import shutil
import subprocess

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, generate_latest

from exporters.ai import create_app
from pulse.config import validate
from tests.bridge.conftest import TOKENS, auth, token_entries
from tests.strategies import JSON


class Clock:
    """A settable clock."""

    def __init__(self, t=1_790_000_000.0):
        self.t = t

    def __call__(self):
        return self.t


def make(tmp_path, clock=None, **ai):
    """The exporter in process, and a test client sending an engineer's token (ai:write)."""
    cfg = validate({"data_dir": str(tmp_path / "data"), "privacy": {"salt": "s" * 32},
                    "bridge": {"tokens": token_entries()}, "exporters": {"ai": ai}},
                   "test", {})
    registry = CollectorRegistry()
    app = create_app(cfg, registry, clock=clock or Clock())
    client = app.test_client()
    client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {TOKENS['engineer']}"
    return app, client, registry


EVAL = {"model": "workout_gen", "modelVersion": "1.4.2", "task": "workout_generation",
        "metrics": {"accuracy": 0.82, "precision": 0.8, "recall": 0.7}, "sampleSize": 5000,
        "evaluatedAt": "2026-09-21T10:00:00Z"}


def test_evaluation_is_exported_and_survives_restart(tmp_path):
    _, client, registry = make(tmp_path)
    resp = client.post("/api/analytics/ai/evaluations", json=EVAL)
    assert resp.status_code == 201, resp.json
    labels = {"model": "workout_gen", "model_version": "1.4.2"}
    assert registry.get_sample_value("ai_model_accuracy_ratio", labels) == 0.82
    assert registry.get_sample_value("ai_model_recall_ratio", labels) == 0.7
    assert registry.get_sample_value("ai_model_evaluation_samples", labels) == 5000
    # A "restart": a new app on the same data directory keeps the value.
    _, client2, registry2 = make(tmp_path)
    assert registry2.get_sample_value("ai_model_accuracy_ratio", labels) == 0.82
    assert client2.get("/api/analytics/ai/evaluations").json["evaluations"][0]["sampleSize"] == 5000


def test_older_evaluation_does_not_replace_newer(tmp_path):
    _, client, registry = make(tmp_path)
    client.post("/api/analytics/ai/evaluations", json=EVAL)
    older = {**EVAL, "metrics": {"accuracy": 0.5}, "evaluatedAt": "2026-09-01T10:00:00Z"}
    resp = client.post("/api/analytics/ai/evaluations", json=older)
    assert resp.status_code == 201 and resp.json["current"] is False
    assert registry.get_sample_value(
        "ai_model_accuracy_ratio", {"model": "workout_gen", "model_version": "1.4.2"}) == 0.82


def test_versions_per_model_are_bounded(tmp_path):
    _, client, registry = make(tmp_path, max_versions_per_model=2)
    for i, day in enumerate(("01", "02", "03")):
        client.post("/api/analytics/ai/evaluations",
                    json={**EVAL, "modelVersion": f"1.{i}",
                          "evaluatedAt": f"2026-09-{day}T00:00:00Z"})
    text = generate_latest(registry).decode()
    assert 'model_version="1.0"' not in text
    assert 'model_version="1.1"' in text and 'model_version="1.2"' in text


@pytest.mark.parametrize("change, field", [
    ({"modelVersion": "latest!"}, "modelVersion"),
    ({"modelVersion": None}, "modelVersion"),
    ({"model": "Workout Gen"}, "model"),
    ({"task": "astrology"}, "task"),
    ({"metrics": {"accuracy": 1.5}}, "metrics.accuracy"),
    ({"metrics": {"vibes": 0.5}}, "metrics.vibes"),
    ({"metrics": {}}, "metrics"),
    ({"sampleSize": -3}, "sampleSize"),
    ({"sampleSize": 2.5}, "sampleSize"),
    ({"evaluatedAt": "yesterday"}, "evaluatedAt"),
    ({"evaluatedAt": "2099-01-01T00:00:00Z"}, "evaluatedAt"),
    ({"colour": "red"}, "colour"),
])
def test_bad_evaluation_names_the_field(tmp_path, change, field):
    _, client, registry = make(tmp_path)
    body = {k: v for k, v in {**EVAL, **change}.items() if v is not None}
    resp = client.post("/api/analytics/ai/evaluations", json=body)
    assert resp.status_code == 400, resp.json
    assert resp.json["error"]["details"][0]["field"] == field
    assert registry.get_sample_value("ai_model_accuracy_ratio",
                                     {"model": "workout_gen", "model_version": "1.4.2"}) is None


def test_non_json_and_huge_bodies(tmp_path):
    _, client, _ = make(tmp_path)
    resp = client.post("/api/analytics/ai/evaluations", data="nope", content_type="text/plain")
    assert resp.status_code == 400 and resp.json["error"]["details"][0]["field"] == "body"
    resp = client.post("/api/analytics/ai/evaluations", data="x" * (3 * 1024 * 1024),
                       content_type="application/json")
    assert resp.status_code == 413 and "error" in resp.json


def test_model_count_is_bounded(tmp_path):
    _, client, _ = make(tmp_path, max_models=1)
    assert client.post("/api/analytics/ai/evaluations", json=EVAL).status_code == 201
    resp = client.post("/api/analytics/ai/evaluations", json={**EVAL, "model": "other_model"})
    assert resp.status_code == 422 and resp.json["error"]["details"][0]["field"] == "model"


REF = {"model": "workout_gen", "feature": "score", "bins": [0, 0.25, 0.5, 0.75, 1.0],
       "counts": [25, 25, 25, 25]}


def test_drift_psi_exported_only_with_enough_observations(tmp_path):
    clock = Clock()
    _, client, registry = make(tmp_path, clock, drift={"min_observations": 100})
    assert client.post("/api/analytics/ai/drift/reference", json=REF).status_code == 201
    labels = {"model": "workout_gen", "feature": "score"}
    resp = client.post("/api/analytics/ai/drift/observations",
                       json={"model": "workout_gen", "feature": "score", "counts": [5, 10, 15, 20]})
    assert resp.status_code == 202
    assert registry.get_sample_value("ai_model_drift_psi", labels) is None
    assert registry.get_sample_value("ai_model_drift_window_observations", labels) == 50
    # Raw values are binned by the reference edges: 5 + 10 + 15 + 20 more.
    values = [0.1] * 5 + [0.3] * 10 + [0.6] * 15 + [0.9] * 20
    client.post("/api/analytics/ai/drift/observations",
                json={"model": "workout_gen", "feature": "score", "values": values})
    assert registry.get_sample_value("ai_model_drift_psi", labels) == pytest.approx(
        0.228217409573391, abs=1e-12)
    clock.t += 3600
    assert registry.get_sample_value("ai_model_drift_reference_age_seconds", labels) == 3600
    body = client.get("/api/analytics/ai/drift").json
    assert body["drift"][0]["psi"] == pytest.approx(0.228217409573391, abs=1e-12)
    assert body["drift"][0]["currentCounts"] == [10, 20, 30, 40]


def test_drift_window_forgets_old_observations(tmp_path):
    clock = Clock()
    _, client, registry = make(tmp_path, clock, drift={"window": "1h", "min_observations": 1})
    client.post("/api/analytics/ai/drift/reference", json=REF)
    client.post("/api/analytics/ai/drift/observations",
                json={"model": "workout_gen", "feature": "score", "counts": [1, 2, 3, 4]})
    labels = {"model": "workout_gen", "feature": "score"}
    assert registry.get_sample_value("ai_model_drift_window_observations", labels) == 10
    clock.t += 2 * 3600
    assert registry.get_sample_value("ai_model_drift_window_observations", labels) == 0
    assert registry.get_sample_value("ai_model_drift_psi", labels) is None


@pytest.mark.parametrize("body, field, status", [
    ({**REF, "counts": [1, 2, 3]}, "counts", 400),
    ({**REF, "counts": [1, -2, 3, 4]}, "counts[1]", 400),
    ({**REF, "counts": [0, 0, 0, 0]}, "counts", 400),
    ({**REF, "bins": [0, 0.5, 0.5, 1, 2]}, "bins[2]", 400),
    ({**REF, "bins": [0, "a", 1, 2, 3]}, "bins[1]", 400),
    ({**REF, "feature": "Score!"}, "feature", 400),
])
def test_bad_reference_names_the_field(tmp_path, body, field, status):
    _, client, _ = make(tmp_path)
    resp = client.post("/api/analytics/ai/drift/reference", json=body)
    assert resp.status_code == status, resp.json
    assert resp.json["error"]["details"][0]["field"] == field


@pytest.mark.parametrize("body, field, status", [
    ({"counts": [1, 2, 3]}, "counts", 400),
    ({"counts": [1, 2, -3, 4]}, "counts[2]", 400),
    ({"counts": [1, 2, 3, 4], "bins": [0, 0.5, 1.0]}, "bins", 400),
    ({"counts": [1, 2, 3, 4], "values": [0.1]}, "counts", 400),
    ({"values": []}, "values", 400),
    ({"values": [0.1, None]}, "values[1]", 400),
    ({"feature": "heart_rate", "counts": [1, 2, 3, 4]}, "feature", 404),
])
def test_bad_observations_name_the_field(tmp_path, body, field, status):
    _, client, _ = make(tmp_path)
    client.post("/api/analytics/ai/drift/reference", json=REF)
    resp = client.post("/api/analytics/ai/drift/observations",
                       json={"model": "workout_gen", "feature": "score", **body})
    assert resp.status_code == status, resp.json
    assert resp.json["error"]["details"][0]["field"] == field


def test_inference_reports_and_bad_durations(tmp_path):
    _, client, registry = make(tmp_path)
    resp = client.post("/api/analytics/ai/inference",
                       json={"model": "nutrition", "durations": [0.02, 0.3, 1.2]})
    assert resp.status_code == 202
    assert registry.get_sample_value("ai_inference_duration_seconds_count",
                                     {"model": "nutrition"}) == 3
    resp = client.post("/api/analytics/ai/inference", json={"model": "nutrition",
                                                            "durations": [0.1, -1]})
    assert resp.status_code == 400
    assert resp.json["error"]["details"][0]["field"] == "durations[1]"


def test_golden_scrape_and_promtool(tmp_path):
    _, client, registry = make(tmp_path, drift={"min_observations": 10})
    client.post("/api/analytics/ai/evaluations", json=EVAL)
    client.post("/api/analytics/ai/drift/reference", json=REF)
    client.post("/api/analytics/ai/drift/observations",
                json={"model": "workout_gen", "feature": "score", "counts": [10, 20, 30, 40]})
    text = client.get("/metrics").get_data(as_text=True)
    names = {line.split("{")[0].split(" ")[0] for line in text.splitlines()
             if line and not line.startswith("#")}
    assert names == {
        "pulse_build_info", "ai_model_accuracy_ratio", "ai_model_precision_ratio",
        "ai_model_recall_ratio", "ai_model_evaluation_samples",
        "ai_model_evaluation_timestamp_seconds", "ai_model_info", "ai_model_drift_psi",
        "ai_model_drift_window_observations", "ai_model_drift_reference_age_seconds",
        "ai_model_drift_reference_timestamp_seconds", "pulse_scrape_collector_success",
        "pulse_scrape_collector_duration_seconds",
    }
    assert 'pulse_scrape_collector_success{collector="drift"} 1.0' in text
    promtool = shutil.which("promtool")
    assert promtool, "promtool is missing: apt-get install -y prometheus"
    out = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr


def test_failing_collector_does_not_fail_the_scrape(tmp_path):
    app, client, registry = make(tmp_path)
    app.extensions["pulse.ai"].store.evaluations = lambda: 1 / 0
    text = client.get("/metrics").get_data(as_text=True)
    assert 'pulse_scrape_collector_success{collector="evaluations"} 0.0' in text


def test_collectors_can_be_switched_off(tmp_path):
    _, client, _ = make(tmp_path, collectors={"drift": False})
    text = client.get("/metrics").get_data(as_text=True)
    assert 'collector="evaluations"' in text and 'collector="drift"' not in text


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(path=st.sampled_from(["evaluations", "drift/reference", "drift/observations",
                             "inference"]),
       field=st.sampled_from(["model", "modelVersion", "metrics", "sampleSize", "bins",
                              "counts", "values", "durations", "evaluatedAt"]),
       value=JSON)
def test_bad_input_is_never_a_500(tmp_path, path, field, value):
    _, client, _ = make(tmp_path)
    client.post("/api/analytics/ai/drift/reference", json=REF)
    base = {"evaluations": EVAL, "drift/reference": REF,
            "drift/observations": {"model": "workout_gen", "feature": "score",
                                   "counts": [1, 2, 3, 4]},
            "inference": {"model": "m", "durations": [0.1]}}[path]
    resp = client.post(f"/api/analytics/ai/{path}", json={**base, field: value})
    assert resp.status_code < 500, resp.json
    if resp.status_code >= 400:
        assert resp.json["error"]["details"][0]["field"]


def test_the_api_needs_a_token_of_the_role_table(tmp_path):
    app, client, _ = make(tmp_path)
    anonymous = app.test_client()
    assert anonymous.post("/api/analytics/ai/evaluations", json=EVAL).status_code == 401
    assert anonymous.get("/api/analytics/ai/drift").status_code == 401
    refused = anonymous.post("/api/analytics/ai/evaluations", json=EVAL, headers=auth("analyst"))
    assert refused.status_code == 403
    assert refused.json["error"]["details"] == [{"field": "permission",
                                                 "problem": "ai:write required"}]
    assert anonymous.get("/api/analytics/ai/evaluations",
                         headers=auth("analyst")).status_code == 200
    assert client.post("/api/analytics/ai/evaluations", json=EVAL).status_code == 201
    records = app.extensions["pulse.audit"].read()
    assert [(r["who"], r["method"], r["route"], r["outcome"]) for r in records] == [
        ("engineer-user", "POST", "/api/analytics/ai/evaluations", "allowed"),
        ("analyst-user", "GET", "/api/analytics/ai/evaluations", "allowed"),
        ("analyst-user", "POST", "/api/analytics/ai/evaluations", "refused"),
        ("anonymous", "GET", "/api/analytics/ai/drift", "refused"),
        ("anonymous", "POST", "/api/analytics/ai/evaluations", "refused")]
    assert not any(t in app.extensions["pulse.audit"].path.read_text() for t in TOKENS.values())
