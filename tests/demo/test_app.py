"""demo.app: real SQLite work in the data dir, a cache, validation, the scenario endpoint."""

from __future__ import annotations

from pathlib import Path

import pytest
from flask.testing import FlaskClient
from prometheus_client import CollectorRegistry

from demo.app import create_app
from demo.scenarios import SCENARIOS, read_scenario


class Buffered(FlaskClient):
    """Closes each body as a WSGI server would, so the middleware records the request."""

    def open(self, *args, **kwargs):
        kwargs.setdefault("buffered", True)
        return super().open(*args, **kwargs)


@pytest.fixture
def app(demo_config):
    _, cfg, _ = demo_config
    registry = CollectorRegistry()
    app = create_app(cfg, registry)
    app.test_client_class = Buffered
    app.config["registry"] = registry
    return app


def test_users_workouts_nutrition_recommendations(app, demo_config):
    _, cfg, _ = demo_config
    client = app.test_client()
    uid = client.post("/api/users", json={"platform": "ios", "goal": "endurance"}).json["id"]
    assert client.get(f"/api/users/{uid}").json["platform"] == "ios"
    wid = client.post(f"/api/users/{uid}/workouts", json={"type": "yoga"}).json["id"]
    assert client.post(f"/api/workouts/{wid}/complete").json["type"] == "yoga"
    assert [w["id"] for w in client.get(f"/api/users/{uid}/workouts").json["workouts"]] == [wid]
    assert client.post(f"/api/users/{uid}/nutrition",
                       json={"meal": "lunch", "calories": 640}).status_code == 201
    assert client.get(f"/api/users/{uid}/nutrition").json["calories"] == 640
    rec = client.get(f"/api/recommendations/workout?user_id={uid}").json
    assert rec["model"] == "workout" and rec["recommendation"] == "workout:yoga"
    # The model call is timed into the app's registry.
    assert app.config["registry"].get_sample_value(
        "ai_inference_duration_seconds_count", {"model": "workout"}) == 1
    assert (Path(cfg.data_dir) / "demo" / "demo.db").exists()

    registry = app.config["registry"]
    route = "/api/users/{user_id}/workouts"
    assert registry.get_sample_value("http_server_request_duration_seconds_count", {
        "http_request_method": "GET", "http_route": route,
        "http_response_status_code": "200"}) == 1
    assert registry.get_sample_value("app_db_query_duration_seconds_count",
                                     {"operation": "insert"}) >= 3
    assert registry.get_sample_value("app_cache_requests_total", {"result": "hit"}) >= 1
    assert registry.get_sample_value("app_cache_requests_total", {"result": "miss"}) >= 1


@pytest.mark.parametrize("path,body,field", [
    ("/api/users", {"platform": "symbian", "goal": "x"}, "platform"),
    ("/api/users", {"goal": "x"}, "platform"),
    ("/api/users", ["not", "an", "object"], "body"),
    ("/api/users/1/nutrition", {"meal": "lunch", "calories": -5}, "calories"),
    ("/api/users/1/nutrition", {"meal": "lunch", "calories": "many"}, "calories"),
    ("/api/purchases", {"user_id": 1, "kind": "car", "item": "x"}, "kind"),
    ("/demo/scenario", {"name": "meteor-strike"}, "name"),
    ("/demo/scenario", {}, "name"),
])
def test_bad_input_is_a_json_400_naming_the_field(app, path, body, field):
    client = app.test_client()
    client.post("/api/users", json={"platform": "web", "goal": "sleep"})
    resp = client.post(path, json=body)
    assert resp.status_code == 400, resp.json
    assert resp.json["error"]["details"][0]["field"] == field


def test_unknown_things_are_json_404s(app):
    client = app.test_client()
    assert client.get("/api/users/999").status_code == 404
    assert client.get("/api/recommendations/horoscope?user_id=1").json["error"]["code"] \
        == "not_found"
    assert client.get("/nowhere").json["error"]["code"] == "not_found"
    assert client.delete("/api/users").status_code == 405


def test_scenario_endpoint_switches_the_shared_state(app, demo_config):
    _, cfg, _ = demo_config
    client = app.test_client()
    listing = client.get("/demo/scenario").json
    assert listing["name"] == "normal"
    assert set(listing["scenarios"]) == set(SCENARIOS)
    resp = client.post("/demo/scenario", json={"name": "latency-spike"}).json
    assert resp["alert"] == "ApiLatencyP95High"
    assert read_scenario(cfg.data_dir)["name"] == "latency-spike"
    client.post("/demo/scenario", json={"name": "normal"})
    assert read_scenario(cfg.data_dir)["name"] == "normal"


def test_purchase_without_payment_provider_is_a_502(app):
    client = app.test_client()
    uid = client.post("/api/users", json={"platform": "web", "goal": "sleep"}).json["id"]
    resp = client.post("/api/purchases", json={"user_id": uid, "kind": "program",
                                               "item": "yoga"})
    assert resp.status_code == 502
    assert resp.json["error"]["code"] == "payment_unavailable"
