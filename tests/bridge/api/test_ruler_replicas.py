"""Two Prometheus replicas reading the bridge's rule directory: a change is confirmed on both
before it is acknowledged, a replica that is down fails the write with 503 naming it, and on
its return the bridge brings it level (health shows each replica's loaded rule version)."""

import pytest

from tests.bridge.conftest import auth
from tests.bridge.stack import Stack
from tests.harness import wait_until

pytestmark = pytest.mark.integration
BASE = "/prometheus/config/v1/rules"


def group(name: str) -> str:
    return f"name: {name}\nrules:\n- record: ha:{name.replace('-', '_')}\n  expr: vector(1)\n"


@pytest.fixture(scope="module")
def stack(tmp_path_factory, alertmanager):
    s = Stack(tmp_path_factory.mktemp("replicas"), alertmanager.url, replicas=2,
              rules={"reconcile_interval": "1s", "confirm_timeout": "10s"})
    yield s
    s.stop()


def post(stack, ns, name):
    return stack.client.post(f"{BASE}/{ns}", data=group(name), headers=auth("engineer"))


def names(prom) -> set[str]:
    return {g["name"] for g in prom.rule_groups()}


def replicas(stack) -> list[dict]:
    return stack.client.get("/api/analytics/health").json["ruleReplicas"]


def test_write_is_confirmed_on_both_replicas(stack):
    resp = post(stack, "ha", "ha-one")
    assert resp.status_code == 202, resp.text
    # Acknowledged means loaded on every replica, without waiting.
    assert all("ha-one" in names(p) for p in stack.replicas)
    status = replicas(stack)
    assert [r["url"] for r in status] == [p.url for p in stack.replicas]
    assert all(r["upToDate"] and r["loadedVersion"] == r["currentVersion"] for r in status)


def test_a_down_replica_fails_the_write_with_503_naming_it_then_catches_up(stack):
    down = stack.replicas[1]
    down.stop()
    try:
        resp = post(stack, "ha", "ha-two")
        assert resp.status_code == 503, resp.text
        assert down.url in resp.text
        # Nothing left behind silently: the change is rolled back, the live replica too.
        assert "ha-two" not in names(stack.replicas[0])
        assert not any("error" not in r for r in replicas(stack) if r["url"] == down.url)
        assert stack.client.get("/api/analytics/health").json["status"] != "healthy"
    finally:
        down.start()
    # Back: the reconciler sees it and confirms it has the current rules.
    wait_until(lambda: all(r["upToDate"] for r in replicas(stack)), timeout=30)
    assert "ha-one" in names(down) and "ha-two" not in names(down)
    resp = post(stack, "ha", "ha-two")
    assert resp.status_code == 202, resp.text
    assert all("ha-two" in names(p) for p in stack.replicas)
    versions = {r["loadedVersion"] for r in replicas(stack)}
    assert len(versions) == 1 and None not in versions
