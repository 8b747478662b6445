"""schemathesis against the live intake's own OpenAPI document: no server error, and every
answer conforms to the document (seed endpoints, /v1/* and the dead letters)."""

import base64

import pytest

from tests import harness

pytestmark = [pytest.mark.integration, pytest.mark.schemathesis]


def test_schemathesis_finds_no_server_error_and_no_schema_violation(tmp_path, service):
    path = tmp_path / "pulse.yml"
    raw = harness.write_pulse_config(path, tmp_path / "data", exporters={"events": {
        "sources": [{"name": "fuzz", "write_key": "wk_fuzz_0123", "platform": "web"}]}})
    listen = raw["exporters"]["events"]["listen"]
    env = harness.pulse_env(tmp_path / "data")
    service("exporters.events", path, env, listen)
    # One header for both: the write key as the Basic user (ingest), the admin token as its
    # password (the dead letters' guard reads it, pulse.access.credentials).
    login = base64.b64encode(f"wk_fuzz_0123:{env['PULSE_ADMIN_TOKEN']}".encode()).decode()
    harness.run_schemathesis(f"http://{listen}/api/openapi.json", tmp_path, f"Basic {login}",
                             max_examples=25, phases="examples,coverage,fuzzing")
