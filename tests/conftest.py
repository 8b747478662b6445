"""Fixtures shared by the whole suite: real servers on free ports, temporary data dirs."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest

from tests import harness

# apprise imports the deprecated imghdr module; that one warning only is filtered.
warnings.filterwarnings("ignore", message="'imghdr' is deprecated", category=DeprecationWarning)


@pytest.fixture(scope="session")
def webhook_sink():
    """A local HTTP sink recording every request (session-wide)."""
    sink = harness.WebhookSink().start()
    yield sink
    sink.stop()


@pytest.fixture(scope="session")
def alertmanager(tmp_path_factory, webhook_sink):
    """A real Alertmanager for the session, routing every alert to webhook_sink."""
    am = harness.AlertmanagerServer(
        tmp_path_factory.mktemp("alertmanager"),
        harness.alertmanager_webhook_config(f"{webhook_sink.url}/alertmanager"))
    am.start()
    yield am
    am.stop()


@pytest.fixture(scope="session")
def prometheus(tmp_path_factory, alertmanager):
    """A real Prometheus for the session (1 s intervals), sending alerts to `alertmanager`.

    Tests may reconfigure it with `prometheus.configure(...)`; tests that need a
    private instance use `prometheus_factory`.
    """
    prom = harness.PrometheusServer(tmp_path_factory.mktemp("prometheus"),
                                    alertmanagers=[alertmanager.url])
    prom.start()
    yield prom
    prom.stop()


def _server_factory(tmp_path: Path, kind: type, name: str):
    """A fixture body: make(*args, **kwargs) starts kind in tmp_path/<name>-<n>; all stop after."""
    servers = []

    def make(*args, **kwargs):
        server = kind(tmp_path / f"{name}-{len(servers)}", *args, **kwargs)
        servers.append(server)
        return server.start()

    yield make
    for server in servers:
        server.stop()


@pytest.fixture
def prometheus_factory(tmp_path):
    """Make private Prometheus servers: factory(**PrometheusServer kwargs) -> started server."""
    yield from _server_factory(tmp_path, harness.PrometheusServer, "prometheus")


@pytest.fixture
def alertmanager_factory(tmp_path):
    """Make private Alertmanagers: factory(config) -> started server."""
    yield from _server_factory(tmp_path, harness.AlertmanagerServer, "alertmanager")


@pytest.fixture
def pulse_config(tmp_path) -> tuple[Path, dict, dict]:
    """A pulse.yml on free ports in tmp_path: (path, config dict, environment)."""
    data_dir = tmp_path / "data"
    path = tmp_path / "pulse.yml"
    cfg = harness.write_pulse_config(path, data_dir)
    return path, cfg, harness.pulse_env(data_dir)


@pytest.fixture
def service(tmp_path):
    """Start Pulse services as real processes: service(module, config_path, env, listen)."""
    procs = []

    def start(module: str, config_path: Path, env: dict, listen: str, **kwargs):
        log = tmp_path / "logs" / f"{module}.{len(procs)}.log"
        proc = harness.start_service(module, config_path, env, listen, log, **kwargs)
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        proc.stop()


def pytest_sessionfinish(session, exitstatus):
    """Teardown must leave no process behind: kill and report any that is."""
    left = harness.live_processes()
    if left:
        harness.stop_all()
        print(f"\nharness: {len(left)} process(es) were still running at the end and were "
              f"killed: {[p.args for p in left]}")
        session.exitstatus = 1
