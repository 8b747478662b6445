"""schemathesis against the live intake's own OpenAPI document: no server error, and every
answer conforms to the document (seed endpoints and /v1/*)."""

import subprocess
import sys

import pytest

from tests import harness

pytestmark = pytest.mark.integration
CHECKS = ("not_a_server_error,status_code_conformance,content_type_conformance,"
          "response_schema_conformance")


def test_schemathesis_finds_no_server_error_and_no_schema_violation(tmp_path, service):
    path = tmp_path / "pulse.yml"
    raw = harness.write_pulse_config(path, tmp_path / "data", exporters={"events": {
        "sources": [{"name": "fuzz", "write_key": "wk_fuzz_0123", "platform": "web"}]}})
    listen = raw["exporters"]["events"]["listen"]
    service("exporters.events", path, harness.pulse_env(tmp_path / "data"), listen)
    argv = [sys.executable, "-m", "schemathesis.cli", "run",
            f"http://{listen}/api/openapi.json",
            "-H", "Authorization: Basic d2tfZnV6el8wMTIzOg==",  # wk_fuzz_0123:
            "--checks", CHECKS, "--max-examples", "25", "--request-timeout", "30",
            "--workers", "1", "--phases", "examples,coverage,fuzzing",
            "--seed", "1", "--no-color"]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=400, cwd=tmp_path)
    out = proc.stdout + proc.stderr
    report = tmp_path / "schemathesis.txt"
    report.write_text(out)
    assert proc.returncode == 0, f"full report: {report}\n" + out[-6000:]
