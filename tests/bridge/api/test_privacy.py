"""Consent withdrawal and research datasets through the bridge API."""

from __future__ import annotations

import csv
import io
import json
from datetime import timedelta
from pathlib import Path

import pytest

from bridge import create_app
from pulse.profiles import ProfileStore, db_path
from tests.bridge.conftest import auth, bridge_config, step_up
from tests.bridge.openapi_check import validate_response
from tests.pulse.profiles.population import NOW, event

WITHDRAW = "/api/analytics/privacy/withdraw"
RESEARCH = "/api/analytics/datasets/research"
SALT = "s" * 32  # the salt of bridge_config


@pytest.fixture
def api(tmp_path):
    """A bridge app whose data directory holds profiles of 23 users (written as the intake does)."""
    app = create_app(bridge_config(tmp_path, prometheus={"url": "http://127.0.0.1:9"},
                                   alertmanager={"url": "http://127.0.0.1:9"}))
    data_dir = Path(app.config["PULSE"].data_dir)
    store = ProfileStore(db_path(data_dir), SALT)
    when = NOW - timedelta(hours=2)
    events = []
    for i in range(23):
        goal = "endurance" if i < 15 else "sleep"
        events.append(event(f"user-{i}", when, "goal", "set", props={"goalCategory": goal}))
        events.append(event(f"user-{i}", when, "workout", "start",
                            props={"workoutType": "running"}))
        if i % 2:
            events.append(event(f"user-{i}", when, "workout", "complete",
                                props={"workoutType": "running"}))
    for e in events:
        e["privacyFlags"]["canShare"] = not e["userId"].endswith("-22")
    store.apply(store.project(events))
    store.close()
    return app, app.test_client(), data_dir


def test_withdrawal_needs_the_permission(api):
    _, client, _ = api
    assert client.post(WITHDRAW, json={"userId": "user-1"}).status_code == 401
    refused = client.post(WITHDRAW, json={"userId": "user-1"}, headers=auth("analyst"))
    assert refused.status_code == 403
    assert refused.json["error"]["details"][0]["problem"] == "privacy:withdraw required"


@pytest.mark.parametrize("body,field", [
    ({}, "userId"), ({"userId": ""}, "userId"), ({"userId": 7}, "userId"),
    ({"userId": "x" * 257}, "userId"), ({"userId": "a", "extra": 1}, "extra"), ([], "body")])
def test_bad_withdrawals_name_the_field(api, body, field):
    _, client, _ = api
    resp = client.post(WITHDRAW, json=body, headers=step_up(client, "admin"))
    assert resp.status_code == 400
    assert resp.json["error"]["details"][0]["field"] == field


def test_withdrawal_deletes_the_profile_and_every_research_file(api):
    app, client, data_dir = api
    made = client.post(RESEARCH, json={}, headers=step_up(client, "analyst"))
    assert made.status_code == 201
    files = made.json["files"]
    assert Path(files["csv"]).exists() and Path(files["metadata"]).exists()
    resp = client.post(WITHDRAW, json={"userId": "user-3"}, headers=step_up(client, "admin"))
    assert resp.status_code == 200, resp.json
    validate_response(client.get("/api/openapi.json").json, "Withdrawal", resp.json)
    assert resp.json["profileDeleted"] is True and resp.json["researchFilesDeleted"] == 2
    assert not Path(files["csv"]).exists() and not Path(files["metadata"]).exists()
    store = ProfileStore(db_path(data_dir), SALT)
    assert store.count() == 22
    uid = store.conn.execute("SELECT uid FROM withdrawn").fetchone()[0]
    for table in ("users", "funnel"):
        left = store.conn.execute(f"SELECT COUNT(*) FROM {table} WHERE uid = ?", (uid,))
        assert left.fetchone()[0] == 0
    # Neither the database nor its WAL keeps the raw id.
    for path in db_path(data_dir).parent.glob("profiles.db*"):
        assert b"user-3" not in path.read_bytes()
    again = client.post(WITHDRAW, json={"userId": "user-3"}, headers=step_up(client, "admin"))
    assert again.status_code == 200 and again.json["profileDeleted"] is False


