"""The exposition: promtool-clean, exactly the expected families, failures never fail a scrape."""

from __future__ import annotations

import subprocess

from exporters.events import EventsCollector
from exporters.events.examples import EXAMPLES, example_event
from exporters.events.mapping import DEFAULT_MAPPING
from exporters.scrape import ScrapeCollector
from tests import harness

SELF = {"pulse_events_received", "pulse_events_unmapped", "pulse_events_late",
        "pulse_event_lateness_seconds", "pulse_events_accepted", "pulse_events_duplicates",
        "pulse_events_rejected", "pulse_events_dead_letters", "pulse_ingest_batch_duration_seconds",
        "pulse_ingest_requests_rejected", "pulse_scrape_collector_success",
        "pulse_scrape_collector_duration_seconds", "pulse_build_info"}


def test_the_exposition_passes_promtool_check_metrics(intake):
    promtool = harness.require_binary("promtool")
    intake.post([example_event(rule) for rule in EXAMPLES] + [{"id": "bad"}])
    text = intake.client.get("/metrics").get_data()
    result = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True,
                            timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_golden_families(intake):
    import yaml
    intake.post([example_event(rule) for rule in EXAMPLES])
    mapped = {name.removesuffix("_total")
              for name in yaml.safe_load(DEFAULT_MAPPING.read_text())["metrics"]}
    families = {fam.name for fam in intake.registry.collect()}
    assert families == mapped | SELF


def test_a_failing_state_sets_collector_success_to_zero():
    class Broken:
        dead_letters = ()

        def read_metrics(self):
            raise OSError("disk gone")

    scrape = ScrapeCollector([("events", EventsCollector(Broken()))])
    samples = {s.name: s.value for fam in scrape.collect() for s in fam.samples}
    assert samples["pulse_scrape_collector_success"] == 0
    assert "pulse_scrape_collector_duration_seconds" in samples


def test_known_label_values_start_at_zero_before_the_first_event(intake):
    # Every plan of the allow-list is exported as 0, so increase() sees the first cancel.
    for plan in ("monthly", "quarterly", "annual", "family", "lifetime"):
        assert intake.value("business_subscriptions_canceled_total", plan=plan) == 0
    assert intake.value("business_revenue_total", stream="marketplace", currency="EUR") == 0
    # Pattern-checked labels (model) have no known values: nothing before a real event.
    assert intake.value("ai_safety_events_total", model="workout", kind="safety_rail") is None
    # Histograms are not pre-initialised (a quantile of nothing is not a measurement).
    assert intake.value("fitness_session_duration_seconds_count", platform="ios") is None
    assert intake.post([example_event("subscription_cancel")]).status_code == 200
    assert intake.value("business_subscriptions_canceled_total", plan="monthly") == 1
    assert intake.value("business_subscriptions_canceled_total", plan="annual") == 0


def test_initial_zeros_are_exported_not_stored(intake):
    intake.post([example_event("subscription_cancel")])
    intake.restart()
    assert intake.value("business_subscriptions_canceled_total", plan="monthly") == 1
    assert intake.value("business_subscriptions_canceled_total", plan="annual") == 0
    counters = {d.name: dict(s) for d, s in intake.intake.store.read_metrics()[0]}
    assert counters["business_subscriptions_canceled_total"] == {("monthly",): 1.0}


def test_known_series_only_for_small_fixed_products():
    from exporters.events.mapping import known_series, load_mapping_document
    doc, _ = load_mapping_document(None)
    known = known_series(doc)
    assert len(known["business_revenue_total"]) == 16  # two const streams x 8 currencies
    assert ("subscription", "USD") in known["business_revenue_total"]
    assert "ai_recommendations_total" not in known  # model is pattern-checked
    assert "fitness_session_duration_seconds" not in known  # histogram
    assert known_series(doc, limit=10).keys().isdisjoint({"business_revenue_total",
                                                          "fitness_workouts_started_total"})
