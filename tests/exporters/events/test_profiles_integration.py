"""Real Prometheus scrapes the real intake with profiling on; withdrawal through the real bridge."""

from __future__ import annotations

import signal
import uuid
from datetime import UTC, datetime, timedelta

import pytest
import requests

from tests import harness
from tests.pulse.profiles.population import event

pytestmark = pytest.mark.integration


def test_prometheus_shows_the_profile_series_and_a_withdrawal(tmp_path, service, prometheus):
    data_dir = tmp_path / "data"
    path = tmp_path / "pulse.yml"
    raw = harness.write_pulse_config(
        path, data_dir, exporters={"events": {"profiles": {"refresh_interval": "1s"}}})
    env = harness.pulse_env(data_dir)
    listen = raw["exporters"]["events"]["listen"]
    bridge = raw["bridge"]["listen"]
    intake = service("exporters.events", path, env, listen)
    service("bridge", path, env, bridge)
    t0 = datetime.now(UTC) - timedelta(minutes=5)
    events = []
    for i in range(7):
        for platform in ("ios", "web") if i < 2 else ("android",):
            events.append(event(f"member-{i}", t0, "workout", "start", platform=platform,
                                props={"workoutType": "yoga", "coachId": "coach-1"}))
            events.append(event(f"member-{i}", t0, "workout", "complete", platform=platform,
                                props={"workoutType": "yoga"}))
    resp = requests.post(f"http://{listen}/api/analytics/events", timeout=30,
                         json={"events": events, "batchId": str(uuid.uuid4()),
                               "clientTimestamp": t0.isoformat()})
    assert resp.status_code == 200 and resp.json()["accepted"] == len(events)
    # The published series are the rules' (summed over processes, then k applied).
    prometheus.configure(targets={"events": [listen]},
                         rule_files=[harness.ROOT / "rules" / "profiles.rules.yml"])
    active = 'fitness_active_users{window="1d",platform="%s"}'
    prometheus.wait_for_value(active % "all", lambda v: v == 7, timeout=60)
    assert prometheus.query_value(active % "android") == 5
    assert prometheus.query_value(active % "ios") is None  # 2 users, fewer than k: not published
    assert prometheus.query_value(
        f'pulse_profiles_active_users{{instance="{listen}",window="1d",platform="ios"}}') == 2
    assert prometheus.query_value('fitness_coach_workout_completion_ratio{coach="coach-1"}') == 1
    assert prometheus.query_value(
        f'pulse_scrape_collector_success{{instance="{listen}",collector="profiles"}}') == 1

    resp = requests.post(f"http://{bridge}/api/analytics/privacy/withdraw", timeout=30,
                         json={"userId": "member-6"},
                         headers=harness.step_up(bridge, env["PULSE_ADMIN_TOKEN"]))
    assert resp.status_code == 200 and resp.json()["profileDeleted"] is True
    prometheus.wait_for_value(active % "all", lambda v: v == 6, timeout=60)

    # Acknowledged profiles survive kill -9.
    intake.kill(signal.SIGKILL)
    service("exporters.events", path, env, listen)
    prometheus.wait_for_value(f'up{{instance="{listen}"}}', lambda v: v == 1, timeout=60)
    prometheus.wait_for_value(active % "all", lambda v: v == 6, timeout=60)
