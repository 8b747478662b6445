"""The contract walker over rules/: labels, annotations, runbooks, names, test coverage."""

from __future__ import annotations

import re

import pytest

from tests.rules import contract

GOOD_ALERT = {
    "alert": "ExampleThingBroken",
    "expr": "vector(1)",
    "labels": {"severity": "warning", "team": "oncall"},
    "annotations": {
        "summary": "A thing is broken.",
        "description": "Thing {{ $labels.thing }} is broken.",
        "runbook_url": "http://127.0.0.1:8080/runbooks#examplethingbroken",
        "dashboard_url": "http://127.0.0.1:3000/d/pulse-system",
    },
}


@pytest.fixture(scope="module")
def rule_docs():
    return {p.name: contract.load(p) for p in contract.rule_files()}


@pytest.fixture(scope="module")
def test_docs():
    return {p.name: contract.load(p) for p in contract.test_files()}


def test_every_area_has_a_rule_file_and_a_test_file():
    assert sorted(p.name for p in contract.rule_files()) == sorted(
        f"{a}.rules.yml" for a in contract.AREAS)
    assert sorted(p.name for p in contract.test_files()) == sorted(
        f"{a}.test.yml" for a in contract.AREAS)


def test_every_test_file_loads_its_own_rule_file(test_docs):
    for name, doc in test_docs.items():
        area = name.removesuffix(".test.yml")
        assert doc["rule_files"] == [f"../{area}.rules.yml"], name


def test_rule_files_keep_the_contract(rule_docs):
    assert contract.problems(rule_docs, contract.runbook_sections()) == []


def test_every_alert_and_recording_rule_is_tested(rule_docs, test_docs):
    assert contract.coverage_problems(rule_docs, test_docs) == []


def test_every_runbook_section_belongs_to_an_alert(rule_docs):
    alerts = {r["alert"] for r in contract.rules_of(rule_docs) if "alert" in r}
    # Area headings group the sections; every other heading must be a live alert.
    areas = {"Application", "Infrastructure", "Integrations", "AI", "Business", "Engagement",
             "Capacity"}
    stale = contract.runbook_sections() - alerts - areas
    assert not stale, f"runbook sections without an alert: {sorted(stale)}"


def test_alert_names_shared_with_other_parts_exist(rule_docs):
    rules = [r for r in contract.rules_of(rule_docs) if "alert" in r]
    by_name: dict[str, list[dict]] = {}
    for rule in rules:
        by_name.setdefault(rule["alert"], []).append(rule)
    for name in ("ApiLatencyP95High", "AiRecommendationAccuracyLow",
                 "AiRecommendationAccuracyDegraded", "IntegrationProbeFailing",
                 "AppCrashRateHigh", "IngestRejectionRatioHigh", "NodeFilesystemFillingUp",
                 "Watchdog", "CapacityHeadroomLow"):
        assert name in by_name, name
    latency = {r["labels"]["severity"]: r["expr"] for r in by_name["ApiLatencyP95High"]}
    assert latency == {
        "warning": "route:http_server_request_duration_seconds:p95_5m > 1.5",
        "critical": "route:http_server_request_duration_seconds:p95_5m > 2"}
    assert {r["labels"]["severity"] for r in by_name["NodeFilesystemFillingUp"]} == {
        "warning", "critical"}
    assert by_name["AiRecommendationAccuracyLow"][0]["labels"]["team"] == "ai"
    assert "retrain" in by_name["AiRecommendationAccuracyLow"][0]["annotations"][
        "suggested_action"].lower()
    assert by_name["AiRecommendationAccuracyLow"][0]["annotations"]["dashboard_url"].endswith(
        "/pulse-ai")
    assert by_name["IntegrationProbeFailing"][0]["labels"] == {
        "severity": "critical", "team": "oncall"}
    assert by_name["IngestRejectionRatioHigh"][0]["labels"]["team"] == "data"
    assert by_name["Watchdog"][0]["labels"] == {"severity": "none", "team": "oncall"}


def test_every_scrape_job_has_a_down_alert_on_up_and_absent(rule_docs):
    from pulse.launcher.render import COMPOSE_HOSTS

    assert set(contract.SCRAPE_JOBS) == set(COMPOSE_HOSTS)
    downs = [r for r in contract.rules_of(rule_docs)
             if "alert" in r and r["alert"].endswith("Down")]
    for job in contract.SCRAPE_JOBS:
        mine = [r for r in downs if f'up{{job="{job}"}} == 0' in r["expr"]]
        assert len(mine) == 1, job
        assert f'absent(up{{job="{job}"}})' in mine[0]["expr"], job


def test_slo_targets_live_in_one_place(rule_docs):
    objectives = [r for r in contract.rules_of(rule_docs)
                  if r.get("record") == "slo:objective:ratio"]
    assert {r["labels"]["slo"]: r["expr"] for r in objectives} == {
        "api-availability": "vector(0.995)", "api-latency": "vector(0.99)"}
    # The latency SLI reads the histogram bucket at the published threshold (1 s).
    threshold = [r for r in contract.rules_of(rule_docs)
                 if r.get("record") == "slo:latency_threshold:seconds"]
    assert [r["expr"] for r in threshold] == ["vector(1)"]
    latency = [r for r in contract.rules_of(rule_docs)
               if r.get("record", "").startswith("slo:sli_error:")
               and r["labels"]["slo"] == "api-latency"]
    assert len(latency) == 7
    assert all(r'le=~"1|1\\.0"' in r["expr"] for r in latency)
    # The burn-rate alerts read the budget derived from them, never a number of their own.
    burns = [r for r in contract.rules_of(rule_docs) if r.get("alert") == "ApiErrorBudgetBurn"]
    assert len(burns) == 4
    for rule in burns:
        assert rule["expr"].count("slo:error_budget:ratio") == 2, rule["expr"]
        assert not re.search(r"0\.99", rule["expr"]), rule["expr"]


