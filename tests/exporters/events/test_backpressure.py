"""Backpressure instead of loss: a full disk or a long commit queue answers 503 + Retry-After."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shlex
import shutil
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest

from exporters.events.examples import example_event
from exporters.events.store import NoRoom
from pulse.config import ConfigError
from tests.exporters.events.conftest import Intake, events_config

FLOOR = 4 << 20
SOURCE = {"name": "app", "write_key": "wk_app_0123", "platform": "ios"}
AUTH = {"Authorization": "Basic " + base64.b64encode(b"wk_app_0123:").decode()}
# A small filesystem of its own: as root a tmpfs mounted here; without root the same test runs
# in a child pytest inside a new user + mount namespace (`unshare --map-root-user`), where it
# is root and mounts its tmpfs. As root both variants run; nothing skips.
DISKS = ["user-namespace", *(["root-mount"] if os.geteuid() == 0 else [])]
UNSHARE = ["unshare", "--user", "--map-root-user", "--mount"]


@contextlib.contextmanager
def small_disk(tmp_path: Path):
    """A 16 MiB tmpfs of its own (needs root, or root of a user namespace), gone afterwards."""
    mount = tmp_path / "disk"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(mount)],
                   check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def in_user_namespace(test: str, tmp_path: Path) -> None:
    """Run `test[root-mount]` of this file in a child pytest inside a new user and mount
    namespace (no privilege needed); fail with its output, or with the command that allows
    unprivileged user namespaces when the kernel refuses one."""
    if shutil.which("unshare") is None:
        pytest.fail("`unshare` is missing; install it with: apt-get install -y util-linux",
                    pytrace=False)
    probe = [*UNSHARE, "sh", "-c", 'mount -t tmpfs -o size=1m tmpfs "$1"', "sh", str(tmp_path)]
    tried = subprocess.run(probe, capture_output=True, text=True, timeout=60)
    if tried.returncode != 0:
        pytest.fail(namespace_refused(shlex.join(probe), tried.stderr), pytrace=False)
    child = subprocess.run(
        [*UNSHARE, sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
         f"--basetemp={tmp_path / 'child'}", f"{__file__}::{test}[root-mount]"],
        capture_output=True, text=True, timeout=600, cwd=Path(__file__).parents[3])
    assert child.returncode == 0, f"{test} in a user namespace:\n{child.stdout[-6000:]}" \
                                  f"\n{child.stderr[-2000:]}"
    assert "1 passed" in child.stdout, child.stdout[-2000:]


def namespace_refused(command: str, stderr: str) -> str:
    """Why the kernel refused an unprivileged user namespace, and the command that allows it."""
    fixes = []
    for path, value, fix in (
            ("/proc/sys/user/max_user_namespaces", "0", "sysctl -w user.max_user_namespaces=15000"),
            ("/proc/sys/kernel/unprivileged_userns_clone", "0",
             "sysctl -w kernel.unprivileged_userns_clone=1"),
            ("/proc/sys/kernel/apparmor_restrict_unprivileged_userns", "1",
             "sysctl -w kernel.apparmor_restrict_unprivileged_userns=0")):
        with contextlib.suppress(OSError):
            if Path(path).read_text().strip() == value:
                fixes.append(fix)
    allow = " && ".join(f"sudo {f}" for f in fixes) or \
        "sudo sysctl -w user.max_user_namespaces=15000"
    return (f"`{command}` failed: {stderr.strip()}\nThe backpressure test needs a small "
            f"filesystem of its own. Allow unprivileged user namespaces with: {allow}\n"
            "or run the test as root (it then mounts the tmpfs directly).")


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


@pytest.mark.parametrize("disk", DISKS)
def test_a_full_disk_answers_503_with_retry_after_and_loses_nothing_acknowledged(disk, tmp_path):
    if disk == "user-namespace":
        in_user_namespace(
            "test_a_full_disk_answers_503_with_retry_after_and_loses_nothing_acknowledged",
            tmp_path)
        return
    with small_disk(tmp_path) as mount:
        full_disk(mount)


def full_disk(small_disk: Path) -> None:
    """Acknowledged events survive a full disk and a restart; the refused are told to retry."""
    app = Intake(small_disk / "data", free_space_floor=FLOOR, checkpoint_bytes=65536,
                 sources=[SOURCE], retry_after_disk_full="7s")
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
        assert refused.headers["Retry-After"] == "7"  # retry_after_disk_full
        assert refused.get_json()["error"]["code"] == "disk_full"
        seg = post_segment(app, 3)
        assert seg.status_code == 503 and seg.headers["Retry-After"] == "7"
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


@pytest.mark.parametrize(("configured", "header"), [({}, "1"),
                                                   ({"retry_after_queue_full": "2500ms"}, "3")])
def test_a_long_commit_queue_answers_503_queue_full(tmp_path, configured, header):
    app = Intake(tmp_path / "data", max_commit_queue=1, **configured)
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
        assert resp.status_code == 503 and resp.headers["Retry-After"] == header
        assert resp.get_json()["error"]["code"] == "queue_full"
    finally:
        release.set()
        for thread in posting:
            thread.join(30)
        app.close()
    assert answers == [200, 200]


def test_retry_after_keys_default_and_refuse_zero(tmp_path):
    """The Retry-After keys have their defaults; 0s (retry at once) is refused naming the key."""
    section = events_config(tmp_path).exporters.events
    assert (section.retry_after_disk_full, section.retry_after_queue_full) == ("5s", "1s")
    with pytest.raises(ConfigError) as info:
        events_config(tmp_path, retry_after_disk_full="0s")
    assert "exporters.events.retry_after_disk_full: '0s' does not match the expected form " \
        "'a duration greater than 0" in str(info.value)
