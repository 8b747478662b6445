"""demo.sink: apprise delivers channel `demo` to it; it prints the page and keeps it in a file."""

from __future__ import annotations

import io
import json
import threading

import apprise
import requests

from demo.sink import Sink, make_server, notifications_path
from tests import harness


def serve(sink: Sink) -> tuple[str, object]:
    listen = f"127.0.0.1:{harness.free_port()}"
    server = make_server(listen, sink)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1},
                     daemon=True).start()
    return listen, server


def test_apprise_json_notification_is_printed_and_kept(tmp_path):
    console = io.StringIO()
    sink = Sink(tmp_path, console)
    listen, server = serve(sink)
    try:
        notifier = apprise.Apprise()
        assert notifier.add(f"json://{listen}/notify")
        assert notifier.notify(title="[FIRING:1] ApiLatencyP95High critical",
                               body="p95 of /api/users/{user_id}/workouts is 2.6 s",
                               notify_type=apprise.NotifyType.FAILURE)
        lines = notifications_path(tmp_path).read_text().splitlines()
        assert len(lines) == 1
        note = json.loads(lines[0])
        assert note["title"] == "[FIRING:1] ApiLatencyP95High critical"
        assert note["type"] == "failure"
        printed = console.getvalue()
        assert "demo channel: [FIRING:1] ApiLatencyP95High critical" in printed
        assert "p95 of /api/users/{user_id}/workouts is 2.6 s" in printed
        listed = requests.get(f"http://{listen}/notifications", timeout=5).json()
        assert listed["notifications"][0]["title"] == note["title"]
    finally:
        server.shutdown()
        server.server_close()


def test_bad_bodies_are_json_400s(tmp_path):
    listen, server = serve(Sink(tmp_path, io.StringIO()))
    try:
        for body in (b"not json", b"[1, 2]"):
            resp = requests.post(f"http://{listen}/notify", data=body, timeout=5)
            assert resp.status_code == 400
            assert resp.json()["error"]["details"][0]["field"] == "body"
        assert not notifications_path(tmp_path).exists()
    finally:
        server.shutdown()
        server.server_close()


def test_sink_process_writes_to_the_console_it_is_given(demo_config, tmp_path):
    path, cfg, env = demo_config
    console = tmp_path / "terminal.txt"
    console.write_text("supervisor banner\n")
    proc = harness.start_service("demo.sink", path, env, cfg.demo.sink_listen,
                                 tmp_path / "sink.log", args=["--console", str(console)])
    try:
        notifier = apprise.Apprise()
        notifier.add(f"json://{cfg.demo.sink_listen}/notify")
        assert notifier.notify(title="[RESOLVED] ApiLatencyP95High", body="back to normal")
        harness.wait_until(lambda: "[RESOLVED] ApiLatencyP95High" in console.read_text(),
                           timeout=30, message="the page on the console")
        assert console.read_text().startswith("supervisor banner\n")
    finally:
        proc.stop()
