"""The ruler as Mimir tools use it, against a real Prometheus: mimirtool's requests replayed,
tenants kept apart, real-world rule collections and every duration form loaded, concurrent
writers sharing reloads."""

import base64
import threading
from pathlib import Path

import pytest
import requests
import yaml

from tests.bridge.conftest import TOKENS, auth
from tests.bridge.mimirtool_replay import BASE, Mimirtool, groups_equal
from tests.bridge.stack import Stack
from tests.harness import wait_until

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[3]
CACHE = ROOT / ".cache" / "rules" / "root"
LIMITED = "tenant-a-only-token-0123456789"


@pytest.fixture(scope="module")
def stack(tmp_path_factory, alertmanager):
    s = Stack(tmp_path_factory.mktemp("mimir"), alertmanager.url, extra_tokens=[
        {"name": "team-a-bot", "role": "engineer", "token": LIMITED, "tenants": ["team-a"]}])
    s.url = s.serve()
    yield s
    s.stop()


def basic(user: str, token: str) -> dict:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{token}".encode()).decode()}


def loaded(stack) -> dict[tuple[str, str], dict]:
    """Prometheus's groups by (file name, group name)."""
    return {(Path(g["file"]).name, g["name"]): g for g in stack.prometheus.rule_groups()}


FILES = [
    {"namespace": "payments", "groups": [
        {"name": "latency", "interval": "1m", "rules": [
            {"alert": "PaymentsSlow", "expr": "histogram_quantile(0.99, sum by (le) "
             "(rate(http_request_duration_seconds_bucket[5m]))) > 2", "for": "0s",
             "labels": {"severity": "page"},
             "annotations": {"summary": "p99 {{ $value | humanizeDuration }}"}}]},
        {"name": "records", "rules": [
            {"record": "job:up:sum", "expr": "sum by (job) (up)"}]},
    ]},
    {"namespace": "search", "groups": [
        {"name": "empty-labels", "rules": [
            {"alert": "SearchDown", "expr": "up{job=\"search\"} == 0", "for": "1h30m",
             "keep_firing_for": "5m", "labels": {}}]},
    ]},
]


def test_mimirtool_load_list_diff_sync_get_delete_round_trip(stack):
    tool = Mimirtool(stack.url, "team-m", TOKENS["engineer"])
    assert tool.list() == {}  # 200 {} (a 404 would make `rules list` fatal)
    assert tool.get("payments", "latency") is None
    tool.delete("payments", "nope")  # 404, tolerated
    tool.delete_namespace("nope")

    assert tool.load(FILES) == 3
    assert {(n, g) for n, g in loaded(stack)} >= {
        ("tn-team-m+payments.yml", "latency"), ("tn-team-m+payments.yml", "records"),
        ("tn-team-m+search.yml", "empty-labels")}
    # Round-trip exactness: what GET returns is what was POSTed, so nothing is sent again.
    assert tool.load(FILES) == 0
    assert tool.diff(FILES) == {"added": [], "updated": [], "deleted": []}
    listing = tool.list()
    assert [g["name"] for g in listing["payments"]] == ["latency", "records"]
    assert listing["search"][0]["rules"][0]["labels"] == {}  # an empty map stays empty
    assert "labels" not in listing["payments"][1]["rules"][0]  # and a missing one missing
    assert groups_equal(tool.get("search", "empty-labels"), FILES[1]["groups"][0])

    changed = yaml.safe_load(yaml.safe_dump(FILES))
    changed[0]["groups"][0]["rules"][0]["expr"] += " * 1"
    del changed[0]["groups"][1]
    changed[1]["groups"].append({"name": "new", "rules": None})
    changes = tool.sync(changed)
    assert changes == {"added": ["search/new"], "updated": ["payments/latency"],
                       "deleted": ["payments/records"]}
    assert tool.diff(changed) == {"added": [], "updated": [], "deleted": []}
    groups = loaded(stack)
    assert ("tn-team-m+payments.yml", "records") not in groups
    assert groups[("tn-team-m+search.yml", "new")]["rules"] == []
    assert groups[("tn-team-m+payments.yml", "latency")]["rules"][0]["query"].endswith("* 1")
    tool.delete_namespace("search")
    assert "search" not in tool.list()


