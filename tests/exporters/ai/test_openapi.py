"""schemathesis against the live AI exporter's own OpenAPI document, with an admin token: no
server error, and every answer conforms to the document."""

import pytest

from tests import harness

pytestmark = [pytest.mark.integration, pytest.mark.schemathesis]


def test_schemathesis_finds_no_server_error_and_no_schema_violation(tmp_path, service):
    path = tmp_path / "pulse.yml"
    raw = harness.write_pulse_config(path, tmp_path / "data")
    listen = raw["exporters"]["ai"]["listen"]
    env = harness.pulse_env(tmp_path / "data")
    service("exporters.ai", path, env, listen)
    harness.run_schemathesis(f"http://{listen}/api/openapi.json", tmp_path,
                             f"Bearer {env['PULSE_ADMIN_TOKEN']}", max_examples=25,
                             phases="examples,coverage,fuzzing,stateful")
