"""schemathesis against the live bridge (a real process, real Prometheus): no 5xx, and every
response conforms to the OpenAPI document."""

import subprocess
import sys

import pytest

from tests import harness

pytestmark = pytest.mark.integration

CHECKS = ("not_a_server_error,status_code_conformance,content_type_conformance,"
          "response_schema_conformance")


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
    argv = [sys.executable, "-m", "schemathesis.cli", "run", f"http://{listen}/api/openapi.json",
            "-H", f"Authorization: Bearer {env['PULSE_ADMIN_TOKEN']}",
            "--checks", CHECKS, "--max-examples", "8", "--request-timeout", "30",
            "--workers", "1", "--phases", "examples,coverage,fuzzing,stateful",
            "--seed", "1", "--no-color"]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=240, cwd=tmp_path)
    out = proc.stdout + proc.stderr
    report = tmp_path / "schemathesis.txt"
    report.write_text(out)
    assert proc.returncode == 0, f"full report: {report}\n" + out[-6000:]
