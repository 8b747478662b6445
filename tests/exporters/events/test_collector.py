"""The exposition: promtool-clean, exactly the expected families, failures never fail a scrape."""

from __future__ import annotations

import subprocess

from exporters.events import EventsCollector
from exporters.events.examples import EXAMPLES, example_event
from exporters.events.mapping import DEFAULT_MAPPING
from tests import harness

SELF = {"pulse_events_received", "pulse_events_accepted", "pulse_events_duplicates",
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

    samples = {s.name: s.value for fam in EventsCollector(Broken()).collect()
               for s in fam.samples}
    assert samples["pulse_scrape_collector_success"] == 0
    assert "pulse_scrape_collector_duration_seconds" in samples
