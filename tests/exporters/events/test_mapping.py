"""The mapping: allow-lists, patterns, the series cap, validation of the YAML, the examples."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from exporters.events.examples import EXAMPLES, example_event
from exporters.events.mapping import (
    DEFAULT_MAPPING,
    Mapping,
    MappingError,
    load_mapping,
    validate_mapping,
)

DOCS = Path(__file__).resolve().parents[3] / "docs" / "events.md"
PII = [r"[^@\s]+@[^@\s]+\.[A-Za-z]{2,}", r"\+?[0-9][0-9 ().-]{7,}[0-9]"]


def default_doc() -> dict:
    return yaml.safe_load(DEFAULT_MAPPING.read_text())


def test_the_shipped_mapping_is_valid():
    assert validate_mapping(default_doc()) == []


@pytest.mark.parametrize("rule", sorted(EXAMPLES))
def test_each_example_feeds_the_metric_of_its_rule(rule):
    mapping = load_mapping(None, PII)
    fed = {name for name, _, _ in mapping.observe(example_event(rule))}
    assert EXAMPLES[rule][0] in fed


def test_every_rule_has_an_example_and_every_example_is_in_the_docs():
    rules = {r["name"] for r in default_doc()["rules"]}
    assert rules == set(EXAMPLES)
    text = DOCS.read_text()
    blocks = [json.loads(b) for b in re.findall(r"```json\n(.*?)```", text, re.S)]
    for rule, (metric, fields) in EXAMPLES.items():
        assert f"`{metric}`" in text, metric
        assert any(all(b.get(k) == v for k, v in fields.items()) for b in blocks), rule


def test_required_catalogue_metrics_are_all_mapped():
    metrics = set(default_doc()["metrics"])
    for name in ["fitness_sessions_total", "fitness_session_duration_seconds",
                 "fitness_workouts_started_total", "fitness_workouts_completed_total",
                 "fitness_nutrition_logs_total", "fitness_feature_used_total",
                 "fitness_funnel_step_total", "fitness_app_crashes_total",
                 "fitness_client_request_duration_seconds", "fitness_users_signed_up_total",
                 "fitness_exercise_completions_total", "fitness_injuries_reported_total",
                 "fitness_goals_achieved_total", "business_revenue_total",
                 "business_subscriptions_started_total", "business_subscriptions_canceled_total",
                 "business_marketplace_programs_sold_total", "business_trainer_commission_total",
                 "ai_recommendations_total", "ai_recommendation_feedback_score",
                 "ai_safety_events_total", "ai_experiment_exposures_total",
                 "ai_experiment_conversions_total", "integration_wearable_syncs_total"]:
        assert name in metrics


def test_values_outside_the_allow_list_become_other():
    mapping = load_mapping(None, PII)
    event = example_event("workout_start", properties={"workoutType": "underwater_chess"})
    assert mapping.observe(event) == [
        ("fitness_workouts_started_total", ("ios", "other"), 1.0)]
    event = example_event("workout_start", properties={"workoutType": ["strength"]})
    assert mapping.observe(event)[0][1] == ("ios", "other")
    event = example_event("workout_start", properties={})
    assert mapping.observe(event)[0][1] == ("ios", "other")


def test_sum_and_histogram_rules_take_numbers_only():
    mapping = load_mapping(None, PII)
    purchase = example_event("marketplace_revenue")
    fed = {name: (labels, amount) for name, labels, amount in mapping.observe(purchase)}
    assert fed["business_revenue_total"] == (("marketplace", "EUR"), 29.0)
    assert fed["business_trainer_commission_total"] == (("EUR",), 20.3)
    assert fed["business_marketplace_programs_sold_total"] == (("strength",), 1.0)
    refund = example_event("marketplace_revenue", value=-5)
    assert "business_revenue_total" not in {n for n, _, _ in mapping.observe(refund)}
    no_value = example_event("session_end")
    del no_value["value"]
    assert mapping.observe(no_value) == []


def test_event_type_and_has_conditions_restrict_rules():
    mapping = load_mapping(None, PII)
    assert mapping.observe(example_event("session_start", eventType="system_event")) == []
    exposure = example_event("experiment_exposure", properties={"experiment": "x"})
    assert mapping.observe(exposure) == []


def test_the_series_cap_folds_new_label_sets_into_other(intake):
    doc = default_doc()
    doc["metrics"]["ai_experiment_exposures_total"]["max_series"] = 3
    intake.intake.mapping = Mapping(doc, PII)
    intake.intake.store.state.defs["ai_experiment_exposures_total"] = (
        intake.intake.mapping.metrics["ai_experiment_exposures_total"])
    events = [example_event("experiment_exposure",
                            properties={"experiment": f"exp-{i}", "variant": "a"})
              for i in range(6)]
    assert intake.post(events).get_json()["accepted"] == 6
    series = dict(intake.intake.store.state.counters["ai_experiment_exposures_total"])
    assert len(series) == 3
    assert series[("other", "other")] == 4  # exp-2 .. exp-5
    # A known label set keeps counting after the cap is reached.
    intake.post([example_event("experiment_exposure",
                               properties={"experiment": "exp-0", "variant": "a"})])
    assert intake.value("ai_experiment_exposures_total", experiment="exp-0", variant="a") == 2


@pytest.mark.parametrize(("change", "problem"), [
    (lambda d: d["rules"][0].update(metric="nope_total"), "is not defined"),
    (lambda d: d["rules"][0]["labels"].pop("platform"), "must be exactly"),
    (lambda d: d["rules"][0]["labels"].update(
        platform={"from": "userId", "values": ["x"]}), "userId"),
    (lambda d: d["rules"][0]["labels"].update(
        platform={"from": "sessionId", "pattern": ".*"}), "sessionId"),
    (lambda d: d["metrics"]["fitness_sessions_total"].update(type="histogram"), "buckets"),
    (lambda d: d["metrics"]["fitness_session_duration_seconds"].update(buckets=[5, 1]),
     "increasing"),
    (lambda d: d["metrics"].update(bad_name={"type": "counter", "help": "x", "labels": []}),
     "_total"),
    (lambda d: d["rules"][1].pop("value"), "needs `value`"),
    (lambda d: d.update(surprise=1), "surprise"),
])
def test_bad_mappings_are_refused_with_their_location(tmp_path, change, problem):
    doc = default_doc()
    change(doc)
    path = tmp_path / "mapping.yml"
    path.write_text(yaml.safe_dump(doc))
    with pytest.raises(MappingError) as err:
        load_mapping(path)
    assert problem in str(err.value)


def test_a_missing_mapping_file_is_a_clear_error(tmp_path):
    with pytest.raises(MappingError, match="cannot read"):
        load_mapping(tmp_path / "absent.yml")
