"""`pulse up --demo` (what `make run` runs): the demo parts start, pages reach the terminal."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import apprise
import psutil
import pytest
import requests

from pulse.config import load_config
from pulse.launcher.supervisor import plan
from tests import harness
from tests.demo.conftest import write_demo_config


def _pulse(*args, env, timeout=120):
    return subprocess.run([sys.executable, "-m", "pulse", *args], capture_output=True,
                          text=True, env=env, timeout=timeout, cwd=harness.ROOT)


def test_plan_adds_payments_sink_and_simulator(demo_config):
    path, cfg, _ = demo_config
    comps = {c.name: c for c in plan(cfg, demo=True, config_path=str(path))}
    assert {"demo", "payments", "demo-sink", "simulator"} <= set(comps)
    assert comps["payments"].config_key == "demo.payments_listen"
    assert comps["demo-sink"].ready_url.endswith("/-/ready")
    assert comps["demo-sink"].argv[-2:] == ["--console", f"/proc/{os.getpid()}/fd/1"]
    assert comps["simulator"].ready_url is None
    assert list(comps)[-1] == "simulator"
    assert "payments" not in {c.name for c in plan(cfg, demo=False)}


@pytest.mark.integration
def test_up_demo_runs_the_demo_and_shows_pages_on_its_terminal(tmp_path):
    harness.require_binary("prometheus")
    harness.require_binary("prometheus-alertmanager")
    path = tmp_path / "pulse.yml"
    data_dir = tmp_path / "data"
    write_demo_config(path, data_dir, demo={"speed": 10, "users": 30})
    env = harness.pulse_env(data_dir)
    cfg = load_config(path, env=env)
    up = harness.Process([sys.executable, "-m", "pulse", "up", "--demo", "--config", str(path)],
                         tmp_path / "up.log", env=env, cwd=harness.ROOT)
    try:
        harness.wait_until(lambda: "Pulse is up" in up.log() or not up.alive(), timeout=120,
                           message="the banner")
        assert up.alive(), up.log()
        state = json.loads((data_dir / "pulse.pid").read_text())
        children = {n: c["pid"] for n, c in state["components"].items()}
        assert {"demo", "payments", "demo-sink", "simulator"} <= set(children)

        prom = harness.PrometheusServer.__new__(harness.PrometheusServer)
        prom.url = cfg.prometheus.url
        prom.wait_for_targets_up(timeout=60)
        prom.wait_for_value('sum(http_server_request_duration_seconds_count{job="demo"})',
                            lambda v: v > 0, timeout=90)
        assert requests.get(f"http://{cfg.demo.payments_listen}/health", timeout=5).ok

        notifier = apprise.Apprise()
        notifier.add(f"json://{cfg.demo.sink_listen}/notify")
        assert notifier.notify(title="[FIRING:1] DemoPageTest", body="a page for the newcomer")
        harness.wait_until(lambda: "demo channel: [FIRING:1] DemoPageTest" in up.log(),
                           timeout=30, message="the page on the terminal of pulse up")
        assert (data_dir / "demo" / "notifications.jsonl").exists()

        switched = _pulse("demo", "scenario", "crash-spike", "--config", str(path), env=env)
        assert switched.returncode == 0, switched.stderr
        assert "expect alert AppCrashRateHigh" in switched.stdout
        listing = _pulse("demo", "scenario", "--config", str(path), env=env)
        assert "active scenario: crash-spike" in listing.stdout
        bad = _pulse("demo", "scenario", "meteor", "--config", str(path), env=env)
        assert bad.returncode == 1 and "must be one of" in bad.stderr
        status = _pulse("status", "--config", str(path), "--json", env=env)
        rows = {r["component"]: r["state"] for r in json.loads(status.stdout)}
        assert rows["simulator"] == "running" and rows["demo-sink"] == "up", rows
    finally:
        os.killpg(up.pid, signal.SIGINT)
        up.proc.wait(60)
    assert up.proc.returncode == 0, up.log()
    left = [n for n, pid in children.items() if psutil.pid_exists(pid)
            and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE]
    assert left == []


def test_demo_scenario_without_a_running_demo_says_so(demo_config):
    path, _, env = demo_config
    result = _pulse("demo", "scenario", "normal", "--config", str(path), env=env)
    assert result.returncode == 1
    assert "does not answer" in result.stderr and "make run" in result.stderr
