"""`pulse up/status/down`: the real stack starts, every target is up, nothing is left behind."""

import json
import os
import re
import signal
import socket
import subprocess
import sys

import psutil
import pytest

from tests import harness


def _state(data_dir):
    return json.loads((data_dir / "pulse.pid").read_text())


def _pulse(*args, env, timeout=120):
    return subprocess.run([sys.executable, "-m", "pulse", *args], capture_output=True,
                          text=True, env=env, timeout=timeout, cwd=harness.ROOT)


@pytest.mark.integration
def test_up_brings_every_target_up_and_ctrl_c_leaves_nothing(pulse_config):
    harness.require_binary("prometheus")
    harness.require_binary("prometheus-alertmanager")
    path, cfg, env = pulse_config
    data_dir = path.parent / "data"
    up = harness.Process([sys.executable, "-m", "pulse", "up", "--config", str(path)],
                         path.parent / "up.log", env=env, cwd=harness.ROOT)
    try:
        harness.wait_until(lambda: "Pulse is up" in up.log() or not up.alive(), timeout=90,
                           message="the banner")
        assert up.alive(), up.log()
        assert "test-admin-token-0123456789" in up.log()
        children = {name: c["pid"] for name, c in _state(data_dir)["components"].items()}
        assert set(children) == {"prometheus", "alertmanager", "events", "infrastructure",
                                 "integrations", "ai", "bridge"}
        for name in children:  # each shown as it became ready
            assert re.search(rf"^  ready +{name} ", up.log(), re.M), up.log()

        prom = harness.PrometheusServer.__new__(harness.PrometheusServer)
        prom.url = cfg["prometheus"]["url"]
        targets = prom.wait_for_targets_up(timeout=30)
        assert {t["labels"]["job"] for t in targets} == set(children)
        am_ready = harness.requests.get(cfg["alertmanager"]["url"] + "/-/ready", timeout=5)
        assert am_ready.status_code == 200

        status = _pulse("status", "--config", str(path), "--json", env=env)
        assert status.returncode == 0, status.stdout + status.stderr
        assert {r["state"] for r in json.loads(status.stdout)} == {"up"}
    finally:
        os.killpg(up.pid, signal.SIGINT)  # what Ctrl-C does to the foreground group
        up.proc.wait(30)
    assert up.proc.returncode == 0, up.log()
    assert "every component stopped" in up.log()

    def left() -> list[str]:
        return [n for n, pid in children.items() if psutil.pid_exists(pid)
                and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE]

    # The launcher has returned; its children are reaped by init an instant later.
    harness.wait_until(lambda: not left(), 10, message="every child process gone")
    assert left() == []
    assert not (data_dir / "pulse.pid").exists()


@pytest.mark.integration
def test_busy_port_is_named_with_its_config_key(pulse_config):
    path, cfg, env = pulse_config
    host, port = cfg["exporters"]["events"]["listen"].split(":")
    with socket.socket() as sock:
        sock.bind((host, int(port)))
        sock.listen()
        result = _pulse("up", "--config", str(path), env=env)
    assert result.returncode == 1
    assert f"port {port}" in result.stderr
    assert "exporters.events.listen" in result.stderr


@pytest.mark.integration
def test_detach_status_down(pulse_config):
    path, cfg, env = pulse_config
    data_dir = path.parent / "data"
    started = _pulse("up", "--detach", "--config", str(path), env=env)
    assert started.returncode == 0, started.stdout + started.stderr
    try:
        state = _state(data_dir)
        status = _pulse("status", "--config", str(path), env=env)
        assert status.returncode == 0, status.stdout
        assert "bridge" in status.stdout and "down" not in status.stdout
    finally:
        stopped = _pulse("down", "--config", str(path), env=env)
    assert stopped.returncode == 0, stopped.stderr
    assert not psutil.pid_exists(state["pid"]) or \
        psutil.Process(state["pid"]).status() == psutil.STATUS_ZOMBIE
    for comp in state["components"].values():
        assert not psutil.pid_exists(comp["pid"]) or \
            psutil.Process(comp["pid"]).status() == psutil.STATUS_ZOMBIE
    after = _pulse("status", "--config", str(path), env=env)
    assert after.returncode == 1
    assert _pulse("down", "--config", str(path), env=env).returncode == 1


@pytest.mark.integration
def test_child_that_fails_to_start_is_named_with_its_log(pulse_config, tmp_path):
    path, cfg, env = pulse_config
    # A prometheus on PATH that exits at once stands for a broken install.
    env = dict(env, PATH=f"{tmp_path}/bin:{env['PATH']}")
    (tmp_path / "bin").mkdir()
    fake = tmp_path / "bin" / "prometheus"
    fake.write_text("#!/bin/sh\necho 'broken prometheus' >&2\nexit 3\n")
    fake.chmod(0o755)
    result = _pulse("up", "--config", str(path), env=env)
    assert result.returncode == 1
    assert "prometheus did not start: exited with code 3" in result.stderr
    assert "prometheus.log" in result.stderr
    assert "broken prometheus" in result.stderr
    # The others still started, so the end names everything that is not ready.
    assert "not ready: prometheus\n" in result.stderr
    assert re.search(r"^  NOT READY +prometheus +log: .*prometheus.log$", result.stdout, re.M)
    assert re.search(r"^  ready +bridge ", result.stdout, re.M), result.stdout