def test_mimir_status_codes_and_bodies(stack):
    h = {**basic("team-s", TOKENS["engineer"]), "X-Scope-OrgID": "team-s"}
    body = b"name: g1\nrules:\n- record: a:b\n  expr: vector(1)\n"
    # curl's default Content-Type is a form: the body is still read as YAML.
    resp = requests.post(f"{stack.url}{BASE}/ns1", data=body, timeout=60, headers={
        **h, "Content-Type": "application/x-www-form-urlencoded"})
    assert resp.status_code == 202, resp.text
    assert resp.json() == {"status": "success", "data": None, "errorType": "", "error": ""}
    resp = requests.get(f"{stack.url}{BASE}/ns1/g1", headers=h, timeout=10)
    assert resp.headers["Content-Type"].startswith("application/yaml")
    for path, text in [("/ns1/nope", "group does not exist\n"),
                       ("/nope", "group namespace does not exist\n")]:
        resp = requests.get(f"{stack.url}{BASE}{path}", headers=h, timeout=10)
        assert (resp.status_code, resp.text) == (404, text)
        assert resp.headers["Content-Type"].startswith("text/plain")
    resp = requests.delete(f"{stack.url}{BASE}/nope", headers=h, timeout=10)
    assert (resp.status_code, resp.text) == (404, "group namespace does not exist\n")
    resp = requests.post(f"{stack.url}{BASE}/ns1", data=b"name: [x", headers=h, timeout=10)
    assert resp.status_code == 400 and resp.text.startswith("unable to decode rule group")
    resp = requests.post(f"{stack.url}{BASE}/ns1", headers=h, timeout=10, data=(
        b"name: g2\nquery_offset: 1m\nrules:\n- alert: A\n  expr: up\n  for: 1.5h\n"))
    assert resp.status_code == 400
    assert "group.query_offset" in resp.text and "group.rules[0].for" in resp.text
    resp = requests.get(f"{stack.url}{BASE}", timeout=10,
                        headers={**h, "X-Scope-OrgID": "a|b"})
    assert resp.status_code == 400
    assert resp.json()["error"].startswith("no valid org id found")
    # The legacy routes are the same API (JSON errors, as before).
    legacy = requests.get(f"{stack.url}/api/v1/rules/ns1/g1", headers=h, timeout=10)
    assert yaml.safe_load(legacy.text)["name"] == "g1"
    assert requests.get(f"{stack.url}/api/v1/rules/ns1/nope", headers=h,
                        timeout=10).json()["error"]["message"] == "group does not exist"
    assert requests.get(f"{stack.url}{BASE}", headers=basic("x", "wrong-token-xxxxxxxx"),
                        timeout=10).status_code == 401


