"""The JetStream log's aggregators: partitions, snapshots with their sequence, takeover."""

from __future__ import annotations

import subprocess
import sys

from prometheus_client import CollectorRegistry

from exporters.events.aggregator import create_app as aggregator_app
from exporters.events.examples import example_event
from exporters.events.jetstream import partition_of
from tests.exporters.events.conftest import Intake, events_config
from tests.harness import free_port, wait_until


def test_partitions_are_the_same_in_every_process():
    # Python's hash() is salted per process: two intakes would disagree on a user's partition.
    code = ("from exporters.events.jetstream import partition_of;"
            "print([partition_of(f'user-{i}'.encode(), 8) for i in range(20)])")
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           check=True).stdout.strip()
    assert other == str([partition_of(f"user-{i}".encode(), 8) for i in range(20)])
    assert len({partition_of(f"user-{i}".encode(), 8) for i in range(200)}) == 8


def aggregator(intake: Intake, ident: str | None = None, **section):
    """Another aggregator process's app on the intake's stream (in this process); `section`
    replaces parts of the intake's configuration section."""
    cfg = events_config(intake.data_dir, **{**intake.section, **section})
    registry = CollectorRegistry()
    app = aggregator_app(cfg, ident or f"127.0.0.1:{free_port()}", registry)
    return app.extensions["pulse.aggregator"], registry


def workouts(n: int) -> list[dict]:
    return [example_event("workout_start", userId=f"user-{i}") for i in range(n)]


def test_a_restarted_aggregator_resumes_from_its_snapshot_without_double_counting(tmp_path, nats):
    intake = Intake(tmp_path / "data", nats)
    try:
        assert intake.post(workouts(40), batchId="a").status_code == 200
        assert intake.value("pulse_events_accepted_total") == 40
        intake.aggregator.stop()  # snapshots every partition, then releases its leases
        assert intake.post(workouts(10), batchId="b").status_code == 200
        assert intake.post(workouts(40), batchId="a").status_code == 200  # a retry

        second, registry = aggregator(intake)
        try:
            wait_until(second.caught_up, 30, 0.05, "the second aggregator to catch up")
            assert registry.get_sample_value("pulse_events_accepted_total") == 50
            assert registry.get_sample_value("pulse_events_received_total") == 50
        finally:
            second.stop()
    finally:
        intake.agg_server.shutdown()
        intake.close()


def test_a_standby_takes_over_the_partitions_of_a_dead_owner(tmp_path, nats):
    intake = Intake(tmp_path / "data", nats, aggregators={"lease_ttl": "2s"})
    try:
        assert intake.post(workouts(30), batchId="a").status_code == 200
        assert intake.value("pulse_events_accepted_total") == 30
        standby, registry = aggregator(intake)
        try:
            assert not standby.owned  # every partition is leased to the first one
            dead = intake.aggregator
            intake.aggregator = None
            dead.client.close()  # gone without a snapshot or a release: like SIGKILL
            assert intake.post(workouts(5), batchId="b").status_code == 200
            wait_until(standby.caught_up, 30, 0.1, "the standby to take every partition")
            assert registry.get_sample_value("pulse_events_accepted_total") == 35
            assert registry.get_sample_value("pulse_events_partitions_owned") == 4
        finally:
            standby.stop()
    finally:
        intake.agg_server.shutdown()
        intake.close()


def test_a_withdrawal_reaches_the_partition_that_holds_the_profile(tmp_path, nats):
    from pulse.profiles.stream import publish_withdrawal

    intake = Intake(tmp_path / "data", nats, profiles={"enabled": True})
    try:
        events = [example_event("workout_start", userId=f"user-{i}") for i in range(6)]
        assert intake.post(events, batchId="p").status_code == 200
        wait_until(intake.aggregator.caught_up, 30, 0.05, "the aggregator to catch up")

        def profiles() -> int:
            return sum(p.profiles.count() for p in intake.aggregator.owned.values())

        assert profiles() == 6
        cfg = events_config(intake.data_dir, **intake.section)
        assert publish_withdrawal(cfg, "user-3") is True
        assert profiles() == 5
        assert publish_withdrawal(cfg, "user-3") is False
        # A later event under the old consent does not bring the profile back.
        assert intake.post([example_event("workout_start", userId="user-3")]).status_code == 200
        wait_until(intake.aggregator.caught_up, 30, 0.05, "the aggregator to catch up")
        assert profiles() == 5
    finally:
        intake.stop()


def test_the_aggregators_run_the_profile_retention_job_on_their_partitions(tmp_path, nats):
    from datetime import UTC, datetime, timedelta

    from tests.pulse.profiles.population import event

    intake = Intake(tmp_path / "data", nats, profiles={
        "enabled": True, "retention": "2d", "retention_interval": "1s"})
    try:
        now = datetime.now(UTC)
        old = [event(f"old-{i}", now - timedelta(days=3), "session", "start") for i in range(6)]
        new = [event(f"new-{i}", now, "session", "start") for i in range(4)]
        assert intake.post(old + new, batchId="r").status_code == 200
        wait_until(intake.aggregator.caught_up, 30, 0.05, "the aggregator to catch up")
        # The users are spread over the partitions: the job runs on each of them.
        holding = {n for n, p in intake.aggregator.owned.items() if p.profiles.count()}
        assert len(holding) > 1

        def profiles() -> int:
            return sum(p.profiles.count() for p in intake.aggregator.owned.values())

        wait_until(lambda: profiles() == 4, 60, 0.1, "the inactive users to be deleted")
        # The snapshot carries the deletion: a successor whose own job would keep them (a
        # long retention) does not bring them back.
        intake.aggregator.stop()
        second, _ = aggregator(intake, profiles={**intake.section["profiles"],
                                                 "retention": "3650d"})
        try:
            wait_until(second.caught_up, 30, 0.05, "the second aggregator to catch up")
            assert sum(p.profiles.count() for p in second.owned.values()) == 4
        finally:
            second.stop()
    finally:
        intake.agg_server.shutdown()
        intake.close()