def test_research_dataset_is_k_anonymous_and_documented(api):
    _, client, _ = api
    resp = client.post(RESEARCH, json={"attributes": ["goal_category", "plan"]},
                       headers=step_up(client, "analyst"))
    assert resp.status_code == 201, resp.json
    validate_response(client.get("/api/openapi.json").json, "ResearchDataset", resp.json)
    rows = resp.json["rows"]
    # 15 endurance users, 7 shareable sleep users (user-22 did not allow sharing).
    assert {(r["goal_category"], r["users"]) for r in rows} == {("endurance", 15), ("sleep", 7)}
    assert all(r["users"] >= 5 for r in rows)
    endurance = next(r for r in rows if r["goal_category"] == "endurance")
    assert endurance["workout_completion_mean"] == pytest.approx(7 / 15, abs=1e-4)
    meta = resp.json["metadata"]
    assert meta["k"] == 5 and meta["noise"] == {"mechanism": "none", "epsilon": None}
    parsed = list(csv.DictReader(io.StringIO(resp.json["csv"])))
    assert [int(r["users"]) for r in parsed] == [r["users"] for r in rows]
    assert json.loads(Path(resp.json["files"]["metadata"]).read_text()) == meta
    assert Path(resp.json["files"]["csv"]).read_text() == resp.json["csv"]
    # With k above a group's size, that group is not released.
    strict = client.post(RESEARCH, json={"attributes": ["goal_category"], "k": 8},
                         headers=step_up(client, "analyst")).json
    assert [r["goal_category"] for r in strict["rows"]] == ["endurance"]


def test_laplace_noise_states_its_epsilon(api):
    _, client, _ = api
    resp = client.post(RESEARCH, json={"attributes": ["goal_category"], "epsilon": 1.0},
                       headers=step_up(client, "admin"))
    assert resp.status_code == 201
    noise = resp.json["metadata"]["noise"]
    assert noise["mechanism"] == "laplace" and noise["epsilon"] == 1.0
    assert noise["epsilonPerValue"] == pytest.approx(1.0 / 6)
    assert all(r["users"] >= 0 for r in resp.json["rows"])


@pytest.mark.parametrize("body,field", [
    ({"attributes": ["age"]}, "attributes[0]"), ({"attributes": []}, "attributes"),
    ({"attributes": ["plan", "plan"]}, "attributes"), ({"k": 2}, "k"), ({"k": "9"}, "k"),
    ({"epsilon": 0}, "epsilon"), ({"epsilon": 5e-324}, "epsilon"),
    ({"attributes": [{}]}, "attributes"), ({"epsilon": 11}, "epsilon"),
    ({"epsilon": True}, "epsilon"),
    ({"epsilon": 1, "delta": 0}, "delta"), ({"epsilon": 1, "delta": 0.5}, "delta"),
    ({"epsilon": 1, "delta": "1e-6"}, "delta"), ({"delta": 1e-6}, "delta"),
    ({"rows": 1}, "rows")])
def test_bad_dataset_requests_name_the_field(api, body, field):
    _, client, _ = api
    resp = client.post(RESEARCH, json=body, headers=step_up(client, "analyst"))
    assert resp.status_code == 400, resp.json
    assert resp.json["error"]["details"][0]["field"] == field


def test_datasets_need_their_permission(api):
    _, client, _ = api
    assert client.post(RESEARCH, json={}, headers=auth("executive")).status_code == 403
    assert client.post(RESEARCH, json={}).status_code == 401


BUDGET = "/api/analytics/datasets/budget"


def test_the_dp_release_states_its_guarantee_and_the_exact_one_does_not_claim_dp(api):
    _, client, _ = api
    elevated = step_up(client, "analyst")
    exact = client.post(RESEARCH, json={}, headers=elevated).json["metadata"]
    assert exact["guarantee"].startswith("k-anonymity (k = 5)")
    assert "not differentially private" in exact["guarantee"]
    noisy = client.post(RESEARCH, json={"epsilon": 2.0, "delta": 1e-7},
                        headers=elevated).json["metadata"]
    assert noisy["noise"]["delta"] <= 1e-7
    assert noisy["guarantee"].startswith("(2, ") and "differential privacy" in noisy["guarantee"]
    # 23 users: every combination is far under the threshold that delta asks for.
    assert noisy["noise"]["counts"]["threshold"] > 23 and noisy["rows"] == 0