def test_tenants_are_isolated_and_labelled(stack):
    group = "name: shared-name\nrules:\n- alert: TenantProbe\n  expr: vector(1)\n"
    for tenant in ("team-a", "team-b"):
        resp = requests.post(f"{stack.url}{BASE}/alerts", data=group.encode(), timeout=60,
                             headers={**basic(tenant, TOKENS["engineer"])})  # Basic user
        assert resp.status_code == 202, resp.text
    groups = loaded(stack)
    for tenant in ("team-a", "team-b"):
        rule = groups[(f"tn-{tenant}+alerts.yml", "shared-name")]["rules"][0]
        assert rule["labels"] == {"tenant": tenant}
        got = requests.get(f"{stack.url}{BASE}/alerts/shared-name", timeout=10,
                           headers=basic(tenant, TOKENS["engineer"]))
        assert "labels" not in yaml.safe_load(got.text)["rules"][0]  # as posted
    # The default tenant (no header, bearer) sees neither.
    assert "alerts" not in yaml.safe_load(stack.client.get(BASE, headers=auth("admin")).data)

    # A token limited to team-a: team-b is 403 for reads and writes, team-a works.
    a = {"Authorization": f"Bearer {LIMITED}", "X-Scope-OrgID": "team-a"}
    b = {**a, "X-Scope-OrgID": "team-b"}
    assert requests.get(f"{stack.url}{BASE}", headers=a, timeout=10).status_code == 200
    for method, path in [("GET", BASE), ("GET", f"{BASE}/alerts/shared-name"),
                         ("POST", f"{BASE}/alerts"), ("DELETE", f"{BASE}/alerts"),
                         ("GET", "/prometheus/api/v1/rules")]:
        resp = requests.request(method, stack.url + path, headers=b, timeout=10,
                                data=group.encode() if method == "POST" else None)
        assert resp.status_code == 403, (method, path, resp.text)
        assert "team-b" in resp.text
    assert requests.delete(f"{stack.url}{BASE}/alerts", headers=b, timeout=10).status_code \
        == 403
    assert ("tn-team-b+alerts.yml", "shared-name") in loaded(stack)

    # Prometheus's read shapes, narrowed to the tenant, file = namespace.
    def tenant_alerts():
        resp = requests.get(f"{stack.url}/prometheus/api/v1/alerts", headers=a, timeout=10)
        return resp.json()["data"]["alerts"]
    alerts = wait_until(lambda: [x for x in tenant_alerts()
                                 if x["labels"]["alertname"] == "TenantProbe"], timeout=30)
    assert {x["labels"]["tenant"] for x in alerts} == {"team-a"}
    rules = requests.get(f"{stack.url}/prometheus/api/v1/rules", headers=a, timeout=10,
                         params={"type": "alert"}).json()["data"]["groups"]
    assert [(g["file"], g["name"]) for g in rules] == [("alerts", "shared-name")]
    assert requests.get(f"{stack.url}/prometheus/api/v1/rules", headers=a, timeout=10,
                        params={"type": "x"}).status_code == 400

    # Each tenant's history is its own.
    store = stack.app.extensions["pulse.rulestore"]
    assert [v.who for v in store.history("tn-team-a+alerts")] == ["engineer-user"]


def _collections() -> list[tuple[str, Path]]:
    files = [
        ("ceph", CACHE / "etc/prometheus/ceph/ceph_default_alerts.yml"),
        ("elasticsearch", CACHE / "usr/share/doc/prometheus-elasticsearch-exporter/examples/"
                                  "prometheus/elasticsearch.rules.yml"),
        ("node-example", CACHE / "usr/share/doc/prometheus-node-exporter/examples/"
                                 "example-rules.yml"),
        ("node-17-compat", CACHE / "usr/share/doc/prometheus-node-exporter/"
                                   "example-17-compatibility-rules.yml"),
    ]
    missing = [str(p) for _, p in files if not p.exists()]
    if missing:
        pytest.fail("real-world rule files not fetched; run scripts/fetch-rule-collections.sh "
                    f"(make test does): {missing}", pytrace=False)
    return files


def test_real_world_collections_load_and_every_rule_is_healthy(stack):
    tool = Mimirtool(stack.url, "realworld", TOKENS["engineer"])
    files = []
    for namespace, path in _collections():
        doc = yaml.safe_load(path.read_text())
        files.append({"namespace": namespace, "groups": doc["groups"]})
    posted = tool.load(files)
    total_rules = sum(len(g.get("rules") or []) for f in files for g in f["groups"])
    assert posted == sum(len(f["groups"]) for f in files) and total_rules >= 62
    assert tool.load(files) == 0  # idempotent: Go-compared equal after the round trip
    start = stack.prometheus.query_value("time()")

    def healthy():
        groups = [g for g in stack.prometheus.rule_groups()
                  if Path(g["file"]).name.startswith("tn-realworld+")]
        rules = [r for g in groups for r in g["rules"]]
        evaluated = all(g["lastEvaluation"] > "1970" and _ts(g["lastEvaluation"]) > start
                        for g in groups)
        return evaluated and len(rules) == total_rules and all(
            r["health"] == "ok" for r in rules) and rules
    rules = wait_until(healthy, timeout=60)
    alerts = [r for r in rules if r["type"] == "alerting"]
    assert len(alerts) >= 60  # ceph's 58 + elasticsearch's 2
    print(f"real-world: {len(files)} files, {posted} groups, {len(rules)} rules "
          f"({len(alerts)} alerts) loaded, every one health=ok")


