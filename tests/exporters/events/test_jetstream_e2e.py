"""Issue 19 end to end: 3 NATS nodes (replicas 3), 2 intakes, 2 aggregators, real Prometheus.

A client sends 100,000 events in batches, round-robin over the intakes, retrying a failed
batch (same batchId, same event ids) on the other one; during the load one intake, one NATS
node and one aggregator are SIGKILLed. Afterwards Prometheus (summing the aggregators) shows
exactly 100,000 events counted and exactly the number of distinct users sent.
"""

from __future__ import annotations

import itertools
import uuid
from datetime import UTC, datetime

import pytest
import requests

from exporters.events.examples import example_event
from tests.harness import (
    ROOT,
    NatsCluster,
    PrometheusServer,
    free_port,
    pulse_env,
    start_service,
    wait_until,
    write_pulse_config,
)

pytestmark = [pytest.mark.integration, pytest.mark.e2e, pytest.mark.timeout(600)]
EVENTS = 100_000
BATCH = 250
USERS = 2_000


def batches():
    """Deterministic batches: event i belongs to user i % USERS, all active today."""
    now = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    template = example_event("workout_start", timestamp=now)
    for start in range(0, EVENTS, BATCH):
        events = []
        for i in range(start, start + BATCH):
            event = dict(template, id=str(uuid.UUID(int=i + 1)), userId=f"user-{i % USERS}",
                         sessionId=f"s-{i % USERS}")
            events.append(event)
        yield f"batch-{start // BATCH}", events


def test_exact_counts_through_the_loss_of_an_intake_a_nats_node_and_an_aggregator(tmp_path):
    nats = NatsCluster(tmp_path / "nats", nodes=3).start()
    intakes = [f"127.0.0.1:{free_port()}" for _ in range(2)]
    aggregators = [f"127.0.0.1:{free_port()}" for _ in range(2)]
    config = tmp_path / "pulse.yml"
    data = tmp_path / "data"
    write_pulse_config(config, data, exporters={"events": {
        "listen": intakes,
        "log": {"kind": "jetstream", "servers": nats.servers, "replicas": 3, "partitions": 8,
                "duplicate_window": "1h"},
        "aggregators": {"listen": aggregators, "lease_ttl": "6s", "snapshot_interval": "2s"},
        "profiles": {"refresh_interval": "1s"}}})
    env = pulse_env(data)
    procs = {}
    prom = None
    try:
        for i, address in enumerate(aggregators):
            procs[f"agg{i}"] = start_service("exporters.events.aggregator", config, env,
                                             address, tmp_path / f"agg{i}.log",
                                             timeout=90, args=["--listen", address])
        for i, address in enumerate(intakes):
            procs[f"intake{i}"] = start_service("exporters.events", config, env, address,
                                                tmp_path / f"intake{i}.log", timeout=90,
                                                args=["--listen", address])
        # The profile series are published by the rules, after the sum over aggregators.
        prom = PrometheusServer(tmp_path / "prom", targets={"events": intakes + aggregators},
                                rule_files=[ROOT / "rules" / "profiles.rules.yml"])
        prom.start()

        session = requests.Session()
        rr = itertools.cycle(range(len(intakes)))
        total = EVENTS // BATCH
        retries = 0
        for n, (batch_id, events) in enumerate(batches()):
            if n == total // 5:
                procs["intake0"].kill()
            if n == 2 * total // 5:
                nats.kill(0)
            if n == 3 * total // 5:
                procs["agg0"].kill()
            body = {"batchId": batch_id, "events": events,
                    "clientTimestamp": events[0]["timestamp"]}
            for _attempt in range(200):
                target = next(rr)
                try:
                    resp = session.post(f"http://{intakes[target]}/api/analytics/events",
                                        json=body, timeout=30)
                except requests.RequestException:
                    retries += 1
                    continue
                if resp.status_code == 200:
                    assert resp.json()["accepted"] == BATCH, resp.text
                    break
                assert resp.status_code == 503, resp.text
                retries += 1
            else:
                raise AssertionError(f"{batch_id} never acknowledged")

        # No acknowledged event missing, none counted twice; distinct users exact.
        try:
            prom.wait_for_value("sum(pulse_events_accepted_total)", lambda v: v == EVENTS, 120)
        except AssertionError:
            raise AssertionError(
                f"accepted {prom.query_value('sum(pulse_events_accepted_total)')}, owned "
                f"{prom.query_value('sum(pulse_events_partitions_owned)')}") from None
        assert prom.query_value("sum(pulse_events_received_total)") == EVENTS
        assert prom.query_value("sum(pulse_events_duplicates_total)") == 0
        assert prom.query_value(
            'sum(fitness_workouts_started_total)') == EVENTS
        prom.wait_for_value('fitness_active_users{window="1d",platform="all"}',
                            lambda v: v == USERS, 60)
        # The surviving aggregator owns every partition.
        wait_until(lambda: prom.query_value("sum(pulse_events_partitions_owned)") == 8, 30)
        print(f"retried requests: {retries}")
    finally:
        if prom is not None:
            prom.stop()
        for proc in procs.values():
            proc.stop()
        nats.stop()
