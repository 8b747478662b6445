"""The Mimir/Cortex-compatible ruler API against a real Prometheus."""

import pytest
import yaml

from tests.bridge.conftest import auth
from tests.bridge.stack import Stack

pytestmark = pytest.mark.integration

GROUP = """
name: pulse-test-ruler
rules:
  - record: job:up:sum
    expr: sum by (job) (up)
  - alert: PulseTestRulerAlert
    expr: job:up:sum < 0
    for: 1m
    labels: {severity: warning, team: oncall}
    annotations: {summary: Never fires., description: "Job {{ $labels.job }}."}
"""


@pytest.fixture(scope="module")
def stack(tmp_path_factory, alertmanager):
    s = Stack(tmp_path_factory.mktemp("ruler"), alertmanager.url)
    yield s
    s.stop()


def post(stack, namespace, body, role="engineer"):
    return stack.client.post(f"/api/v1/rules/{namespace}", data=body,
                             headers={**auth(role), "Content-Type": "application/yaml"})


def test_set_get_delete_group(stack):
    resp = post(stack, "team-a", GROUP)
    assert resp.status_code == 202, resp.json
    assert "pulse-test-ruler" in stack.groups()
    second = GROUP.replace("pulse-test-ruler", "pulse-test-ruler-2")
    assert post(stack, "team-a", second).status_code == 202

    listing = yaml.safe_load(stack.client.get("/api/v1/rules", headers=auth("auditor")).data)
    assert [g["name"] for g in listing["team-a"]] == ["pulse-test-ruler", "pulse-test-ruler-2"]
    one = stack.client.get("/api/v1/rules/team-a/pulse-test-ruler", headers=auth("analyst"))
    assert one.status_code == 403
    one = stack.client.get("/api/v1/rules/team-a/pulse-test-ruler", headers=auth("engineer"))
    assert yaml.safe_load(one.data)["rules"][0]["record"] == "job:up:sum"

    # Replacing a group keeps its place and the other group.
    assert post(stack, "team-a", GROUP.replace("< 0", "< -1")).status_code == 202
    assert "< -1" in stack.groups()["pulse-test-ruler"]["rules"][1]["query"]

    resp = stack.client.delete("/api/v1/rules/team-a/pulse-test-ruler", headers=auth("admin"))
    assert resp.status_code == 202, (resp.json, stack.prometheus.process.log()[-3000:])
    assert "pulse-test-ruler" not in stack.groups()
    assert "pulse-test-ruler-2" in stack.groups()
    assert stack.client.delete("/api/v1/rules/team-a", headers=auth("admin")).status_code == 202
    assert "pulse-test-ruler-2" not in stack.groups()
    assert stack.client.get("/api/v1/rules/team-a", headers=auth("admin")).status_code == 404
    versions = stack.app.extensions["pulse.rulestore"].history("ns-team-a")
    assert [v.action for v in versions] == ["create", "update", "update", "update", "delete"]


@pytest.mark.parametrize("body,status,needle", [
    ("name: [unclosed", 400, "unable to decode rule group"),
    ("- just a list", 400, "mapping"),
    ("name: g\nrules:\n  - alert: A\n    expr: sum(up\n", 400, "invalid PromQL"),
    ("name: g\nrules:\n  - record: bad-name\n    expr: up\n", 400, "metric name"),
    # Parses, but the template is broken: only promtool sees it (400, as Mimir answers).
    ("name: g\nrules:\n  - alert: A\n    expr: up\n    annotations: {summary: '{{ .Bad '}\n",
     400, "promtool"),
])
def test_invalid_groups_are_refused_without_change(stack, body, status, needle):
    before = sorted(stack.groups())
    resp = post(stack, "team-b", body)
    assert resp.status_code == status, resp.json
    assert needle in str(resp.json)
    assert sorted(stack.groups()) == before
    assert not (stack.rules_dir / "ns-team-b.yml").exists()


def test_bad_namespace_is_400(stack):
    assert post(stack, "..", GROUP).status_code in (400, 404)
    assert post(stack, "a b", GROUP).status_code == 400