def test_the_budget_refuses_the_release_that_would_exceed_it_even_after_a_restart(tmp_path):
    cfg = bridge_config(tmp_path, prometheus={"url": "http://127.0.0.1:9"},
                        alertmanager={"url": "http://127.0.0.1:9"},
                        privacy={"budget": {"epsilon": 1.5, "delta": 1e-5}})
    client = create_app(cfg).test_client()
    spec = client.get("/api/openapi.json").json
    elevated = step_up(client, "analyst")
    first = client.post(RESEARCH, json={"epsilon": 1.0}, headers=elevated)
    assert first.status_code == 201, first.json
    assert first.json["metadata"]["budget"]["remaining"]["epsilon"] == pytest.approx(0.5)
    validate_response(spec, "ResearchDataset", first.json)
    assert client.post(RESEARCH, json={}, headers=elevated).status_code == 201

    restarted = create_app(cfg).test_client()
    elevated = step_up(restarted, "analyst")
    refused = restarted.post(RESEARCH, json={"epsilon": 1.0}, headers=elevated)
    assert refused.status_code == 409, refused.json
    assert refused.json["error"]["code"] == "privacy_budget_exceeded"
    detail = refused.json["error"]["details"][0]
    assert detail["field"] == "epsilon" and "at most 0.5 remains" in detail["problem"]
    assert restarted.post(RESEARCH, json={"epsilon": 0.5},
                          headers=elevated).status_code == 201

    assert restarted.get(BUDGET).status_code == 401
    denied = restarted.get(BUDGET, headers=auth("analyst"))
    assert denied.status_code == 403
    assert denied.json["error"]["details"][0]["problem"] == "privacy:budget required"
    ledger = restarted.get(BUDGET, headers=auth("admin"))
    assert ledger.status_code == 200
    validate_response(spec, "PrivacyBudget", ledger.json)
    (scope,) = ledger.json["scopes"]
    assert scope["scope"] == "research" and scope["spent"]["epsilon"] == pytest.approx(1.5)
    assert scope["dpReleases"] == 2 and scope["exactReleases"] == 1
    assert {r["requestedBy"] for r in scope["releases"]} == {"analyst-user"}


def test_a_withdrawal_with_nats_unreachable_is_a_503_and_deletes_nothing(api, tmp_path):
    from tests.harness import NatsCluster

    _, local, data_dir = api
    made = local.post(RESEARCH, json={}, headers=step_up(local, "analyst"))
    assert made.status_code == 201
    nats = NatsCluster(tmp_path / "nats", nodes=1).start()
    nats.stop()  # a real server, stopped: its port refuses connections
    cfg = bridge_config(tmp_path, prometheus={"url": "http://127.0.0.1:9"},
                        alertmanager={"url": "http://127.0.0.1:9"}, exporters={"events": {
                            "log": {"kind": "jetstream", "servers": nats.servers},
                            "aggregators": {"listen": ["127.0.0.1:1"]}}})
    assert Path(cfg.data_dir) == data_dir
    client = create_app(cfg).test_client()
    resp = client.post(WITHDRAW, json={"userId": "user-3"}, headers=step_up(client, "admin"))
    assert resp.status_code == 503, resp.json
    assert int(resp.headers["Retry-After"]) > 0
    validate_response(client.get("/api/openapi.json").json, "Error", resp.json)
    error = resp.json["error"]
    assert error["code"] == "dependency_unavailable"
    assert "NATS" in error["message"]
    assert error["details"][0]["field"] == "exporters.events.log.servers"
    assert "user-3" not in resp.get_data(as_text=True)
    # Nothing half-applied: the research files (and the local profiles) are all still there.
    files = made.json["files"]
    assert Path(files["csv"]).exists() and Path(files["metadata"]).exists()
    store = ProfileStore(db_path(data_dir), SALT)
    try:
        assert store.count() == 23
    finally:
        store.close()
