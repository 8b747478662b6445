"""A real browser (headless Chromium) on another origin sends with fetch and sendBeacon."""

from __future__ import annotations

import functools
import re
import shutil
import subprocess
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests import harness

pytestmark = pytest.mark.integration
HERE = Path(__file__).resolve().parent
KEY = "wk_web_browser_01"


class Quiet(SimpleHTTPRequestHandler):
    """Serves the test page; no access log."""

    def log_message(self, *args):
        pass


@pytest.fixture
def page_server():
    """Serve browser_page.html from a loopback origin: page_server(port) -> origin URL."""
    servers = []

    def start(port: int) -> str:
        handler = functools.partial(Quiet, directory=str(HERE))
        server = ThreadingHTTPServer(("127.0.0.1", port), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{port}"
    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def open_page(url: str, profile: Path) -> str:
    """What the page wrote after its async work (chromium --dump-dom)."""
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.fail("chromium is not installed: run scripts/ensure-tools.sh")
    done = subprocess.run(
        [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         f"--user-data-dir={profile}", "--virtual-time-budget=10000", "--dump-dom", url],
        capture_output=True, text=True, timeout=60)
    found = re.search(r"DONE ([^<]*)", done.stdout)
    assert found, f"the page did not finish: {done.stdout[-500:]} {done.stderr[-2000:]}"
    return found.group(1)


def test_a_page_from_an_allowed_origin_is_counted_and_another_is_refused(
        tmp_path, service, prometheus, page_server):
    allowed = page_server(harness.free_port())
    path = tmp_path / "pulse.yml"
    raw = harness.write_pulse_config(path, tmp_path / "data", exporters={"events": {
        "sources": [{"name": "web", "write_key": KEY, "platform": "web",
                     "cors_origins": [allowed]}]}})
    listen = raw["exporters"]["events"]["listen"]
    service("exporters.events", path, harness.pulse_env(tmp_path / "data"), listen)
    page = f"/browser_page.html?intake=http://{listen}&key={KEY}"

    seen = open_page(allowed + page, tmp_path / "profile-a")
    assert seen == ("fetch-auth 200 | fetch-text 200 | fetch-seed 200 | beacon true"), seen
    prometheus.configure(targets={"events": [listen]})
    accepted = f'pulse_events_accepted_total{{instance="{listen}"}}'
    prometheus.wait_for_value(accepted, lambda v: v == 5, timeout=60)
    assert prometheus.query_value(
        f'fitness_workouts_completed_total{{instance="{listen}",platform="web",'
        f'workout_type="yoga"}}') == 5

    other = page_server(harness.free_port())
    seen = open_page(other + page, tmp_path / "profile-b")
    assert seen == ("fetch-auth ERR Failed to fetch | fetch-text ERR Failed to fetch | "
                    "fetch-seed ERR Failed to fetch | beacon true"), seen
    refused = (f'sum(pulse_ingest_requests_rejected_total{{instance="{listen}",'
               f'reason="origin_not_allowed"}})')
    # Two preflights, and the two requests a browser sends anyway (simple POST, beacon).
    prometheus.wait_for_value(refused, lambda v: v == 4, timeout=60)
    assert prometheus.query_value(accepted) == 5
    assert prometheus.query_value(f'pulse_events_received_total{{instance="{listen}"}}') == 5
