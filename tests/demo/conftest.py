"""Demo test fixtures: a config on free ports, the demo processes, an intake stand-in."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from pulse.config import load_config
from pulse.launcher.supervisor import service_argv
from tests import harness


def write_demo_config(path: Path, data_dir: Path, demo: dict | None = None,
                      **overrides) -> dict:
    """write_pulse_config plus a demo section (its `demo` argument is a flag, not a section)."""
    cfg = harness.write_pulse_config(path, data_dir, **overrides)
    cfg["demo"] = demo_overrides(**(demo or {}))
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return cfg


def demo_overrides(**demo) -> dict:
    """A demo section on free ports (sink, payments, API), fast and small."""
    section = {"listen": f"127.0.0.1:{harness.free_port()}",
               "sink_listen": f"127.0.0.1:{harness.free_port()}",
               "payments_listen": f"127.0.0.1:{harness.free_port()}",
               "payments_tls_listen": f"127.0.0.1:{harness.free_port()}",
               "users": 40, "speed": 5, "seed": 7, "disk_size_mb": 16}
    section.update(demo)
    return section


@pytest.fixture
def demo_config(tmp_path):
    """(path, Config, env) of a pulse.yml whose demo parts listen on free ports."""
    data_dir = tmp_path / "data"
    path = tmp_path / "pulse.yml"
    write_demo_config(path, data_dir)
    env = harness.pulse_env(data_dir)
    return path, load_config(path, env=env), env


class DemoStack:
    """The demo API and the fake payment provider as real processes, plus an intake stand-in."""

    def __init__(self, workdir: Path, intake: harness.WebhookSink):
        self.workdir = workdir
        self.data_dir = workdir / "data"
        self.path = workdir / "pulse.yml"
        intake_port = intake.port
        write_demo_config(self.path, self.data_dir,
                          exporters={"events": {"listen": f"127.0.0.1:{intake_port}"}})
        self.env = harness.pulse_env(self.data_dir)
        self.cfg = load_config(self.path, env=self.env)
        self.intake = intake
        self.procs: list[harness.Process] = []

    @property
    def api(self) -> str:
        return f"http://{self.cfg.demo.listen}"

    @property
    def payments(self) -> str:
        return f"http://{self.cfg.demo.payments_listen}"

    def start(self) -> DemoStack:
        self.procs.append(harness.start_service("demo.payments", self.path, self.env,
                                                self.cfg.demo.payments_listen,
                                                self.workdir / "payments.log"))
        self.procs.append(harness.start_service("demo.app", self.path, self.env,
                                                self.cfg.demo.listen,
                                                self.workdir / "app.log"))
        return self

    def simulator(self, *args: str) -> harness.Process:
        """Start the simulator process (stopped with the stack)."""
        proc = harness.Process(service_argv("demo.simulate", self.path, args),
                               self.workdir / "simulator.log", env=self.env, cwd=harness.ROOT)
        self.procs.append(proc)
        return proc

    def scenario(self, name: str) -> dict:
        resp = harness.requests.post(f"{self.api}/demo/scenario", json={"name": name},
                                     timeout=10)
        assert resp.status_code == 200, resp.text
        return resp.json()

    def stop(self) -> None:
        for proc in reversed(self.procs):
            proc.stop()


@pytest.fixture(scope="session")
def intake_stub():
    """Records what the simulator posts to /api/analytics/events (until the intake is merged)."""
    sink = harness.WebhookSink().start()
    yield sink
    sink.stop()


@pytest.fixture(scope="session")
def demo_stack(tmp_path_factory, intake_stub):
    """demo.app and demo.payments running as processes for the session."""
    stack = DemoStack(tmp_path_factory.mktemp("demo"), intake_stub).start()
    yield stack
    stack.scenario("normal")
    stack.stop()
