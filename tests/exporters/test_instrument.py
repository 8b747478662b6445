"""exporters/instrument.py: route templates, status, in-flight, db/cache, multiprocess."""

from __future__ import annotations

import os
import subprocess
import sys
import threading

import pytest
import requests
from flask import Flask, abort
from flask.testing import FlaskClient
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families
from werkzeug.test import Client

from exporters.instrument import Instrumentation, compile_routes, flask_rule_template
from pulse.service import close_server
from tests import harness

H = "http_server_request_duration_seconds"


class Buffered(FlaskClient):
    """A test client that consumes and closes the body, as a real WSGI server does."""

    def open(self, *args, **kwargs):
        kwargs.setdefault("buffered", True)
        return super().open(*args, **kwargs)


class BufferedPlain(Client):
    """The same for a plain WSGI app."""

    def open(self, *args, **kwargs):
        kwargs.setdefault("buffered", True)
        return super().open(*args, **kwargs)


def flask_app():
    registry = CollectorRegistry()
    instr = Instrumentation(registry)
    app = Flask(__name__)
    app.test_client_class = Buffered
    seen = {}

    @app.get("/users/<int:user_id>")
    def user(user_id):
        seen["inflight"] = registry.get_sample_value("http_server_active_requests",
                                                     {"http_request_method": "GET"})
        return {"id": user_id}

    @app.post("/users/<int:user_id>/workouts/<name>")
    def workout(user_id, name):
        return {"ok": True}, 201

    @app.get("/boom")
    def boom():
        raise RuntimeError("kaboom")

    @app.get("/teapot")
    def teapot():
        abort(418)

    instr.instrument_flask(app)
    return app, registry, instr, seen


def count(registry, method, route, status):
    return registry.get_sample_value(f"{H}_count", {"http_request_method": method,
                                                    "http_route": route,
                                                    "http_response_status_code": status})


def test_flask_routes_are_templates_never_raw_paths():
    app, registry, _, seen = flask_app()
    client = app.test_client()
    for uid in (1, 22, 333):
        assert client.get(f"/users/{uid}").status_code == 200
    assert client.post("/users/7/workouts/legs").status_code == 201
    assert count(registry, "GET", "/users/{user_id}", "200") == 3
    assert count(registry, "POST", "/users/{user_id}/workouts/{name}", "201") == 1
    routes = {s.labels["http_route"] for f in registry.collect() if f.name == H
              for s in f.samples}
    assert routes == {"/users/{user_id}", "/users/{user_id}/workouts/{name}"}
    assert seen["inflight"] == 1
    assert registry.get_sample_value("http_server_active_requests",
                                     {"http_request_method": "GET"}) == 0


def test_status_codes_errors_unknown_paths_and_methods():
    app, registry, _, _ = flask_app()
    client = app.test_client()
    assert client.get("/teapot").status_code == 418
    assert client.get("/boom").status_code == 500
    assert client.get("/no/such/42").status_code == 404
    assert client.open("/users/1", method="BREW").status_code == 405
    assert count(registry, "GET", "/teapot", "418") == 1
    assert count(registry, "GET", "/boom", "500") == 1
    assert count(registry, "GET", "other", "404") == 1
    assert count(registry, "other", "other", "405") == 1


def test_exception_escaping_the_app_counts_as_500():
    registry = CollectorRegistry()
    instr = Instrumentation(registry)

    def broken(environ, start_response):
        raise ValueError("no")

    app = instr.middleware(broken, routes=["/x"])
    with pytest.raises(ValueError):
        app({"PATH_INFO": "/x", "REQUEST_METHOD": "GET"}, lambda *a: None)
    assert count(registry, "GET", "/x", "500") == 1
    assert registry.get_sample_value("http_server_active_requests",
                                     {"http_request_method": "GET"}) == 0


def test_plain_wsgi_app_with_route_table_and_metrics_mount():
    registry = CollectorRegistry()
    instr = Instrumentation(registry)

    def plain(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"hi"]

    routes = ["/users/{id}", "/users/{id}/meals/{meal}"]
    client = BufferedPlain(instr.middleware(plain, routes=routes))
    client.get("/users/123")
    client.get("/users/9/meals/lunch")
    client.get("/elsewhere/9")
    client.get("/-/healthy")
    assert count(registry, "GET", "/users/{id}", "200") == 1
    assert count(registry, "GET", "/users/{id}/meals/{meal}", "200") == 1
    assert count(registry, "GET", "other", "200") == 1
    resp = client.get("/metrics")
    assert resp.status_code == 200
    assert resp.headers["Content-Type"].startswith("text/plain")
    assert 'http_route="/users/{id}"' in resp.get_data(as_text=True)
    assert "/-/healthy" not in resp.get_data(as_text=True)


def test_templates_helpers():
    assert flask_rule_template("/users/<int:user_id>/x/<path:rest>") == "/users/{user_id}/x/{rest}"
    match = compile_routes(["/a/{id}", "/a/{id}/b"])
    assert match("/a/1") == "/a/{id}" and match("/a/1/b") == "/a/{id}/b"
    assert match("/a") is None and match("/a/1/c") is None


def test_db_timer_as_context_manager_and_decorator_and_cache_counts():
    registry = CollectorRegistry()
    instr = Instrumentation(registry)
    with instr.db_query("select"):
        pass

    @instr.db_query("insert")
    def insert(x):
        return x * 2

    assert insert(2) == 4 and insert(3) == 6
    with instr.db_query("DROP TABLE users; --"):
        pass
    instr.cache_result(True)
    instr.cache_hit()
    instr.cache_miss()
    db = "app_db_query_duration_seconds_count"
    assert registry.get_sample_value(db, {"operation": "select"}) == 1
    assert registry.get_sample_value(db, {"operation": "insert"}) == 2
    assert registry.get_sample_value(db, {"operation": "other"}) == 1
    assert registry.get_sample_value("app_cache_requests_total", {"result": "hit"}) == 2
    assert registry.get_sample_value("app_cache_requests_total", {"result": "miss"}) == 1


