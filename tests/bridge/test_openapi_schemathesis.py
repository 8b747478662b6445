"""schemathesis against the live bridge (a real process, real Prometheus): no 5xx, and every
response conforms to the OpenAPI document."""

import pytest

from tests import harness

pytestmark = [pytest.mark.integration, pytest.mark.schemathesis]


def test_schemathesis_finds_no_5xx_and_no_schema_violation(tmp_path, prometheus_factory,
                                                           alertmanager, service):
    data_dir = tmp_path / "data"
    prom = prometheus_factory(rule_files=[data_dir / "rules" / "*.yml"])
    path = tmp_path / "pulse.yml"
    cfg = harness.write_pulse_config(
        path, data_dir, prometheus={"url": prom.url}, alertmanager={"url": alertmanager.url},
        bridge={"channels": {"demo": ["json://127.0.0.1:9/x"]}})
    env = harness.pulse_env(data_dir)
    listen = cfg["bridge"]["listen"]
    service("bridge", path, env, listen)
    harness.run_schemathesis(f"http://{listen}/api/openapi.json", tmp_path,
                             f"Bearer {env['PULSE_ADMIN_TOKEN']}", max_examples=8,
                             phases="examples,coverage,fuzzing,stateful", timeout=240)
