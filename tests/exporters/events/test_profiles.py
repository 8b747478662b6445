"""Profiling behind the intake: consent, exactly-once profiles, withdrawal, the exposition."""

from __future__ import annotations

import subprocess
from datetime import UTC, datetime, timedelta

import pytest

from bridge import create_app as create_bridge
from exporters.scrape import ScrapeCollector
from pulse.config import validate
from pulse.profiles import ProfileStore, db_path
from pulse.profiles.aggregates import PUBLISHED
from tests import harness
from tests.exporters.events.conftest import ENV, Intake
from tests.pulse.profiles.population import event
from tests.pulse.profiles.published import published

K = 5
SALT = ENV["PULSE_PRIVACY_SALT"]


@pytest.fixture
def intake(tmp_path):
    """An intake with profiling on (refreshed by hand in these tests)."""
    app = Intake(tmp_path / "data", profiles={"enabled": True, "refresh_interval": "1h"})
    yield app
    app.close()


def collector(app: Intake):
    return app.intake.sinks[0].collector


def published_value(app: Intake, name: str, **labels) -> float | None:
    """One series the rules publish from this intake's families (tests/pulse/profiles)."""
    key = tuple(labels[n] for n in PUBLISHED[name])
    return published([collector(app).families], K).get((name, key))


def refreshed(app: Intake, name: str, **labels) -> float | None:
    collector(app).refresh()
    return published_value(app, name, **labels)


def store_of(app: Intake) -> ProfileStore:
    return ProfileStore(db_path(app.data_dir), SALT)


def now() -> datetime:
    return datetime.now(UTC) - timedelta(minutes=1)


def workout(user: str, event_id: str | None = None, **kw) -> dict:
    return event(user, now(), "workout", "start", props={"workoutType": "running"},
                 event_id=event_id, **kw)


def test_only_events_with_profile_consent_reach_a_profile(intake):
    refused = workout("u-no-track")
    refused["privacyFlags"]["canTrack"] = False
    resp = intake.post([workout("u-no-profile", can_profile=False), refused,
                        workout("u-anonymous") | {"userId": None}])
    assert resp.status_code == 200
    assert store_of(intake).count() == 0
    intake.post([workout(f"u-{i}") for i in range(K)])
    assert store_of(intake).count() == K  # committed before the answer was sent
    assert refreshed(intake, "fitness_active_users", window="1d", platform="all") == K
    assert intake.value("pulse_scrape_collector_success", collector="profiles") == 1


def test_every_acknowledged_event_counts_once(intake):
    events = [workout(f"u-{i}", event_id=f"e-{i}") for i in range(K)]
    intake.post(events, batchId="b-1")
    intake.post(events, batchId="b-1")  # a retry: the original answer, nothing again
    intake.post(events, batchId="b-2")  # the same ids in a new batch: duplicates
    store = store_of(intake)
    assert store.conn.execute("SELECT SUM(started) FROM users").fetchone()[0] == K
    # Beyond the intake's id window the store's own record of counted ids holds.
    store.apply(store.project(events))
    assert store.conn.execute("SELECT SUM(started) FROM users").fetchone()[0] == K