def test_golden_scrape_and_promtool_check_metrics():
    app, registry, instr, _ = flask_app()
    client = app.test_client()
    client.get("/users/1")
    with instr.db_query("select"):
        pass
    instr.cache_result(False)
    text = instr.exposition().decode()
    golden = set()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            golden.add((sample.name, tuple(sorted(k for k in sample.labels if k != "le"))))
    assert golden == {
        (f"{H}_bucket", ("http_request_method", "http_response_status_code", "http_route")),
        (f"{H}_count", ("http_request_method", "http_response_status_code", "http_route")),
        (f"{H}_sum", ("http_request_method", "http_response_status_code", "http_route")),
        (f"{H}_created", ("http_request_method", "http_response_status_code", "http_route")),
        ("http_server_active_requests", ("http_request_method",)),
        ("app_db_query_duration_seconds_bucket", ("operation",)),
        ("app_db_query_duration_seconds_count", ("operation",)),
        ("app_db_query_duration_seconds_sum", ("operation",)),
        ("app_db_query_duration_seconds_created", ("operation",)),
        ("app_cache_requests_total", ("result",)),
        ("app_cache_requests_created", ("result",)),
    }
    promtool = harness.require_binary("promtool")
    check = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True,
                           text=True, timeout=60)
    assert check.returncode == 0, check.stdout + check.stderr


@pytest.mark.integration
def test_real_prometheus_scrapes_waitress_served_app(prometheus):
    from waitress.server import create_server

    app, registry, _, _ = flask_app()
    port = harness.free_port()
    server = create_server(app, host="127.0.0.1", port=port, threads=4)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        for uid in range(30):
            assert requests.get(f"http://127.0.0.1:{port}/users/{uid}", timeout=10).ok
        prometheus.configure(targets={"instrumented": [f"127.0.0.1:{port}"]})
        prometheus.wait_for_targets_up(["instrumented"], timeout=60)
        value = prometheus.wait_for_value(
            f'sum({H}_count{{job="instrumented",http_route="/users/{{user_id}}"}})',
            lambda v: v >= 30, timeout=60)
        assert value == 30
        p95 = prometheus.query_value(
            f'histogram_quantile(0.95, sum by (le) ({H}_bucket{{job="instrumented"}}))')
        assert p95 is not None and 0 < p95 < 10
    finally:
        close_server(server)


@pytest.mark.integration
def test_gunicorn_two_workers_share_metrics(tmp_path):
    mp = tmp_path / "multiproc"
    mp.mkdir()
    conf = tmp_path / "gunicorn.conf.py"
    conf.write_text("from exporters.instrument import gunicorn_child_exit as child_exit\n")
    port = harness.free_port()
    env = dict(os.environ, PROMETHEUS_MULTIPROC_DIR=str(mp), PYTHONPATH=str(harness.ROOT))
    proc = harness.Process([sys.executable, "-m", "gunicorn", "-c", str(conf), "-w", "2",
                            "-b", f"127.0.0.1:{port}", "tests.exporters.instrument_app:app"],
                           tmp_path / "gunicorn.log", env=env, cwd=harness.ROOT)
    try:
        base = f"http://127.0.0.1:{port}"
        harness.wait_until(lambda: requests.get(f"{base}/users/0", timeout=2).ok, timeout=60,
                           message="gunicorn answering")
        pids = set()
        sent = 1
        # New connection per request: the kernel spreads them over both workers' accepts.
        while len(pids) < 2 or sent < 60:
            resp = requests.get(f"{base}/users/{sent}", timeout=10,
                                headers={"Connection": "close"})
            pids.add(resp.json()["pid"])
            sent += 1
            assert sent < 2000, f"only one worker ever answered: {pids}"
        assert len(pids) == 2
        for _ in range(6):  # whichever worker answers /metrics reports both workers' samples
            text = requests.get(f"{base}/metrics", timeout=10,
                                headers={"Connection": "close"}).text
            values = {(s.name, tuple(sorted(s.labels.items()))): s.value
                      for f in text_string_to_metric_families(text) for s in f.samples}
            key = (f"{H}_count", (("http_request_method", "GET"),
                                  ("http_response_status_code", "200"),
                                  ("http_route", "/users/{user_id}")))
            assert values[key] == sent
            assert values[("app_db_query_duration_seconds_count",
                           (("operation", "select"),))] == sent
            hits = values[("app_cache_requests_total", (("result", "hit"),))]
            misses = values[("app_cache_requests_total", (("result", "miss"),))]
            assert hits + misses == sent
        assert len(list(mp.glob("*.db"))) >= 2
    finally:
        proc.stop()


def test_route_template_kept_when_an_earlier_hook_answers():
    registry = CollectorRegistry()
    app = Flask(__name__)
    app.test_client_class = Buffered

    @app.before_request
    def deny():
        return {"error": "no token"}, 401

    @app.get("/coaches/<coach_id>/clients")
    def clients(coach_id):
        return {}

    Instrumentation(registry).instrument_flask(app)
    assert app.test_client().get("/coaches/c-17/clients").status_code == 401
    assert count(registry, "GET", "/coaches/{coach_id}/clients", "401") == 1
