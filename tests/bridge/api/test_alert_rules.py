"""Alert rules by API against a real Prometheus and Alertmanager."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import threading

import pytest
import requests
import yaml
from prometheus_client import CollectorRegistry

from bridge import create_app
from bridge.services.rule_store import RuleStore
from pulse.promapi import PromError, PrometheusClient
from tests.bridge.conftest import auth, bridge_config
from tests.bridge.stack import Stack
from tests.harness import ROOT, wait_until

pytestmark = pytest.mark.integration
RULES = "/api/analytics/alerts/rules"


@pytest.fixture(scope="module")
def stack(tmp_path_factory, alertmanager):
    s = Stack(tmp_path_factory.mktemp("rules-api"), alertmanager.url)
    yield s
    s.stop()


def rule(name, **overrides):
    body = {
        "name": name,
        "description": "Room temperature is above its threshold.",
        "metric": "pulse_test_temperature_celsius",
        "condition": {"operator": ">", "aggregation": "max", "window": "1m", "for": "0",
                      "groupBy": ["room"]},
        "thresholds": [{"severity": "warning", "value": 5}, {"severity": "critical",
                                                              "value": 8}],
        "notificationChannels": ["oncall", "ops"],
    }
    body.update(overrides)
    return body


def test_create_is_loaded_fires_with_severity_and_channels_then_update_and_delete(
        stack, webhook_sink):
    stack.source.values['pulse_test_temperature_celsius{room="gym"}'] = 10
    stack.prometheus.wait_for_value('pulse_test_temperature_celsius{room="gym"}')
    resp = stack.client.post(RULES, json=rule("PulseTestTemperatureHigh"),
                             headers=auth("engineer"))
    assert resp.status_code == 201, resp.json
    created = resp.json
    rid = created["id"]
    assert created["loaded"]["group"] == f"pulse-api-{rid}"
    assert created["version"] == 1
    # Confirmed before the answer: Prometheus lists the group already.
    group = stack.groups()[f"pulse-api-{rid}"]
    assert [r["labels"]["severity"] for r in group["rules"]] == ["critical", "warning"]

    alert = stack.prometheus.wait_for_alert("PulseTestTemperatureHigh", "firing",
                                            {"severity": "critical"}, timeout=60)
    assert alert["labels"]["channels"] == "oncall,ops"
    assert alert["labels"]["rule_id"] == rid
    assert alert["labels"]["team"] == "oncall"
    assert alert["labels"]["room"] == "gym"
    assert alert["annotations"]["runbook_url"].endswith(f"/alerts/rules/{rid}")
    # ...and it reaches Alertmanager's receiver with those labels.
    webhook_sink.wait_for(lambda b: any(
        a["labels"].get("rule_id") == rid and a["labels"].get("severity") == "critical"
        for a in b.get("alerts", [])), timeout=60, path_prefix="/alertmanager")

    # Update: thresholds far above the value -> the alert stops firing.
    resp = stack.client.put(f"{RULES}/{rid}", headers=auth("engineer"), json=rule(
        "PulseTestTemperatureHigh", thresholds=[{"severity": "critical", "value": 100}]))
    assert resp.status_code == 200, resp.json
    assert resp.json["version"] == 2
    assert "> 100" in stack.groups()[f"pulse-api-{rid}"]["rules"][0]["query"]
    wait_until(lambda: not [a for a in stack.prometheus.alerts()
                            if a["labels"].get("rule_id") == rid],
               timeout=60, message="the alert to resolve")

    history = stack.client.get(f"{RULES}/{rid}/history", headers=auth("auditor")).json
    assert [(v["version"], v["action"], v["who"]) for v in history["versions"]] == [
        (1, "create", "engineer-user"), (2, "update", "engineer-user")]
    assert "-" in history["versions"][1]["diff"] and "> 100" in history["versions"][1]["diff"]

    # Rollback to version 1: it fires again.
    resp = stack.client.post(f"{RULES}/{rid}/rollback?version=1", headers=auth("admin"))
    assert resp.status_code == 200, resp.json
    assert resp.json["version"] == 3
    stack.prometheus.wait_for_alert("PulseTestTemperatureHigh", "firing",
                                    {"severity": "warning", "rule_id": rid}, timeout=60)

    # Delete: the group leaves Prometheus before the answer.
    resp = stack.client.delete(f"{RULES}/{rid}", headers=auth("engineer"))
    assert resp.status_code == 200 and resp.json["version"] == 4
    assert f"pulse-api-{rid}" not in stack.groups()
    assert stack.client.get(f"{RULES}/{rid}", headers=auth("admin")).status_code == 404
    assert not (stack.rules_dir / f"api-{rid}.yml").exists()
    registry = stack.app.config["REGISTRY"]
    assert registry.get_sample_value("pulse_bridge_rule_reloads_total",
                                     {"result": "success"}) >= 4


def test_invalid_rules_are_refused_and_prometheus_keeps_its_rules(stack):
    resp = stack.client.post(RULES, json=rule("PulseTestKeep"), headers=auth("admin"))
    assert resp.status_code == 201
    before = {n: g["rules"] for n, g in stack.groups().items()}
    files = sorted(p.name for p in stack.rules_dir.glob("*.yml"))

    bad_function = rule("PulseTestBadFn", expr="nosuchfn(up)")
    del bad_function["metric"]
    resp = stack.client.post(RULES, json=bad_function, headers=auth("engineer"))
    assert resp.status_code == 400
    assert resp.json["error"]["details"][0]["field"] == "expr"
    assert "nosuchfn" in resp.json["error"]["details"][0]["problem"]

    bad_promql = dict(bad_function, expr="sum(up")
    assert stack.client.post(RULES, json=bad_promql, headers=auth("admin")).status_code == 400

    # Python accepts this regular expression, RE2 (Prometheus) does not: refused before
    # anything is written.
    re2 = rule("PulseTestRe2", condition={"operator": ">", "filters": [
        {"label": "room", "op": "=~", "value": "(?=gym)"}]})
    resp = stack.client.post(RULES, json=re2, headers=auth("admin"))
    assert resp.status_code == 400, resp.json
    assert resp.json["error"]["details"][0]["field"] == "condition.filters[0].value"

    resp = stack.client.post(RULES, json=rule("PulseTestKeep"), headers=auth("admin"))
    assert resp.status_code == 409
    assert resp.json["error"]["details"] == [{"field": "name", "problem": "duplicate name"}]

    # An analyst may not write; an engineer without expr permission is tested in unit tests.
    assert stack.client.post(RULES, json=rule("X"), headers=auth("analyst")).status_code == 403

    assert {n: g["rules"] for n, g in stack.groups().items()}.keys() == before.keys()
    assert sorted(p.name for p in stack.rules_dir.glob("*.yml")) == files


def test_prometheus_refusing_the_reload_restores_and_names_the_cause(stack):
    # A broken file someone dropped beside the bridge's: every reload fails until it goes.
    broken = stack.rules_dir / "zz-broken.yml"
    broken.write_text("groups:\n- name: x\n  rules:\n  - alert: X\n    expr: sum(\n")
    try:
        resp = stack.client.post(RULES, json=rule("PulseTestRefused"), headers=auth("admin"))
        assert resp.status_code == 422, resp.json
        assert "zz-broken.yml" in resp.json["error"]["message"]
        assert "restored" in resp.json["error"]["message"]
        assert not [v for v in stack.app.extensions["pulse.rulestore"].live("api-")
                    if v.name == "PulseTestRefused"]
        assert not [p for p in stack.rules_dir.glob("api-*.yml")
                    if "PulseTestRefused" in p.read_text()]
    finally:
        broken.unlink()
        stack.prometheus.reload()
    runtime = stack.prometheus.api("status/runtimeinfo")
    assert runtime["reloadConfigSuccess"] is True


def test_dry_run_writes_nothing_and_warns_about_missing_metric(stack):
    files = sorted(stack.rules_dir.glob("*.yml"))
    resp = stack.client.post(f"{RULES}?dryRun=true", headers=auth("engineer"),
                             json=rule("PulseTestDry", metric="pulse_test_not_there"))
    assert resp.status_code == 200
    assert resp.json["valid"] is True and resp.json["metricExists"] is False
    assert "pulse_test_not_there" in resp.json["warnings"][0]
    assert yaml.safe_load(resp.json["yaml"])["groups"][0]["rules"][0]["alert"] == "PulseTestDry"
    assert sorted(stack.rules_dir.glob("*.yml")) == files
    # The metric is there once scraped (whichever test of the module ran first).
    stack.source.values.setdefault('pulse_test_temperature_celsius{room="gym"}', 10)
    stack.prometheus.wait_for_value("pulse_test_temperature_celsius", timeout=60)
    resp = stack.client.post(f"{RULES}?dryRun=true", headers=auth("engineer"),
                             json=rule("PulseTestDry2"))
    assert resp.json["metricExists"] is True and resp.json["warnings"] == []


def test_fifty_concurrent_creates_lose_nothing(stack):
    results = []

    def create(i):
        client = stack.app.test_client()
        resp = client.post(RULES, json=rule(f"PulseTestConcurrent{i}"), headers=auth("admin"))
        results.append((resp.status_code, resp.json.get("id")))

    threads = [threading.Thread(target=create, args=(i,)) for i in range(50)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    assert sorted(s for s, _ in results) == [201] * 50, results
    ids = {rid for _, rid in results}
    loaded = stack.groups()
    assert {f"pulse-api-{rid}" for rid in ids} <= loaded.keys()
    listed = stack.client.get(RULES, headers=auth("admin")).json["rules"]
    assert ids <= {r["id"] for r in listed}


def test_prometheus_down_gives_503_and_no_change(tmp_path, prometheus_factory, alertmanager):
    prom = prometheus_factory(rule_files=[tmp_path / "data" / "rules" / "*.yml"])
    app = create_app(bridge_config(tmp_path, prometheus={"url": prom.url},
                                   alertmanager={"url": alertmanager.url},
                                   bridge={"channels": {"oncall": ["json://127.0.0.1:9/x"],
                                                        "ops": ["json://127.0.0.1:9/y"]}}))
    client = app.test_client()
    assert client.post(RULES, json=rule("PulseTestUp"), headers=auth("admin")).status_code == 201
    files = {p.name: p.read_text() for p in (tmp_path / "data" / "rules").glob("*.yml")}
    prom.stop()
    resp = client.post(RULES, json=rule("PulseTestDown"), headers=auth("admin"))
    assert resp.status_code == 503
    assert "Prometheus" in resp.json["error"]["message"]
    assert {p.name: p.read_text() for p in (tmp_path / "data" / "rules").glob("*.yml")} == files
    assert [r["name"] for r in client.get(RULES, headers=auth("admin")).json["rules"]] == [
        "PulseTestUp"]


def test_maintenance_window_becomes_an_alertmanager_silence(stack, alertmanager):
    body = rule("PulseTestMaintenance", suppressionRules=[{
        "type": "maintenance_window", "startsAt": "2026-01-01T00:00:00Z",
        "endsAt": "2099-01-01T00:00:00Z"}])
    resp = stack.client.post(RULES, json=body, headers=auth("admin"))
    assert resp.status_code == 201, resp.json
    rid, (sid,) = resp.json["id"], resp.json["silences"]
    silences = {s["id"]: s for s in
                requests.get(f"{alertmanager.url}/api/v2/silences", timeout=10).json()}
    assert silences[sid]["status"]["state"] == "active"
    assert silences[sid]["matchers"][0]["value"] == rid
    assert stack.client.delete(f"{RULES}/{rid}", headers=auth("admin")).status_code == 200
    silences = {s["id"]: s for s in
                requests.get(f"{alertmanager.url}/api/v2/silences", timeout=10).json()}
    assert silences[sid]["status"]["state"] == "expired"


KILLER = """
import sys, time
from pulse.promapi import PrometheusClient
from bridge.services.rule_store import RuleStore
store = RuleStore(sys.argv[1], PrometheusClient(sys.argv[2]))
i = 0
print("ready", flush=True)
while True:
    i += 1
    key = f"kill-{i % 3}"
    text = (f"groups:\\n- name: {key}\\n  rules:\\n"
            f"  - record: pulse_test_kill\\n    expr: vector({i})\\n")
    store.apply(key, text, action="update", who="killer", role="admin", expect_groups=[key])
