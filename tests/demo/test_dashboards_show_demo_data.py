"""The demo feeds every dashboard: the demo stack's parts on free ports, Prometheus on the
shipped rules compressed to test time, and `pulse.dashboards.check` finds data for every
query (issue 10: "every dashboard check passes").

The data is the platform's own: the simulator's traffic and events, its model-ops jobs
(evaluations, drift, costs), the demo API's timed inference, the fake provider's HTTPS
side probed with its certificate. Nothing is written into Prometheus by the test.
"""

from __future__ import annotations

import re
import threading
import time

import pytest
import yaml

from pulse.config import load_config
from pulse.dashboards import check, load_all
from pulse.launcher.demotime import compress_rules, overlay
from pulse.launcher.supervisor import service_argv
from tests import harness
from tests.demo.conftest import write_demo_config

pytestmark = pytest.mark.integration

TIME_SCALE = 60
@pytest.fixture(scope="module")
def demo_prometheus(tmp_path_factory):
    """The demo's services and simulator, and Prometheus scraping them on compressed rules."""
    work = tmp_path_factory.mktemp("demo-dashboards")
    data = work / "data"
    path = work / "pulse.yml"
    # A simulated day of 12 minutes: the model-ops jobs run every 30 s (first at start),
    # and the test's minute stays in the busy morning.
    raw = write_demo_config(path, data, demo={"speed": 8, "users": 150, "day_length": "12m"})
    raw = overlay(raw, str(data))
    for target in raw["exporters"]["integrations"]["targets"]:
        target.update(interval="1s", timeout="2s")
    # The demo channel, as the shipped pulse.yml has it (nothing pages here).
    raw["bridge"]["channels"] = {"demo": [f"json://127.0.0.1:{harness.free_port()}/notify"]}
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    env = harness.pulse_env(data)
    cfg = load_config(path, env=env)

    def on_test_time(text: str) -> str:
        text = compress_rules(text, TIME_SCALE, min_range=5, min_for=5)
        # Slow groups (the long SLO windows, once a minute) evaluate on test time too.
        return re.sub(r"(?m)^(\s+interval:\s*)\S+$", r"\g<1>2s", text)

    rules_dir = work / "rules"
    harness.copy_rules(rules_dir, on_test_time)
    services = [("demo.payments", cfg.demo.payments_listen),
                ("exporters.events", cfg.exporters.events.listen),
                ("exporters.infrastructure", cfg.exporters.infrastructure.listen),
                ("exporters.integrations", cfg.exporters.integrations.listen),
                ("exporters.ai", cfg.exporters.ai.listen),
                ("bridge", cfg.bridge.listen),
                ("demo.app", cfg.demo.listen)]
    procs: list = []
    prom = None
    try:
        # The provider first: its certificate must exist before the prober reads it.
        first, first_listen = services[0]
        procs.append(harness.start_service(first, path, env, first_listen,
                                           work / f"{first}.log", timeout=90))
        errors: list[BaseException] = []

        def start(module, listen):
            try:
                procs.append(harness.start_service(module, path, env, listen,
                                                   work / f"{module}.log", timeout=90))
            except BaseException as exc:  # noqa: BLE001 - re-raised in the test thread
                errors.append(exc)

        threads = [threading.Thread(target=start, args=s) for s in services[1:]]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if errors:
            raise errors[0]
        prom = harness.PrometheusServer(
            work / "prom", rule_files=[str(rules_dir / "*.rules.yml")],
            targets={"events": [cfg.exporters.events.listen],
                     "infrastructure": [cfg.exporters.infrastructure.listen],
                     "integrations": [cfg.exporters.integrations.listen],
                     "ai": [cfg.exporters.ai.listen], "bridge": [cfg.bridge.listen],
                     "demo": [cfg.demo.listen]}).start()
        prom.configure(targets={**prom.targets, "prometheus": [f"127.0.0.1:{prom.port}"]})
        procs.append(harness.Process(service_argv("demo.simulate", path), work / "simulator.log",
                                     env=env, cwd=harness.ROOT))
        yield prom
    finally:
        for proc in reversed(procs):
            proc.stop()
        if prom is not None:
            prom.stop()


def test_every_dashboard_query_finds_demo_data(demo_prometheus):
    prom = demo_prometheus
    started = time.time()
    docs = load_all()

    def failures():
        now = time.time()
        # Half of what Prometheus has seen, as `pulse dashboards check` does by default, so
        # the previous-period queries (offset $__range) have a previous period.
        span = max(4.0, (now - started) / 2)
        outcomes = check(prom.url, now - span, now, step=1.0, scrape_s=1.0, docs=docs)
        return [o for o in outcomes if not o.ok]

    left: list = []

    def all_ok():
        nonlocal left
        left = failures()
        return not left

    try:
        harness.wait_until(all_ok, timeout=100, interval=2, message="every query has data")
    except AssertionError:
        pytest.fail("queries without demo data:\n" + "\n".join(
            f"{o.query.dashboard}/{o.query.panel_title} [{o.query.ref}]: "
            f"{o.error or 'no series'}\n    {o.expr}" for o in left))
