"""schemathesis against the live intake's own OpenAPI document: no server error, and every
answer conforms to the document (seed endpoints and /v1/*)."""

import pytest

from tests import harness

pytestmark = pytest.mark.integration


def test_schemathesis_finds_no_server_error_and_no_schema_violation(tmp_path, service):
    path = tmp_path / "pulse.yml"
    raw = harness.write_pulse_config(path, tmp_path / "data", exporters={"events": {
        "sources": [{"name": "fuzz", "write_key": "wk_fuzz_0123", "platform": "web"}]}})
    listen = raw["exporters"]["events"]["listen"]
    service("exporters.events", path, harness.pulse_env(tmp_path / "data"), listen)
    harness.run_schemathesis(f"http://{listen}/api/openapi.json", tmp_path,
                             "Basic d2tfZnV6el8wMTIzOg==",  # wk_fuzz_0123:
                             max_examples=25, phases="examples,coverage,fuzzing")
