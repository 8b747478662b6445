"""Two aggregators, each holding part of every group (under k alone), give in Prometheus the
very series a single process (the local log) gives: the published profile series are the
rules' (rules/profiles.rules.yml), computed after the sum over processes."""

from __future__ import annotations

import threading
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from prometheus_client import CollectorRegistry
from werkzeug.serving import make_server

from bridge.services.promql_scope import Enforced, scope
from exporters.events import create_app
from exporters.events.aggregator import create_app as aggregator_app
from pulse.profiles.aggregates import PUBLISHED
from pulse.profiles.stream import partition_of, user_key
from tests import harness
from tests.exporters.events.conftest import ENV, Intake, events_config
from tests.pulse.profiles.population import event
from tests.pulse.profiles.published import published

pytestmark = pytest.mark.integration
PARTITIONS = 4
PROFILES = {"enabled": True, "refresh_interval": "1s"}
SELECTOR = "{__name__=~\"" + "|".join(sorted(PUBLISHED)) + "\"}"


def users_of(partitions: set[int], n: int, prefix: str) -> list[str]:
    """n user ids whose partition (as the intake computes it) is in partitions."""
    salt = ENV["PULSE_PRIVACY_SALT"]
    out, i = [], 0
    while len(out) < n:
        uid = f"{prefix}-{i}"
        if partition_of(user_key(salt, uid), PARTITIONS) in partitions:
            out.append(uid)
        i += 1
    return out


def population(t0: datetime) -> list[dict]:
    """3 users on each aggregator's partitions: the first three complete half of their
    workouts, the others all of theirs; all enter the onboarding funnel and sign up."""
    events = []
    for group, (starts, gap) in (("a", (2, 30)), ("b", (1, 200))):
        for user in users_of({0, 1} if group == "a" else {2, 3}, 3, group):
            props = {"workoutType": "running", "coachId": "coach-1"}
            for _ in range(starts):
                events.append(event(user, t0, "workout", "start", props=props))
            events.append(event(user, t0, "workout", "complete", props=props))
            for i, step in enumerate(("app_open", "sign_up")):
                events.append(event(user, t0 + timedelta(seconds=i * gap), "funnel", "step",
                                    props={"funnel": "onboarding", "step": step}))
    return events


