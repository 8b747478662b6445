"""The demo fitness API (`python -m demo.app`), instrumented with exporters/instrument.py.

Real work behind every request: SQLite (WAL) in the data directory and an in-process
cache, so its latency metrics are genuine HTTP measurements. It also serves the
scenario control endpoint (`GET/POST /demo/scenario`).
"""

from __future__ import annotations

import random
import sqlite3
import threading
import time
from collections import OrderedDict
from pathlib import Path

import requests
from flask import Flask, jsonify, request
from prometheus_client import CollectorRegistry

from demo.scenarios import DEGRADED_MODEL, SCENARIOS, ScenarioWatch, read_scenario, write_scenario
from exporters.ai.inference import inference_histogram, observe_inference
from exporters.instrument import Instrumentation
from pulse.config import Config
from pulse.service import add_standard_routes, run_service

COMPONENT = "demo.app"
MODELS = {"workout": "2.3.1", "nutrition": "1.8.0", "recovery": "1.2.4"}
PLATFORMS = ("ios", "android", "web")
WORKOUT_TYPES = ("strength", "cardio", "yoga", "hiit", "running", "mobility")
MEALS = ("breakfast", "lunch", "dinner", "snack")
PLANS = {"monthly": 12.99, "annual": 99.0}
PROGRAM_CATEGORIES = ("strength", "hiit", "running", "yoga", "nutrition", "rehab")

SCHEMA = """
CREATE TABLE IF NOT EXISTS users (id INTEGER PRIMARY KEY, platform TEXT NOT NULL,
    goal TEXT NOT NULL, plan TEXT NOT NULL DEFAULT 'free', created REAL NOT NULL);
CREATE TABLE IF NOT EXISTS workouts (id INTEGER PRIMARY KEY, user_id INTEGER NOT NULL,
    type TEXT NOT NULL, started REAL NOT NULL, completed REAL);
CREATE INDEX IF NOT EXISTS workouts_user ON workouts(user_id, started);
CREATE TABLE IF NOT EXISTS nutrition (id INTEGER PRIMARY KEY, user_id INTEGER NOT NULL,
    meal TEXT NOT NULL, calories INTEGER NOT NULL, logged REAL NOT NULL);
CREATE INDEX IF NOT EXISTS nutrition_user ON nutrition(user_id, logged);
CREATE TABLE IF NOT EXISTS purchases (id INTEGER PRIMARY KEY, user_id INTEGER NOT NULL,
    kind TEXT NOT NULL, item TEXT NOT NULL, amount REAL NOT NULL, charge_id TEXT,
    created REAL NOT NULL);
"""


class ApiError(Exception):
    """A JSON error answer: {"error": {"code", "message", "details": [{"field", "problem"}]}}."""

    def __init__(self, status: int, code: str, message: str, field: str | None = None,
                 problem: str | None = None):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.details = [{"field": field, "problem": problem or message}] if field else []


class TTLCache:
    """A small thread-safe LRU cache whose entries expire after ttl seconds."""

    def __init__(self, size: int = 4096, ttl: float = 600.0):
        self.size, self.ttl = size, ttl
        self._data: OrderedDict = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key):
        """The cached value, or None."""
        with self._lock:
            item = self._data.get(key)
            if item is None or item[0] < time.monotonic():
                self._data.pop(key, None)
                return None
            self._data.move_to_end(key)
            return item[1]

    def put(self, key, value) -> None:
        """Cache value under key."""
        with self._lock:
            self._data[key] = (time.monotonic() + self.ttl, value)
            self._data.move_to_end(key)
            while len(self._data) > self.size:
                self._data.popitem(last=False)

    def drop(self, key) -> None:
        """Forget key."""
        with self._lock:
            self._data.pop(key, None)