"""


def test_sigkill_during_writes_leaves_files_and_history_consistent(stack):
    pending = 0

    def versions() -> int:
        with sqlite3.connect(stack.data_dir / "bridge" / "rules.sqlite", timeout=10) as db:
            return db.execute("SELECT count(*) FROM versions").fetchone()[0]

    for round_ in range(3):
        written = versions()
        proc = subprocess.Popen([sys.executable, "-c", KILLER, str(stack.data_dir),
                                 stack.prometheus.url], cwd=ROOT, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        assert proc.stdout.readline().strip() == "ready", proc.stderr.read()
        # Kill it in the middle of its writes, later in each round (more versions first).
        wanted = written + 2 + 3 * round_
        wait_until(lambda n=wanted: versions() >= n, 30, message="the killer's writes")
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=10)
        with sqlite3.connect(stack.data_dir / "bridge" / "rules.sqlite") as db:
            pending += db.execute("SELECT count(*) FROM versions WHERE state='pending'"
                                  ).fetchone()[0]
        store = RuleStore(stack.data_dir, stack.app.extensions["pulse.rulestore"].prometheus)
        with sqlite3.connect(store.db_path) as db:
            assert db.execute("SELECT count(*) FROM versions WHERE state='pending'"
                              ).fetchone()[0] == 0
        for i in range(3):
            key = f"kill-{i}"
            current = store.current(key)
            path = store.path_of(key)
            if current is None:
                assert not path.exists()
            else:
                # Never torn: the file is exactly the last committed version.
                assert path.read_text() == current.content
                yaml.safe_load(path.read_text())
    print(f"kills that left a pending change to roll back: {pending} of 3")


WRITER = """
import sys
from pulse.promapi import PrometheusClient
from bridge.services.rule_store import RuleStore
store = RuleStore(sys.argv[1], PrometheusClient(sys.argv[2]))
me = sys.argv[3]
for i in range(8):
    for key in (f"xp-{me}-{i}", "xp-shared"):
        text = (f"groups:\\n- name: {key}\\n  rules:\\n"
                f"  - record: pulse_test_xp\\n    expr: vector({i})\\n")
        store.apply(key, text, action="update", who=me, role="admin", expect_groups=[key])