def _ts(text: str) -> float:
    from datetime import datetime
    return datetime.fromisoformat(text.replace("Z", "+00:00")[:26] + "+00:00"
                                  if "." in text else text.replace("Z", "+00:00")).timestamp()


DURATIONS = ["0", "0s", "0m", "1h30m", "2w", "1y", "1500ms", "1d2h"]


def test_every_duration_form_loads_into_prometheus(stack):
    rules = [{"alert": f"D{i}", "expr": "vector(1) == 0", "for": d, "keep_firing_for": d}
             for i, d in enumerate(DURATIONS)]
    tool = Mimirtool(stack.url, "durations", TOKENS["engineer"])
    tool.load([{"namespace": "forms", "groups": [
        {"name": "fors", "limit": 10, "rules": rules},
        {"name": "long-interval", "interval": "1h30m", "rules": [
            {"record": "d:one", "expr": "vector(1)"}]},
        {"name": "zero-interval", "interval": "0s", "rules": []}]}])
    groups = {g["name"]: g for g in stack.prometheus.rule_groups()
              if Path(g["file"]).name == "tn-durations+forms.yml"}
    assert groups["long-interval"]["interval"] == 5400 and groups["fors"]["limit"] == 10
    assert [r["duration"] for r in groups["fors"]["rules"]] == [
        0, 0, 0, 5400, 1209600, 31536000, 1.5, 93600]
    assert groups["fors"]["rules"][3]["keepFiringFor"] == 5400
    for bad in ["1.5h", "2h1d", "10", "-1m", ""]:
        resp = requests.post(f"{stack.url}{BASE}/forms", headers=basic("durations",
                             TOKENS["engineer"]), timeout=10, data=yaml.safe_dump(
            {"name": "bad", "rules": [{"alert": "B", "expr": "up", "for": bad}]}).encode())
        assert resp.status_code == 400 and "group.rules[0].for" in resp.text, (bad, resp.text)
    # A template promtool refuses: 400 naming it, nothing loaded.
    resp = requests.post(f"{stack.url}{BASE}/forms", headers=basic("durations",
                         TOKENS["engineer"]), timeout=30, data=(
        b"name: tmpl\nrules:\n- alert: T\n  expr: up\n  labels: {x: '{{ nosuchfunc }}'}\n"))
    assert resp.status_code == 400 and "nosuchfunc" in resp.text


def test_concurrent_writers_share_reloads_and_only_the_invalid_change_is_refused(stack):
    reloads = stack.app.config["REGISTRY"]
    before = reloads.get_sample_value("pulse_bridge_rule_reloads_total", {"result": "success"})
    results: dict[tuple[int, int], requests.Response] = {}

    def client(c: int):
        for i in range(5):
            body = f"name: g{c}-{i}\nrules:\n- record: c:w{c}:i{i}\n  expr: vector({i})\n"
            if (c, i) == (3, 2):
                body = "name: g3-2\nrules:\n- alert: Broken\n  expr: up\n  annotations: " \
                       "{summary: '{{ .Unclosed '}\n"  # only promtool sees it
            results[c, i] = requests.post(f"{stack.url}{BASE}/conc-{c}", data=body.encode(),
                                          headers=basic("conc", TOKENS["engineer"]),
                                          timeout=120)
    threads = [threading.Thread(target=client, args=(c,)) for c in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    codes = {k: r.status_code for k, r in results.items()}
    assert codes.pop((3, 2)) == 400 and "promtool" in results[3, 2].text
    assert set(codes.values()) == {202}, {k: results[k].text for k, v in codes.items()
                                          if v != 202}
    groups = loaded(stack)
    for c, i in codes:
        assert (f"tn-conc+conc-{c}.yml", f"g{c}-{i}") in groups
    assert ("tn-conc+conc-3.yml", "g3-2") not in groups
    used = reloads.get_sample_value("pulse_bridge_rule_reloads_total",
                                    {"result": "success"}) - before
    print(f"39 accepted writes from 8 clients took {used:g} reloads")
    assert used < 39