class Store:
    """SQLite in the data directory, one connection per thread, every query timed."""

    def __init__(self, path: Path, instr: Instrumentation):
        self.path = path
        self.instr = instr
        self._local = threading.local()
        path.parent.mkdir(parents=True, exist_ok=True)
        with sqlite3.connect(path) as conn:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.executescript(SCHEMA)

    def conn(self) -> sqlite3.Connection:
        """This thread's connection."""
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=10, isolation_level=None)
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA synchronous=NORMAL")
            self._local.conn = conn
        return conn

    def query(self, operation: str, sql: str, args: tuple = ()) -> list[sqlite3.Row]:
        """Run one statement under the db timer; rows for a select."""
        with self.instr.db_query(operation):
            cur = self.conn().execute(sql, args)
            return cur.fetchall()

    def insert(self, sql: str, args: tuple) -> int:
        """Run an insert; the new row id."""
        with self.instr.db_query("insert"):
            return self.conn().execute(sql, args).lastrowid


def _body(required: dict[str, type]) -> dict:
    data = request.get_json(silent=True)
    if not isinstance(data, dict):
        raise ApiError(400, "invalid_body", "the body must be a JSON object",
                       "body", "expected a JSON object (Content-Type: application/json)")
    for name, kind in required.items():
        if name not in data:
            raise ApiError(400, "invalid_field", f"{name} is required", name, "required")
        value = data[name]
        if not isinstance(value, kind) or isinstance(value, bool):
            raise ApiError(400, "invalid_field", f"{name} has the wrong type", name,
                           f"expected {kind.__name__}")
    return data


def _one_of(data: dict, name: str, allowed) -> str:
    if data[name] not in allowed:
        raise ApiError(400, "invalid_field", f"{name} is not allowed", name,
                       f"must be one of: {', '.join(allowed)}")
    return data[name]


def infer(model: str, history: list[str], rng: random.Random) -> str:
    """The demo's recommendation model: score every workout type for the user, pick the best.

    The user's favourite type (history[0]) wins; the rest is a small real computation (dot
    products of random embeddings) so the inference latency the API measures is genuine.
    """
    user = [rng.gauss(0, 1) for _ in range(64)]
    best, best_score = WORKOUT_TYPES[0], float("-inf")
    for kind in WORKOUT_TYPES:
        item = [rng.gauss(0, 1) for _ in range(64)]
        score = sum(u * v for u, v in zip(user, item, strict=True))
        score += 1000.0 if history and kind == history[0] else 0.0
        if score > best_score:
            best, best_score = kind, score
    return best


