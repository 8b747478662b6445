"""Backpressure instead of loss: a full disk or a long commit queue answers 503 + Retry-After."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import threading
import time
import uuid

import pytest

from exporters.events.examples import example_event
from exporters.events.store import NoRoom
from tests.exporters.events.conftest import Intake

FLOOR = 4 << 20
SOURCE = {"name": "app", "write_key": "wk_app_0123", "platform": "ios"}
AUTH = {"Authorization": "Basic " + base64.b64encode(b"wk_app_0123:").decode()}


@pytest.fixture
def small_disk(tmp_path):
    """A 16 MiB tmpfs of its own (root only), unmounted afterwards."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small filesystem needs root")
    mount = tmp_path / "disk"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(mount)],
                   check=True)
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(disk, leave: int) -> None:
    """Write a filler file until only `leave` bytes are free."""
    st = os.statvfs(disk)
    free = st.f_bavail * st.f_frsize
    with open(disk / "filler", "wb") as out:
        out.write(b"\1" * max(0, free - leave))


def post_seed(app, events):
    return app.client.post("/api/analytics/events", json={
        "events": events, "clientTimestamp": "2026-11-25T10:00:00Z"})


def post_segment(app, n):
    batch = [{"type": "track", "event": "Workout Started", "userId": "u-1",
              "messageId": str(uuid.uuid4()), "properties": {"workoutType": "yoga"}}
             for _ in range(n)]
    return app.client.post("/v1/batch", data=json.dumps({"batch": batch}),
                           headers={"Content-Type": "application/json", **AUTH})


def test_a_full_disk_answers_503_with_retry_after_and_loses_nothing_acknowledged(small_disk):
    app = Intake(small_disk / "data", free_space_floor=FLOOR, checkpoint_bytes=65536,
                 sources=[SOURCE])
    try:
        acknowledged = 0
        for _ in range(5):
            resp = post_seed(app, [example_event("session_start") for _ in range(20)])
            assert resp.status_code == 200
            acknowledged += resp.get_json()["accepted"]
        assert post_segment(app, 7).status_code == 200
        fill(small_disk, FLOOR // 2)

        refused = post_seed(app, [example_event("session_start") for _ in range(20)])
        assert refused.status_code == 503
        assert int(refused.headers["Retry-After"]) >= 1
        assert refused.get_json()["error"]["code"] == "disk_full"
        seg = post_segment(app, 3)
        assert seg.status_code == 503 and int(seg.headers["Retry-After"]) >= 1
        assert seg.get_json()["success"] is False and seg.get_json()["code"] == "disk_full"
        assert app.value("pulse_events_accepted_total") == acknowledged + 7
        assert app.value("pulse_ingest_requests_rejected_total", reason="disk_full") == 2

        (small_disk / "filler").unlink()  # room again: accepted again
        resp = post_seed(app, [example_event("session_start") for _ in range(20)])
        assert resp.status_code == 200
        acknowledged += resp.get_json()["accepted"]
        app.restart()
        assert app.value("pulse_events_accepted_total") == acknowledged + 7
        assert app.value("fitness_sessions_total", platform="ios") == acknowledged
        assert app.value("fitness_workouts_started_total", platform="ios",
                         workout_type="yoga") == 7
    finally:
        app.close()


def test_a_long_commit_queue_answers_503_queue_full(tmp_path):
    app = Intake(tmp_path / "data", max_commit_queue=1)
    store = app.intake.store
    release, writing = threading.Event(), threading.Event()
    append = store.log.append

    def slow_append(data):
        writing.set()
        release.wait(30)
        append(data)
    store.log.append = slow_append
    try:
        answers = []
        posting = [threading.Thread(target=lambda: answers.append(post_seed(
            app, [example_event("session_start")]).status_code)) for _ in range(2)]
        posting[0].start()
        assert writing.wait(30)  # the first batch is being written
        posting[1].start()
        deadline = time.monotonic() + 30
        while store._writer.queued() < 1 and time.monotonic() < deadline:
            time.sleep(0.01)  # the second waits in the queue
        with pytest.raises(NoRoom) as info:
            store.check_room()
        assert info.value.reason == "queue_full"
        resp = post_seed(app, [example_event("session_start")])
        assert resp.status_code == 503 and resp.headers["Retry-After"] == "1"
        assert resp.get_json()["error"]["code"] == "queue_full"
    finally:
        release.set()
        for thread in posting:
            thread.join(30)
        app.close()
    assert answers == [200, 200]
