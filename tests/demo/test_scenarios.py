"""Each scenario changes its signal in real Prometheus (the alert path is test_alerts_e2e.py).

latency-spike: p95 of one route of the demo API (its own histogram, scraped) above 2 s.
integration-outage: the fake payment provider stops answering (its scrape fails: up == 0).
disk-filling: node_exporter's free space of the demo filesystem heads for zero
(predict_linear below zero within 4 h, NodeFilesystemFillingUp's condition).
The event-borne scenarios (ai-accuracy-drop, crash-spike, ingest-garbage) show in
Prometheus through the intake: test_simulate.py proves the events, the e2e test the alert.
"""

from __future__ import annotations

import os
import threading

import pytest

from demo.disk import DiskFiller
from tests import harness

ROUTE = "/api/users/{user_id}/workouts"
P95 = ('histogram_quantile(0.95, sum by (le) (rate(http_server_request_duration_seconds_bucket'
       f'{{job="demo",http_route="{ROUTE}"}}[10s])))')

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def scraped(prometheus, demo_stack):
    """The session Prometheus scraping the demo API and the payment provider."""
    prometheus.configure(targets={"demo": [demo_stack.cfg.demo.listen],
                                  "payments": [demo_stack.cfg.demo.payments_listen]})
    prometheus.wait_for_targets_up(["demo", "payments"], timeout=60)
    return prometheus


def test_latency_spike_puts_route_p95_above_2s_and_normal_brings_it_back(scraped, demo_stack):
    sim = demo_stack.simulator("--speed", "30", "--users", "40")
    try:
        scraped.wait_for_value(f'sum(http_server_request_duration_seconds_count'
                               f'{{job="demo",http_route="{ROUTE}"}})', lambda v: v > 0,
                               timeout=60)
        demo_stack.scenario("latency-spike")
        assert scraped.wait_for_value(P95, lambda v: v > 2, timeout=90) > 2
        other = scraped.query_value(
            'histogram_quantile(0.95, sum by (le) (rate(http_server_request_duration_seconds_'
            'bucket{job="demo",http_route="/api/users/{user_id}"}[10s])))')
        assert other is None or other != other or other < 1  # NaN when idle
        demo_stack.scenario("normal")
        assert scraped.wait_for_value(P95, lambda v: v < 1, timeout=90) < 1
    finally:
        demo_stack.scenario("normal")
        sim.stop()
    assert "Traceback" not in sim.log()


def test_integration_outage_stops_the_provider_answering(scraped, demo_stack):
    up = 'up{job="payments"}'
    scraped.wait_for_value(up, lambda v: v == 1, timeout=60)
    demo_stack.scenario("integration-outage")
    try:
        scraped.wait_for_value(up, lambda v: v == 0, timeout=60)
    finally:
        demo_stack.scenario("normal")
    scraped.wait_for_value(up, lambda v: v == 1, timeout=60)


def test_disk_filling_heads_the_demo_filesystem_for_zero(scraped, tmp_path):
    if os.geteuid() != 0:
        pytest.fail("disk-filling loop-mounts a small filesystem and needs root "
                    "(as `make test` and `make run` on a fresh Debian machine have)",
                    pytrace=False)
    node = harness.require_binary("prometheus-node-exporter")
    disk = DiskFiller(tmp_path, size_mb=16, fill_seconds=30)
    assert disk.prepare() == "loop"
    port = harness.free_port()
    proc = harness.Process([node, f"--web.listen-address=127.0.0.1:{port}",
                            "--collector.disable-defaults", "--collector.filesystem"],
                           tmp_path / "node.log")
    avail = f'node_filesystem_avail_bytes{{job="node",mountpoint="{disk.mountpoint}"}}'
    try:
        proc.wait_http(f"http://127.0.0.1:{port}/metrics", timeout=30)
        scraped.configure(targets={**scraped.targets, "node": [f"127.0.0.1:{port}"]})
        full = scraped.wait_for_value(avail, lambda v: v > 0, timeout=60)
        stop = threading.Event()

        def fill():
            while not stop.wait(0.5):
                disk.step(0.5)

        filler = threading.Thread(target=fill, daemon=True)
        filler.start()
        try:
            scraped.wait_for_value(f"predict_linear({avail}[15s], 4 * 3600) < 0",
                                   timeout=90)
            assert scraped.query_value(avail) < full
        finally:
            stop.set()
            filler.join(10)
        disk.clear()
        scraped.wait_for_value(avail, lambda v: v > full * 0.9, timeout=60)
    finally:
        proc.stop()
        disk.close()
        targets = dict(scraped.targets)
        targets.pop("node", None)
        scraped.configure(targets=targets)
    assert not os.path.ismount(disk.mountpoint)