def test_a_withdrawn_user_no_longer_counts_anywhere(intake, tmp_path):
    bridge_cfg = validate({"data_dir": str(intake.data_dir), "privacy": {"salt": SALT},
                           "bridge": {"tokens": [{"name": "a", "role": "admin",
                                                  "token": "admin-token-0123456789"}]}},
                          "test", {})
    bridge = create_bridge(bridge_cfg).test_client()
    stepped = bridge.post("/api/analytics/access/step-up", json={"reason": "test withdrawal"},
                          headers={"Authorization": "Bearer admin-token-0123456789"})
    headers = {"Authorization": f"Bearer {stepped.json['token']}"}
    users = [f"u-{i}" for i in range(K + 1)]
    steps = ("app_open", "sign_up")
    batch, t0 = [], now()
    for user in users:
        for i, step in enumerate(steps):
            batch.append(event(user, t0 + timedelta(seconds=i * 30), "funnel", "step",
                               platform="web", props={"funnel": "onboarding", "step": step,
                                                      "coachId": "coach-7"}))
        batch.append(event(user, now(), "subscription", "start", etype="business_event",
                           props={"plan": "annual"}))
    assert intake.post(batch).status_code == 200
    assert bridge.post("/api/analytics/datasets/research", json={},
                       headers=headers).status_code == 201
    before = {"active": refreshed(intake, "fitness_active_users", window="7d", platform="web"),
              "subs": published_value(intake, "business_subscriptions_active", plan="annual"),
              "coach": published_value(intake, "fitness_coach_clients_active", coach="coach-7"),
              "funnel": published_value(intake, "fitness_funnel_step_median_seconds",
                                     funnel="onboarding", step="sign_up")}
    assert before == {"active": K + 1, "subs": K + 1, "coach": K + 1, "funnel": 30.0}

    resp = bridge.post("/api/analytics/privacy/withdraw", json={"userId": "u-0"}, headers=headers)
    assert resp.status_code == 200 and resp.json["researchFilesDeleted"] == 2
    assert refreshed(intake, "fitness_active_users", window="7d", platform="web") == K
    assert published_value(intake, "business_subscriptions_active", plan="annual") == K
    assert published_value(intake, "fitness_coach_clients_active", coach="coach-7") == K
    assert published_value(intake, "fitness_segment_users", engagement="low", plan="annual",
                        goal_category="none") == K
    assert list((intake.data_dir / "profiles" / "research").iterdir()) == []
    # Events sent under the old consent are not profiled again...
    intake.post([workout("u-0")])
    assert store_of(intake).count() == K
    # ...but a consent given after the withdrawal is honoured.
    later = (datetime.now(UTC) + timedelta(seconds=5)).isoformat().replace("+00:00", "Z")
    intake.post([workout("u-0", consent=later)])
    assert store_of(intake).count() == K + 1


def test_profiles_survive_a_restart(intake):
    intake.post([workout(f"u-{i}") for i in range(K)])
    intake.restart()
    assert refreshed(intake, "fitness_active_users", window="30d", platform="ios") == K


def test_the_exposition_with_profiles_passes_promtool(intake):
    promtool = harness.require_binary("promtool")
    intake.post([workout(f"u-{i}", platform=p) for i in range(K) for p in ("ios", "web")])
    collector(intake).refresh()
    text = intake.client.get("/metrics").get_data()
    assert b'pulse_profiles_active_users{platform="all",window="1d"} 5.0' in text
    assert b"pulse_profiles_k_anonymity 5.0" in text
    result = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True,
                            timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_retention_job_deletes_inactive_users(tmp_path):
    app = Intake(tmp_path / "data", profiles={"refresh_interval": "1s", "retention": "2d",
                                              "retention_interval": "1s"})
    try:
        old = datetime.now(UTC) - timedelta(days=3)
        app.post([event("u-old", old, "session", "start"), workout("u-new")])
        harness.wait_until(lambda: store_of(app).count() == 1, timeout=60,
                           message="the inactive user is deleted")
    finally:
        app.close()


def test_a_failing_refresh_reports_zero_and_no_stale_numbers(tmp_path):
    from exporters.events.profiles import ProfilesCollector
    broken = ProfilesCollector(tmp_path, k=K, funnels={}, refresh_seconds=60)  # a directory
    broken.refresh()
    assert broken.last_run()[0] == 0.0
    assert [f.name for f in broken.collect()] == ["pulse_profiles_refresh_timestamp_seconds"]
    # Through the one scrape wrapper, as the intake serves it.
    samples = {(s.name, s.labels.get("collector")): s.value
               for fam in ScrapeCollector([("profiles", broken)]).collect() for s in fam.samples}
    assert samples[("pulse_scrape_collector_success", "profiles")] == 0.0
