"""demo.modelops: the back-office jobs feed the real AI exporter and the costs mapping."""

from __future__ import annotations

import json
import threading

import pytest
from jsonschema import Draft202012Validator, FormatChecker
from prometheus_client import CollectorRegistry
from werkzeug.serving import make_server

from demo.modelops import DEGRADED_MODEL, FEATURES, MODEL_VERSIONS, ModelOps, bin_counts
from exporters.ai import create_app as ai_app
from exporters.events.mapping import HERE, load_mapping
from pulse.access import token_for
from pulse.config import validate
from tests import harness
from tests.bridge.conftest import TOKENS, token_entries

ENV = {"PULSE_PRIVACY_SALT": "test-salt-0123456789abcdef"}


class Scenario:
    name = "normal"


class Collect:
    """A Sender stand-in that keeps what was submitted."""

    def __init__(self):
        self.events: list[dict] = []

    def submit(self, events, raw=None):
        self.events += events


@pytest.fixture
def ai(tmp_path):
    cfg = validate({"data_dir": str(tmp_path), "privacy": {"salt": "${PULSE_PRIVACY_SALT}"},
                    "bridge": {"tokens": token_entries()}}, "test", ENV)
    registry = CollectorRegistry()
    server = make_server("127.0.0.1", harness.free_port(), ai_app(cfg, registry),
                         threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.port}", registry
    server.shutdown()


def test_bin_counts_are_open_ended():
    assert bin_counts((0, 10, 20), [-5, 0, 9.9, 10, 25]) == [3, 2]


def test_one_round_feeds_evaluations_drift_and_costs(ai):
    url, registry = ai
    scenario, sender = Scenario(), Collect()
    stats = {"recommendations": 500, "sessions": 3000}
    # The token the demo finds in bridge.tokens for ai:write (the admin's, first).
    token = token_for(token_entries(), "ai:write")
    assert token == TOKENS["admin"]
    ops = ModelOps(url, sender, scenario, stats, period=60, token=token)
    ops.run_once()
    assert ops.stats["errors"] == 0
    for model, version in MODEL_VERSIONS.items():
        acc = registry.get_sample_value("ai_model_accuracy_ratio",
                                        {"model": model, "model_version": version})
        assert 0.8 < acc < 0.95
        for name, *_ in FEATURES[model]:
            psi = registry.get_sample_value("ai_model_drift_psi",
                                            {"model": model, "feature": name})
            assert psi is not None and psi < 0.08, (model, name, psi)
    # The costs are analytics events the default mapping turns into business_costs_total.
    schema = json.loads((HERE / "schemas" / "analytics-event.schema.json").read_text())
    validator = Draft202012Validator(schema, format_checker=FormatChecker())
    mapping = load_mapping(None)
    fed = {}
    for ev in sender.events:
        assert not list(validator.iter_errors(ev)), ev
        for name, labels, amount in mapping.observe(ev):
            fed[(name, labels)] = fed.get((name, labels), 0) + amount
    assert fed[("business_costs_total", ("infrastructure", "USD"))] > 10
    assert fed[("business_costs_total", ("ai_processing", "USD"))] == pytest.approx(2.0)
    assert fed[("business_costs_total", ("support", "USD"))] > 0

    # ai-accuracy-drop: the degraded model's evaluation falls, its inputs drift moderately.
    scenario.name = "ai-accuracy-drop"
    for _ in range(3):
        ops.run_once()
    acc = registry.get_sample_value("ai_model_accuracy_ratio", {
        "model": DEGRADED_MODEL, "model_version": MODEL_VERSIONS[DEGRADED_MODEL]})
    assert acc < 0.7
    name = FEATURES[DEGRADED_MODEL][0][0]
    psi = registry.get_sample_value("ai_model_drift_psi",
                                    {"model": DEGRADED_MODEL, "feature": name})
    assert 0.02 < psi < 0.2
    # References are registered once: a restarted loop keeps them (and the window).
    again = ModelOps(url, Collect(), Scenario(), stats, period=60, token=token)
    again.run_once()
    assert again.references == ops.references and again.stats["errors"] == 0
