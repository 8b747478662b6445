"""The durable record: restarts restore every acknowledged increment, and nothing twice."""

from __future__ import annotations

import pytest

from exporters.events.examples import EXAMPLES, example_event
from exporters.events.store import EventStore, StoreError
from tests.exporters.events.conftest import Intake


def mixed_events(n: int) -> list[dict]:
    rules = sorted(EXAMPLES)
    return [example_event(rules[i % len(rules)]) for i in range(n)]


def exposition(app: Intake) -> dict:
    """Every sample except the per-process ones (request histogram, collector timing)."""
    skip = ("pulse_ingest_", "pulse_scrape_collector_duration", "pulse_build_info")
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for fam in app.registry.collect() for s in fam.samples
            if not s.name.startswith(skip)}


@pytest.mark.parametrize("checkpoint_bytes", [4096, 8 << 20])
def test_a_restart_restores_exactly_what_was_acknowledged(tmp_path, checkpoint_bytes):
    app = Intake(tmp_path / "data", checkpoint_bytes=checkpoint_bytes)
    for i in range(12):
        events = mixed_events(20) + [{"id": f"bad-{i}"}]
        assert app.post(events, batchId=f"b-{i}").status_code == 200
    before = exposition(app)
    assert before[("pulse_events_accepted_total", ())] == 240
    app.restart()
    assert exposition(app) == before
    if checkpoint_bytes == 4096:
        files = sorted(p.name for p in (tmp_path / "data" / "events").iterdir())
        assert "snapshot.json" in files and len([f for f in files if f.endswith(".wal")]) == 1
    app.close()


def test_retries_and_repeated_ids_are_still_recognised_after_a_restart(tmp_path):
    app = Intake(tmp_path / "data", checkpoint_bytes=4096)
    events = mixed_events(30)
    first = app.post(events, batchId="keep").get_json()
    for i in range(5):  # enough to force a checkpoint: the windows must survive it too
        app.post(mixed_events(30), batchId=f"filler-{i}")
    app.restart()
    before = exposition(app)
    assert app.post(events, batchId="keep").get_json() == first
    assert app.post(events[:5], batchId="new-batch-same-ids").get_json()["accepted"] == 5
    after = exposition(app)
    assert after[("pulse_events_duplicates_total", ())] == 5
    after[("pulse_events_duplicates_total", ())] = 0
    after[("pulse_events_received_total", ())] -= 5
    assert after == before
    app.close()


def test_a_torn_record_at_the_tail_is_cleared(tmp_path):
    app = Intake(tmp_path / "data")
    app.post(mixed_events(10), batchId="whole")
    before = exposition(app)
    end = app.intake.store.log.size
    app.close()
    log = next((tmp_path / "data" / "events").glob("log-*.wal"))
    with open(log, "r+b") as handle:  # a crash in the middle of an unacknowledged write
        handle.seek(end)
        handle.write(b"\x40\x00\x00\x00\x01\x02\x03\x04{\"b\":" + b"x" * 40)
    app.restart()
    assert exposition(app) == before
    assert log.read_bytes()[end:end + 100] == bytes(100)
    app.post(mixed_events(1), batchId="after")
    app.restart()
    assert exposition(app)[("pulse_events_accepted_total", ())] == 11
    app.close()


def test_dead_letters_survive_a_restart(tmp_path):
    app = Intake(tmp_path / "data")
    app.post([{"id": "x"}], batchId="dl")
    app.restart()
    rejected = app.dead_letters().get_json()["rejected"]
    assert [(d["batchId"], d["reason"]) for d in rejected] == [("dl", "invalid")]
    app.close()


def test_a_second_process_on_the_same_data_dir_is_refused(tmp_path):
    app = Intake(tmp_path / "data")
    with pytest.raises(StoreError, match="in use"):
        EventStore(tmp_path / "data" / "events", {})
    app.close()


def test_the_event_id_window_is_bounded():
    from exporters.events.state import IdWindow
    window = IdWindow(10)
    for key in range(100):
        window.add(key)
    assert len(window) <= 10 and 99 in window and 0 not in window


def test_a_record_that_cannot_be_written_fails_alone(tmp_path):
    from exporters.events.store import Batch
    store = EventStore(tmp_path / "events", {})
    bad = Batch("bad", b'{"batchId":"bad"}', ((1, ()),), (), ({"batchId": "\ud800"},), 1)
    good = Batch("good", b'{"batchId":"good"}', ((2, ()),), (), (), 1)
    bad_outcome, good_outcome = store.commit_group([bad, good])  # both in one group
    assert isinstance(bad_outcome, Exception)
    assert not isinstance(good_outcome, Exception) and good_outcome.body == b'{"batchId":"good"}'
    assert store.counter_value("pulse_events_accepted_total") == 1
    store.close()


def test_a_crash_between_a_rotation_and_its_snapshot_loses_nothing(tmp_path):
    from exporters.events.store import Batch
    store = EventStore(tmp_path / "events", {}, checkpoint_bytes=1 << 30)
    for i in range(3):
        store.commit(Batch(f"b{i}", b"{}", ((i, ()),), (), (), 1))
    store.log.rotate()  # the writer moved on; the snapshot (written beside it) never landed
    store.commit(Batch("b3", b"{}", ((3, ()),), (), (), 1))
    store._writer.close()
    store.log.close()  # killed: no snapshot
    again = EventStore(tmp_path / "events", {})
    assert again.counter_value("pulse_events_accepted_total") == 4
    assert again.commit(Batch("b1", b"{}", ((1, ()),), (), (), 1)).replayed
    again.checkpoint()
    again.close()
    names = sorted(p.name for p in (tmp_path / "events").iterdir())
    assert "snapshot.json" in names and len([n for n in names if n.endswith(".wal")]) == 1


def test_the_intakes_sums_per_series_plan_exactly_what_the_events_one_by_one_do():
    from exporters.events.mapping import MetricDef
    from exporters.events.state import Batch, MetricState

    metric = MetricDef("m_total", "counter", "help", ("k",), max_series=3)
    hist = MetricDef("h_seconds", "histogram", "help", ("k",), buckets=(1.0, 10.0))
    events = tuple((i, (("m_total", (f"v{i % 5}",), 1.0), ("h_seconds", ("a",), float(i))))
                   for i in range(1, 9))
    totals: dict = {}
    hists: dict = {}
    for _, fed in events:
        for name, labels, amount in fed:
            if name == "h_seconds":
                hists.setdefault((name, labels), []).append(amount)
            else:
                totals[(name, labels)] = totals.get((name, labels), 0.0) + amount

    def planned(batch_events, **sums):
        state = MetricState({"m_total": metric, "h_seconds": hist})
        state.ids.add(99)  # an id seen before: a batch repeating it takes the slow path
        records = [p.record for p in state.plan([Batch("b", b"{}", batch_events, (), (), 8,
                                                       **sums)])]
        return [{k: v for k, v in r.items() if k not in ("t", "r")} for r in records]

    # All new: the sums (capped once per series, the overflow in other) equal the slow way.
    assert planned(events, totals=totals, hists=hists) == planned(events)
    assert ["m_total", ["other"], 4.0] in planned(events)[0]["c"]  # v3, v4, v0, v3
    # A repeated id inside the batch or one seen before: the writer goes event by event.
    repeated = events + ((3, events[2][1]), (99, events[0][1]))
    assert planned(repeated, totals=totals, hists=hists) == planned(repeated)
    assert ["pulse_events_duplicates_total", [], 2] in planned(repeated)[0]["c"]