def test_walker_reports_each_broken_contract():
    sections = {"ExampleThingBroken"}
    assert contract.alert_problems(GOOD_ALERT, sections, "f") == []
    cases = {
        "name is not CamelCase": {"alert": "example_thing_broken"},
        "severity 'page'": {"labels": {"severity": "page", "team": "oncall"}},
        "team None": {"labels": {"severity": "warning"}},
        "summary does not end with a period": {"annotations": {
            **GOOD_ALERT["annotations"], "summary": "A thing is broken"}},
        "summary is templated": {"annotations": {
            **GOOD_ALERT["annotations"], "summary": "{{ $labels.x }} is broken."}},
        "no description": {"annotations": {
            k: v for k, v in GOOD_ALERT["annotations"].items() if k != "description"}},
        "description is not templated": {"annotations": {
            **GOOD_ALERT["annotations"], "description": "Broken."}},
        "runbook_url": {"annotations": {
            **GOOD_ALERT["annotations"], "runbook_url": "http://example.com/rb"}},
        "dashboard_url": {"annotations": {
            **GOOD_ALERT["annotations"], "dashboard_url": "http://127.0.0.1:3000/d/other"}},
    }
    for message, change in cases.items():
        found = contract.alert_problems({**GOOD_ALERT, **change}, sections, "f")
        assert any(message in p for p in found), (message, found)
    missing = contract.alert_problems(GOOD_ALERT, set(), "f")
    assert missing == ["f: alert 'ExampleThingBroken': docs/runbooks.md has no "
                       "'## ExampleThingBroken' section"]


@pytest.mark.parametrize("name,ok", [
    ("route:http_server_request_duration_seconds:p95_5m", True),
    ("model:ai_recommendation_accuracy:ratio_1h", True),
    ("http_server_requests_rate5m", False),
    (":http_server_requests:rate5m", False),
    ("route:http_server_requests:", False),
    ("Route:http_server_requests:rate5m", False),
])
def test_walker_checks_recording_rule_names(name, ok):
    assert (contract.record_problems({"record": name}, "f") == []) is ok


def test_coverage_walker_reports_untested_rules():
    rules = {"r": {"groups": [{"name": "g", "rules": [
        GOOD_ALERT, {"record": "job:x:rate5m", "expr": "vector(1)"}]}]}}
    assert contract.coverage_problems(rules, {}) == [
        "alert ExampleThingBroken: no promtool case where it fires",
        "alert ExampleThingBroken: no promtool case just before it fires (exp_alerts: [])",
        "recording rule job:x:rate5m: no promql_expr_test reads it"]
    tests = {"t": {"tests": [{"alert_rule_test": [
        {"alertname": "ExampleThingBroken", "exp_alerts": []},
        {"alertname": "ExampleThingBroken", "exp_alerts": [{"exp_labels": {}}]}],
        "promql_expr_test": [{"expr": "job:x:rate5m > 0"}]}]}}
    assert contract.coverage_problems(rules, tests) == []


def test_shortened_copy_drops_intervals_and_caps_for():
    doc = {"groups": [{"name": "g", "interval": "5m", "rules": [
        {"alert": "A", "expr": "vector(1)", "for": "1h"}, {"record": "a:b:c", "expr": "1"}]}]}
    short = contract.shortened(doc)
    assert short["groups"][0] == {"name": "g", "rules": [
        {"alert": "A", "expr": "vector(1)", "for": "1s"}, {"record": "a:b:c", "expr": "1"}]}
    assert doc["groups"][0]["interval"] == "5m"


def test_for_durations_are_production_values(rule_docs):
    # Only the heartbeat and a safety violation (zero tolerance) fire on the first evaluation.
    instant = {"Watchdog", "AiSafetyViolation"}
    seconds = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    for rule in contract.rules_of(rule_docs):
        if "alert" not in rule or rule["alert"] in instant:
            continue
        value = rule.get("for", "0s")
        assert re.fullmatch(r"\d+[smhd]", value), (rule["alert"], value)
        assert int(value[:-1]) * seconds[value[-1]] >= 60, (rule["alert"], value)


def test_every_runbook_section_says_meaning_checks_and_mitigation(rule_docs):
    text = contract.RUNBOOKS.read_text()
    alerts = {r["alert"] for r in contract.rules_of(rule_docs) if "alert" in r}
    # Split at each "## " heading; the body runs to the next one.
    bodies = dict(re.findall(r"^## (\S+)\s*\n(.*?)(?=^## |\Z)", text, re.M | re.S))
    for name in sorted(alerts):
        body = bodies.get(name, "")
        for part in ("**Meaning.**", "**First checks.**", "**Mitigation.**"):
            assert part in body, f"## {name} lacks {part}"


def test_group_intervals_stay_under_the_lookback(rule_docs):
    # A recorded series read by another rule must be refreshed within Prometheus's 5-minute
    # lookback, or the reader sees gaps that reset `for` timers.
    for doc in rule_docs.values():
        for group in doc["groups"]:
            interval = group.get("interval", "1m")
            assert re.fullmatch(r"[1-4]m|\d+s", interval), (group["name"], interval)
