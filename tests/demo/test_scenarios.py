"""Each scenario changes its signal in real Prometheus (the alert path is test_alerts_e2e.py).

latency-spike: p95 of one route of the demo API (its own histogram, scraped) above 2 s.
integration-outage: the fake payment provider stops answering (its scrape fails: up == 0).
disk-filling: the free space of the demo filesystem, as Pulse's infrastructure exporter
reports it under node_exporter's name, heads for zero (predict_linear below zero within
4 h, NodeFilesystemFillingUp's condition).
The event-borne scenarios (ai-accuracy-drop, crash-spike, ingest-garbage) show in
Prometheus through the intake: test_simulate.py proves the events, the e2e test the alert.
"""

from __future__ import annotations

import os
import threading

import pytest

from demo.disk import DiskFiller
from exporters.infrastructure import COLLECTORS
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
    disk = DiskFiller(tmp_path, size_mb=16, fill_seconds=30)
    assert disk.prepare() == "loop"
    # The exporter `make run` uses, filesystem collector only (as node_exporter's
    # --collector.disable-defaults --collector.filesystem would be run).
    path = tmp_path / "pulse.yml"
    cfg = harness.write_pulse_config(path, tmp_path / "data")
    listen = cfg["exporters"]["infrastructure"]["listen"]
    off = [f"--no-collector.{name}" for name in COLLECTORS if name != "filesystem"]
    avail = f'node_filesystem_avail_bytes{{job="node",mountpoint="{disk.mountpoint}"}}'
    proc = None
    try:
        proc = harness.start_service("exporters.infrastructure", path,
                                     harness.pulse_env(tmp_path / "data"), listen,
                                     tmp_path / "infrastructure.log", timeout=60, args=off)
        scraped.configure(targets={**scraped.targets, "node": [listen]})
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
        if proc is not None:
            proc.stop()
        disk.close()
        targets = dict(scraped.targets)
        targets.pop("node", None)
        scraped.configure(targets=targets)
    assert not os.path.ismount(disk.mountpoint)
