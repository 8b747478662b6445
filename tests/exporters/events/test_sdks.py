"""Real Segment SDKs (nobody here wrote them) against the real intake and real Prometheus.

segment-analytics-python comes from the test extras; @segment/analytics-node is installed by
`make sdk` (tests/sdk/package.json) and run with the system's node.
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests

from tests import harness

pytestmark = pytest.mark.integration
MODULE = "exporters.events"
ROOT = Path(__file__).resolve().parents[3]
SDK_NODE_MODULES = ROOT / ".venv" / "sdk-node" / "node_modules"
SEND_JS = ROOT / "tests" / "sdk" / "send.js"
SOURCES = [
    {"name": "py", "write_key": "wk_py_0123", "platform": "ios"},
    {"name": "node", "write_key": "wk_node_0123", "platform": "android"},
    {"name": "slow", "write_key": "wk_slow_0123", "platform": "ios", "rate_limit": "2/s"},
]


@pytest.fixture
def intake(tmp_path, service):
    """A real intake process with the three sources; its listen address."""
    path = tmp_path / "pulse.yml"
    raw = harness.write_pulse_config(path, tmp_path / "data",
                                     exporters={"events": {"sources": SOURCES}})
    listen = raw["exporters"]["events"]["listen"]
    service(MODULE, path, harness.pulse_env(tmp_path / "data"), listen)
    return listen


@pytest.fixture
def node_sdk():
    """The command prefix running tests/sdk/send.js with the installed Node SDK."""
    node = shutil.which("node")
    if node is None:
        pytest.fail("node is not installed: run scripts/ensure-tools.sh")
    if not (SDK_NODE_MODULES / "@segment" / "analytics-node").is_dir():
        pytest.fail("@segment/analytics-node is not installed: run `make sdk` "
                    "(npm ci of tests/sdk into .venv/sdk-node)")
    return [node, str(SEND_JS)], {**os.environ, "NODE_PATH": str(SDK_NODE_MODULES)}


class DroppingProxy:
    """An HTTP proxy that forwards the first request, waits for the intake's whole answer (so
    the batch is committed) and then drops the connection without relaying it; every later
    request is relayed. It records the messageIds of every request."""

    def __init__(self, upstream: str):
        self.requests: list[tuple[list[str], str | None]] = []
        self.lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):  # noqa: N802 - the http.server API
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                headers = {k: v for k, v in self.headers.items()
                           if k.lower() not in ("host", "connection", "content-length")}
                plain = gzip.decompress(body) if self.headers.get(
                    "Content-Encoding") == "gzip" else body
                ids = sorted(m["messageId"] for m in json.loads(plain)["batch"])
                with proxy.lock:
                    proxy.requests.append((ids, self.headers.get("X-Retry-Count")))
                    first = len(proxy.requests) == 1
                resp = requests.post(f"http://{upstream}{self.path}", data=body,
                                     headers=headers, timeout=30)
                if first:
                    self.close_connection = True  # answer lost: the SDK must resend
                    return
                self.send_response(resp.status_code)
                for key, value in resp.headers.items():
                    if key.lower() not in ("connection", "transfer-encoding", "date",
                                           "server", "content-encoding"):
                        self.send_header(key, value)
                self.end_headers()
                self.wfile.write(resp.content)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self):
        """Stop serving."""
        self.server.shutdown()
        self.server.server_close()


def send_python(host: str, key: str, tracks: int, others: int, **client) -> list:
    """Send with segment-analytics-python; the errors its on_error reported."""
    from segment.analytics import Client

    errors = []
    sdk = Client(key, host=host, upload_interval=0.2, on_error=lambda e, b: errors.append(e),
                 **client)
    ctx = {"device": {"type": "ios", "model": "iPhone15,2"},
           "os": {"name": "iOS", "version": "18.1"}, "app": {"version": "4.12.0"}}
    for i in range(tracks):
        sdk.track(user_id=f"u-{i % 4}", event="Workout Completed", context=ctx,
                  properties={"workoutType": "strength", "duration": 1200 + i})
    for i in range(others):
        sdk.identify(user_id=f"u-{i}", traits={"plan": "pro"}, context=ctx)
        sdk.page(user_id=f"u-{i}", name="Pricing", properties={"path": "/pricing"})
        sdk.screen(anonymous_id=f"a-{i}", name="Today", context=ctx)
    sdk.flush()
    sdk.shutdown()
    return errors


def wait_counts(prometheus, listen, accepted: int, workouts: dict[str, int]) -> None:
    """Wait until Prometheus scraped exactly these counts."""
    prometheus.configure(targets={"events": [listen]})
    prometheus.wait_for_value(f'pulse_events_accepted_total{{instance="{listen}"}}',
                              lambda v: v == accepted, timeout=60)
    for platform, count in workouts.items():
        assert prometheus.query_value(
            f'sum(fitness_workouts_completed_total{{instance="{listen}",platform="{platform}"}})'
        ) == count


def test_python_sdk_events_are_counted_exactly(intake, prometheus):
    errors = send_python(f"http://{intake}", "wk_py_0123", 23, 7, gzip=True, upload_size=10)
    assert errors == []
    wait_counts(prometheus, intake, 23 + 3 * 7, {"ios": 23})
    assert prometheus.query_value(
        f'pulse_events_duplicates_total{{instance="{intake}"}}') == 0


def test_node_sdk_events_are_counted_exactly(intake, prometheus, node_sdk):
    argv, env = node_sdk
    opts = {"host": f"http://{intake}", "writeKey": "wk_node_0123", "tracks": 31,
            "identifies": 4, "pages": 5, "screens": 6}
    done = subprocess.run([*argv, json.dumps(opts)], env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "ERROR" not in done.stdout and "RESPONSE 200" in done.stdout
    wait_counts(prometheus, intake, 31 + 4 + 5 + 6, {"android": 31})


def test_python_sdk_resend_after_a_dropped_connection_is_not_counted_twice(
        intake, prometheus):
    proxy = DroppingProxy(intake)
    try:
        errors = send_python(proxy.url, "wk_py_0123", 12, 0, upload_size=100)
    finally:
        proxy.stop()
    assert errors == []
    assert len(proxy.requests) >= 2
    assert proxy.requests[0][0] == proxy.requests[1][0]  # the same messages again
    wait_counts(prometheus, intake, 12, {"ios": 12})


def test_node_sdk_resend_after_a_dropped_connection_is_not_counted_twice(
        intake, prometheus, node_sdk):
    argv, env = node_sdk
    proxy = DroppingProxy(intake)
    opts = {"host": proxy.url, "writeKey": "wk_node_0123", "tracks": 9, "identifies": 0,
            "pages": 0, "screens": 0, "flushAt": 50}
    try:
        done = subprocess.run([*argv, json.dumps(opts)], env=env, capture_output=True,
                              text=True, timeout=120)
    finally:
        proxy.stop()
    assert done.returncode == 0, done.stdout + done.stderr
    assert len(proxy.requests) >= 2
    assert proxy.requests[0][0] == proxy.requests[1][0]
    assert proxy.requests[1][1] == "1"  # the SDK's own retry marker
    wait_counts(prometheus, intake, 9, {"android": 9})


def test_python_sdk_waits_out_429_and_delivers_everything(intake, prometheus):
    errors = send_python(f"http://{intake}", "wk_slow_0123", 10, 0, upload_size=4)
    assert errors == []
    wait_counts(prometheus, intake, 10, {"ios": 10})
    assert prometheus.query_value(
        f'pulse_ingest_requests_rejected_total{{instance="{intake}",reason="rate_limited"}}'
    ) >= 1