def serve(app, listen: str):
    host, port = listen.rsplit(":", 1)
    server = make_server(host, int(port), app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def published_series(prom) -> dict:
    return {(r["metric"]["__name__"], tuple(sorted(r["metric"].items()))): float(r["value"][1])
            for r in prom.query(SELECTOR)}


def test_two_aggregators_publish_what_one_process_publishes(tmp_path, nats, prometheus_factory):
    prom = prometheus_factory()
    t0 = datetime.now(UTC) - timedelta(minutes=5)
    events = population(t0)
    listens = [f"127.0.0.1:{harness.free_port()}" for _ in range(2)]
    section = {"profiles": PROFILES,
               "log": {"kind": "jetstream", "servers": nats.servers,
                       "stream": f"T{uuid.uuid4().hex[:12]}", "partitions": PARTITIONS,
                       "publish_timeout": "10s"},
               "aggregators": {"listen": listens, "lease_ttl": "10s"}}
    cfg = events_config(tmp_path / "ha", **section)
    intake = create_app(cfg, CollectorRegistry())
    servers, aggregators = [], []
    try:
        for listen in listens:  # each takes its fair share: partitions 0-1 and 2-3
            registry = CollectorRegistry()
            app = aggregator_app(cfg, listen, registry)
            aggregators.append((app.extensions["pulse.aggregator"], registry))
            servers.append(serve(app, listen))
        harness.wait_until(lambda: [sorted(a.owned) for a, _ in aggregators] == [[0, 1], [2, 3]],
                           30, 0.1, "each aggregator to own two partitions")
        resp = intake.test_client().post("/api/analytics/events", json={
            "events": events, "batchId": "pop", "clientTimestamp": t0.isoformat()})
        assert resp.status_code == 200 and resp.json["accepted"] == len(events)

        def families():
            return [a.profiles_collector.families for a, _ in aggregators]

        def complete():
            return all(sum(v for _, v in next(f for f in fams
                                              if f.name == "pulse_profiles_coach_clients").samples)
                       == 3 for fams in families())

        harness.wait_until(complete, 60, 0.2, "each aggregator to profile its three users")
        # Alone, each aggregator holds fewer than k users of every group, and a different ratio.
        ratios = []
        for fams in families():
            alone = published([fams], 5)
            assert ("fitness_active_users", ("1d", "all")) not in alone
            assert not any(name.startswith("fitness_coach_") for name, _ in alone)
            raw = {f.name: dict(f.samples) for f in fams}
            ratios.append(raw["pulse_profiles_coach_workouts_completed"][("coach-1",)]
                          / raw["pulse_profiles_coach_workouts_started"][("coach-1",)])
        assert ratios == [0.5, 1.0]
        rules = [harness.ROOT / "rules" / "profiles.rules.yml"]
        prom.configure(rule_files=rules, targets={"aggregators": listens})
        # What Prometheus publishes is the rules' reference over both processes' families
        # (waited for: a query may fall between two rules of one evaluation).
        expected = {(n, tuple(sorted({"__name__": n, **dict(zip(PUBLISHED[n], lbl,
                                                                  strict=True))}.items()))): v
                    for (n, lbl), v in published(families(), 5).items()}
        harness.wait_until(lambda: published_series(prom) == expected, 60, 0.5,
                           "Prometheus to publish the sums of both aggregators")
        two = published_series(prom)
        # A coach's scoped queries (the bridge's /prometheus) reach the published series of
        # their own clients, never the scraped partial counts (those name the coach in
        # coach_id, and hold groups under k).
        coach = Enforced("coach", "coach-1")
        assert prom.query(scope('{__name__=~"pulse_profiles_.+"}', coach)) == []
        assert prom.query(scope('pulse_profiles_coach_clients', coach)) == []
        assert len(prom.query(scope("fitness_coach_workout_completion_ratio", coach))) == 1
    finally:
        for server in servers:
            server.shutdown()
            server.server_close()  # refused at once, not a scrape left hanging
        for aggregator, _ in aggregators:
            aggregator.stop()
        intake.extensions["pulse.events"].store.close()

    local = Intake(tmp_path / "local", profiles=PROFILES)
    try:
        assert local.post(events, batchId="pop").status_code == 200
        local.intake.sinks[0].collector.refresh()
        listen = f"127.0.0.1:{harness.free_port()}"
        server = serve(local.app, listen)
        try:
            # The aggregators stay listed, now down: a failed scrape marks their series stale
            # (a job removed by a reload may leave them for the 5-minute lookback).
            prom.configure(targets={"aggregators": listens, "local": [listen]})
            prom.wait_for_value('absent(pulse_profiles_k_anonymity{job="aggregators"})',
                                timeout=60)
            prom.wait_for_value('pulse_profiles_k_anonymity{job="local"}', timeout=60)
            harness.wait_until(lambda: published_series(prom) == two, 60, 0.5,
                               "the single process to publish the same series")
        finally:
            server.shutdown()
            server.server_close()
    finally:
        local.close()
    # The figures themselves: 6 users (3 + 3, each under k = 5), completion 6 of 9 workouts
    # (0.5 on one aggregator, 1.0 on the other), the median sign-up time from both halves.
    values = {name: v for (name, _), v in two.items()}
    assert two[("fitness_active_users", (("__name__", "fitness_active_users"),
                                          ("platform", "all"), ("window", "1d")))] == 6
    assert values["fitness_coach_workout_completion_ratio"] == pytest.approx(6 / 9)
    assert values["fitness_coach_clients_active"] == 6
    assert values["fitness_funnel_step_median_seconds"] > 0