"""


def test_two_bridge_processes_serialise_on_the_rule_directory(stack):
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(stack.data_dir),
                               stack.prometheus.url, name], cwd=ROOT,
                              stderr=subprocess.PIPE, text=True) for name in ("pa", "pb")]
    for proc in procs:
        _, err = proc.communicate(timeout=240)
        assert proc.returncode == 0, err
    store = stack.app.extensions["pulse.rulestore"]
    shared = store.history("xp-shared")
    assert [v.version for v in shared] == list(range(1, 17))
    assert sorted(v.who for v in shared) == ["pa"] * 8 + ["pb"] * 8
    assert store.path_of("xp-shared").read_text() == shared[-1].content
    for name in ("pa", "pb"):
        for i in range(8):
            assert len(store.history(f"xp-{name}-{i}")) == 1
    loaded = stack.groups()
    assert {f"xp-{n}-{i}" for n in ("pa", "pb") for i in range(8)} <= loaded.keys()


class RefusesOnce(PrometheusClient):
    """The real client, except that its first reload is refused as Prometheus refuses one."""

    refused = 0

    def reload(self):
        if not self.refused:
            self.refused += 1
            raise PromError("reload_failed", "Prometheus refused the reload: test", invalid=True)
        super().reload()


def test_a_passing_reload_refusal_is_retried_not_reported(stack):
    prom = RefusesOnce(stack.prometheus.url)
    registry = CollectorRegistry()
    store = RuleStore(stack.data_dir, prom, registry=registry)
    text = ("groups:\n- name: retry-once\n  rules:\n"
            "  - record: pulse_test_retry\n    expr: vector(1)\n")
    version = store.apply("retry-once", text, action="create", who="t", role="admin",
                          expect_groups=["retry-once"])
    assert prom.refused == 1 and version.version == 1
    assert "retry-once" in stack.groups()
    counts = {r: registry.get_sample_value("pulse_bridge_rule_reloads_total", {"result": r})
              for r in ("success", "failure")}
    assert counts == {"success": 1, "failure": 1}