def create_app(cfg: Config, registry: CollectorRegistry | None = None) -> Flask:
    """The demo API's WSGI app."""
    registry = registry or CollectorRegistry()
    app = Flask(__name__)
    app.config["PULSE"] = cfg
    instr = Instrumentation(registry)
    inference = inference_histogram(registry)
    add_standard_routes(app, registry, COMPONENT)
    instr.instrument_flask(app)
    data_dir = Path(cfg.data_dir)
    store = Store(data_dir / "demo" / "demo.db", instr)
    cache = TTLCache()
    scenario = ScenarioWatch(data_dir)
    payments_url = (cfg.demo.payments_url or f"http://{cfg.demo.payments_listen}").rstrip("/")
    http = requests.Session()
    rng = random.Random()
    app.extensions["pulse.demo"] = {"instr": instr, "store": store, "cache": cache}

    @app.errorhandler(ApiError)
    def api_error(exc: ApiError):
        """Every error as JSON."""
        return jsonify(error={"code": exc.code, "message": exc.message,
                              "details": exc.details}), exc.status

    @app.errorhandler(404)
    def not_found(exc):
        """Unknown paths as JSON."""
        return jsonify(error={"code": "not_found", "message": "no such resource",
                              "details": []}), 404

    @app.errorhandler(405)
    def not_allowed(exc):
        """Wrong methods as JSON."""
        return jsonify(error={"code": "method_not_allowed", "message": str(exc),
                              "details": []}), 405

    def user_or_404(user_id: int) -> dict:
        cached = cache.get(("user", user_id))
        instr.cache_result(cached is not None)
        if cached is not None:
            return cached
        rows = store.query("select", "SELECT * FROM users WHERE id = ?", (user_id,))
        if not rows:
            raise ApiError(404, "not_found", f"user {user_id} does not exist", "user_id",
                           "unknown user")
        user = dict(rows[0])
        cache.put(("user", user_id), user)
        return user

    @app.get("/")
    def index():
        """What this API is."""
        return {"service": "pulse demo fitness API", "scenario": scenario.name,
                "endpoints": sorted(str(r) for r in app.url_map.iter_rules())}

    @app.post("/api/users")
    def create_user():
        """Register a user."""
        data = _body({"platform": str, "goal": str})
        platform = _one_of(data, "platform", PLATFORMS)
        created = time.time()
        user_id = store.insert("INSERT INTO users(platform, goal, created) VALUES (?, ?, ?)",
                               (platform, data["goal"][:40], created))
        rows = store.query("select", "SELECT * FROM users WHERE id = ?", (user_id,))
        # Write-through: a new user's profile is read right after sign-up.
        cache.put(("user", user_id), dict(rows[0]))
        return {"id": user_id, "platform": platform, "plan": "free"}, 201

    @app.get("/api/users/<int:user_id>")
    def get_user(user_id: int):
        """A user's profile (cached)."""
        return user_or_404(user_id)

    @app.get("/api/users/<int:user_id>/workouts")
    def list_workouts(user_id: int):
        """A user's recent workouts; the route the latency-spike scenario slows down."""
        user_or_404(user_id)
        if scenario.active("latency-spike"):
            # A lock-contended query: the time is spent where a real incident spends it.
            with instr.db_query("select"):
                time.sleep(rng.uniform(2.1, 3.0))
        rows = store.query("select", "SELECT id, type, started, completed FROM workouts "
                           "WHERE user_id = ? ORDER BY started DESC LIMIT 20", (user_id,))
        return {"workouts": [dict(r) for r in rows]}

    @app.post("/api/users/<int:user_id>/workouts")
    def start_workout(user_id: int):
        """Start a workout."""
        user_or_404(user_id)
        data = _body({"type": str})
        kind = _one_of(data, "type", WORKOUT_TYPES)
        wid = store.insert("INSERT INTO workouts(user_id, type, started) VALUES (?, ?, ?)",
                           (user_id, kind, time.time()))
        return {"id": wid, "type": kind}, 201

    @app.post("/api/workouts/<int:workout_id>/complete")
    def complete_workout(workout_id: int):
        """Mark a workout completed."""
        rows = store.query("update", "UPDATE workouts SET completed = ? WHERE id = ? "
                           "RETURNING id, type", (time.time(), workout_id))
        if not rows:
            raise ApiError(404, "not_found", f"workout {workout_id} does not exist",
                           "workout_id", "unknown workout")
        return dict(rows[0])

    @app.post("/api/users/<int:user_id>/nutrition")
    def log_nutrition(user_id: int):
        """Log a meal."""
        user_or_404(user_id)
        data = _body({"meal": str, "calories": int})
        meal = _one_of(data, "meal", MEALS)
        if not 0 < data["calories"] <= 10000:
            raise ApiError(400, "invalid_field", "calories out of range", "calories",
                           "must be between 1 and 10000")
        nid = store.insert("INSERT INTO nutrition(user_id, meal, calories, logged) "
                           "VALUES (?, ?, ?, ?)", (user_id, meal, data["calories"], time.time()))
        return {"id": nid}, 201

    @app.get("/api/users/<int:user_id>/nutrition")
    def list_nutrition(user_id: int):
        """A user's meals of the last day."""
        user_or_404(user_id)
        rows = store.query("select", "SELECT meal, calories, logged FROM nutrition WHERE "
                           "user_id = ? AND logged > ? ORDER BY logged DESC",
                           (user_id, time.time() - 86400))
        return {"meals": [dict(r) for r in rows],
                "calories": sum(r["calories"] for r in rows)}

    @app.get("/api/recommendations/<model>")
    def recommend(model: str):
        """An AI recommendation from one of the three models (cached per user)."""
        if model not in MODELS:
            raise ApiError(404, "not_found", f"no model {model!r}", "model",
                           f"must be one of: {', '.join(MODELS)}")
        user_id = request.args.get("user_id", type=int)
        if user_id is None:
            raise ApiError(400, "invalid_field", "user_id is required", "user_id",
                           "required integer query parameter")
        user_or_404(user_id)
        key = ("rec", model, user_id)
        cached = cache.get(key)
        instr.cache_result(cached is not None)
        if cached is None:
            with instr.db_query("select"):
                recent = store.conn().execute(
                    "SELECT type, COUNT(*) AS n FROM workouts WHERE user_id = ? "
                    "GROUP BY type ORDER BY n DESC LIMIT 1", (user_id,)).fetchall()
            history = [r["type"] for r in recent]
            # The model call, timed into ai_inference_duration_seconds{model}.
            with observe_inference(model, inference):
                favourite = infer(model, history, rng)
            cached = {"model": model, "modelVersion": MODELS[model],
                      "recommendation": f"{model}:{favourite}",
                      "degraded": model == DEGRADED_MODEL
                      and scenario.active("ai-accuracy-drop")}
            cache.put(key, cached)
        return cached

    @app.post("/api/purchases")
    def purchase():
        """Buy a subscription or a marketplace program, charged by the payment provider."""
        data = _body({"user_id": int, "kind": str, "item": str})
        kind = _one_of(data, "kind", ("subscription", "program"))
        item = _one_of(data, "item", tuple(PLANS) if kind == "subscription"
                       else PROGRAM_CATEGORIES)
        user_or_404(data["user_id"])
        amount = PLANS[item] if kind == "subscription" else 29.0
        try:
            resp = http.post(f"{payments_url}/v1/charges", timeout=3,
                             json={"amount": amount, "currency": "USD"})
            resp.raise_for_status()
            charge = resp.json().get("id")
        except (requests.RequestException, ValueError) as exc:
            raise ApiError(502, "payment_unavailable", "the payment provider did not answer",
                           "payment", type(exc).__name__) from None
        pid = store.insert("INSERT INTO purchases(user_id, kind, item, amount, charge_id, "
                           "created) VALUES (?, ?, ?, ?, ?, ?)",
                           (data["user_id"], kind, item, amount, charge, time.time()))
        if kind == "subscription":
            with instr.db_query("update"):
                store.conn().execute("UPDATE users SET plan = ? WHERE id = ?",
                                     (item, data["user_id"]))
            cache.drop(("user", data["user_id"]))
        return {"id": pid, "amount": amount, "currency": "USD", "chargeId": charge}, 201

    @app.get("/demo/scenario")
    def get_scenario():
        """The active scenario and the list of scenarios."""
        state = read_scenario(data_dir)
        return {"name": state["name"], "since": state["since"],
                "scenarios": {n: {"description": d, "alert": a}
                              for n, (d, a) in SCENARIOS.items()}}

    @app.post("/demo/scenario")
    def set_scenario():
        """Switch the scenario: body {"name": "<scenario>"}."""
        data = _body({"name": str})
        _one_of(data, "name", tuple(SCENARIOS))
        state = write_scenario(data_dir, data["name"])
        return {"name": state["name"], "since": state["since"],
                "description": SCENARIOS[state["name"]][0],
                "alert": SCENARIOS[state["name"]][1]}

    return app


if __name__ == "__main__":
    run_service(COMPONENT, create_app, lambda cfg: cfg.demo.listen)
