"""Every series of the three test fixtures is one the code can emit (tests/synthetic.py)."""

from __future__ import annotations

import time

import pytest

from tests import synthetic


def _grafana():
    from tests.grafana.fixture import record

    rec = record(int(time.time()) // 60 * 60, hours=0.1)
    return [(name, labels) for name, items in rec.families.items() for labels, _ in items]


def _reports():
    from tests.bridge.reportdata import openmetrics

    end = time.time()
    return [(n, dict(pairs)) for n, pairs in synthetic.parse_series(
        openmetrics(end - 600, end, 60))]


def _rules():
    from tests.rules.fixture_metrics import exposition

    # The live target is scraped under every job name: check it as each exporter's.
    return [(n, dict(pairs)) for n, pairs in synthetic.parse_series(
        exposition(10.0, time.time()))]


@pytest.mark.parametrize("fixture", [_grafana, _reports, _rules], ids=["grafana", "reports",
                                                                       "rules"])
def test_fixture_writes_only_series_the_code_emits(fixture):
    items = fixture()
    assert len(items) > 30
    assert synthetic.check_all(items) == []


def test_a_label_value_the_code_never_emits_is_named():
    with pytest.raises(AssertionError, match="too_large.*invalid"):
        synthetic.series("pulse_events_rejected_total", reason="too_large")
    with pytest.raises(AssertionError, match="maps no event"):
        synthetic.series("fitness_feature_used_total", feature="workout_plan", platform="ios")
    with pytest.raises(AssertionError, match="collectors are"):
        synthetic.series("pulse_scrape_collector_success", "infrastructure", collector="memory")
    with pytest.raises(AssertionError, match="no exporter emits"):
        synthetic.series("fitness_made_up_total")
    assert synthetic.series("fitness_feature_used_total", "events", feature="ai_coach",
                            platform="ios")["instance"] == "127.0.0.1:9701"


def test_the_tables_come_from_the_code():
    from exporters.infrastructure import COLLECTORS

    assert synthetic.collectors()["infrastructure"] == tuple(COLLECTORS)
    assert "profiles" in synthetic.collectors()["events"]
    assert synthetic.mapping_values("fitness_sessions_total", "platform") == ("ios", "android",
                                                                              "web")
    assert synthetic.recording_rules()
