"""The rule compiler: request validation, PromQL/YAML safety (fuzzed), promtool acceptance."""

import subprocess

import promql_parser
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bridge.errors import http_status
from bridge.services.errors import Invalid
from bridge.services.rule_compiler import (
    check_group_in_process,
    compile_rule,
    duration_seconds,
    promql_string,
    render_groups,
    validate_request,
)
from tests.harness import require_binary

CHANNELS = {"oncall", "ops"}


def request(**overrides):
    body = {
        "name": "ApiLatencyP95HighTest",
        "description": "API p95 latency above its threshold.",
        "metric": "http_server_request_duration_seconds",
        "condition": {"operator": ">", "aggregation": "p95", "window": "5m", "for": "2m",
                      "groupBy": ["http_route"]},
        "thresholds": [{"severity": "warning", "value": 1.5},
                       {"severity": "critical", "value": 2}],
        "notificationChannels": ["oncall", "ops"],
    }
    body.update(overrides)
    return body


def selectors(expr: str) -> list[tuple[str, list[tuple[str, str, str]]]]:
    out = []

    def visit(node):
        if isinstance(node, promql_parser.VectorSelector):
            out.append((node.name, [(m.name, str(m.op), m.value)
                                    for m in node.matchers.matchers]))
    promql_parser.walk(promql_parser.parse(expr), visit)
    return out


def test_one_rule_per_threshold_with_labels_and_annotations():
    req = validate_request(request(), CHANNELS)
    group = compile_rule("r0123456789ab", req)
    assert group["name"] == "pulse-api-r0123456789ab"
    assert [r["labels"]["severity"] for r in group["rules"]] == ["critical", "warning"]
    for rule in group["rules"]:
        assert rule["alert"] == "ApiLatencyP95HighTest"
        assert rule["for"] == "2m"
        assert rule["labels"] == {"severity": rule["labels"]["severity"], "team": "oncall",
                                  "rule_id": "r0123456789ab", "channels": "oncall,ops"}
        assert set(rule["annotations"]) == {"summary", "description", "runbook_url",
                                            "dashboard_url"}
        assert rule["annotations"]["runbook_url"].endswith("/alerts/rules/r0123456789ab")
        assert rule["annotations"]["dashboard_url"] == "http://127.0.0.1:3000/d/pulse-system"
    assert group["rules"][0]["expr"] == (
        "histogram_quantile(0.95, sum by (le, http_route) "
        "(rate(http_server_request_duration_seconds_bucket{}[5m]))) > 2")


@pytest.mark.parametrize("aggregation,expected", [
    ("avg", "avg (avg_over_time(m{}[5m])) > 1"),
    ("max", "max (max_over_time(m{}[5m])) > 1"),
    ("sum", "sum (avg_over_time(m{}[5m])) > 1"),
    ("count", "count (last_over_time(m{}[5m])) > 1"),
    ("rate", "sum (rate(m{}[5m])) > 1"),
    ("increase", "sum (increase(m{}[5m])) > 1"),
])
def test_aggregations(aggregation, expected):
    req = validate_request(request(metric="m", condition={"operator": ">", "aggregation":
                                                          aggregation},
                                   thresholds=[{"severity": "info", "value": 1}]), CHANNELS)
    assert compile_rule("r0123456789ab", req)["rules"][0]["expr"] == expected


def test_suppressions_become_promql():
    req = validate_request(request(suppressionRules=[
        {"type": "while_firing", "alertname": "Watchdog"},
        {"type": "business_hours_only", "startHour": 8, "endHour": 18}]), CHANNELS)
    expr = compile_rule("r0123456789ab", req)["rules"][0]["expr"]
    assert 'unless on() ALERTS{alertname="Watchdog",alertstate="firing"}' in expr
    assert "and on() (hour() >= 8 < 18) and on() (day_of_week() >= 1 <= 5)" in expr
    promql_parser.parse(expr)


@pytest.mark.parametrize("body,field", [
    ({"name": "bad name"}, "name"),
    ({"metric": "bad-metric"}, "metric"),
    ({"condition": {"operator": "=>"}}, "condition.operator"),
    ({"condition": {"operator": ">", "groupBy": ["bad-label"]}}, "condition.groupBy[0]"),
    ({"condition": {"operator": ">", "groupBy": ["severity"]}}, "condition.groupBy[0]"),
    ({"condition": {"operator": ">", "filters": [{"label": "a", "op": "=~", "value": "("}]}},
     "condition.filters[0].value"),
    ({"thresholds": [{"severity": "warning", "value": 1}, {"severity": "warning",
                                                            "value": 2}]},
     "thresholds[1].severity"),
    ({"thresholds": [{"severity": "warning", "value": float("nan")}]}, "thresholds[0].value"),
    ({"notificationChannels": ["nope"]}, "notificationChannels[0]"),
    ({"expr": "rate(x[5m]", "metric": None}, "expr"),
    ({"expr": "nosuchfunction(x)", "metric": None}, "expr"),
    ({"expr": "up # the comparison would be commented out", "metric": None}, "expr"),
    ({"expr": '"a string"', "metric": None}, "expr"),
    ({"description": None}, "description"),
    ({"suppressionRules": [{"type": "maintenance_window", "startsAt": "2030-01-02T00:00:00Z",
                            "endsAt": "2030-01-01T00:00:00Z"}]}, "suppressionRules[0].endsAt"),
])
def test_invalid_requests_name_the_field(body, field):
    req = request(**body)
    for k in [k for k, v in req.items() if v is None]:
        del req[k]
    with pytest.raises(Invalid) as err:
        validate_request(req, CHANNELS)
    assert http_status(err.value) == 400
    assert field in [d["field"] for d in err.value.details], err.value.details


def test_expr_escape_hatch_keeps_operator_and_thresholds():
    req = request(expr='sum by (job) (up{job="x"}) == 0')
    del req["metric"]
    req["condition"] = {"operator": ">", "for": "0"}
    req["thresholds"] = [{"severity": "critical", "value": 0.5}]
    rule = compile_rule("r0123456789ab", validate_request(req, CHANNELS))["rules"][0]
    assert rule["expr"] == '(sum by (job) (up{job="x"}) == 0) > 0.5'
    assert "for" not in rule


def test_template_syntax_in_description_is_escaped():
    req = validate_request(request(description='{{ query "up" }} {{ $labels }}'), CHANNELS)
    desc = compile_rule("r0123456789ab", req)["rules"][0]["annotations"]["description"]
    assert desc.startswith('{{ "{{" }} query "up" }} {{ "{{" }} $labels }}')


label_value = st.text(min_size=0, max_size=40)
label_name = st.from_regex(r"\A[a-z_][a-z0-9_]{0,15}\Z").filter(
    lambda s: not s.startswith("__") and s not in {"le", "severity", "team", "rule_id",
                                                   "channels"})


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(filters=st.lists(st.tuples(label_name, st.sampled_from(["=", "!=", "=~", "!~"]),
                                  label_value), max_size=4),
       description=st.text(max_size=80),
       aggregation=st.sampled_from(["avg", "sum", "min", "max", "count", "rate", "increase",
                                    "p50", "p99"]),
       value=st.floats(allow_nan=False, allow_infinity=False, width=32))
def test_fuzz_values_cannot_inject_promql_or_yaml(filters, description, aggregation, value):
    """Whatever the values, the YAML has exactly our structure and the PromQL exactly our
    selectors, holding the values verbatim."""
    body = request(metric="fuzz_metric", description=description or "x",
                   condition={"operator": ">=", "aggregation": aggregation,
                              "filters": [{"label": n, "op": o, "value": v}
                                          for n, o, v in filters]},
                   thresholds=[{"severity": "warning", "value": value}])
    try:
        req = validate_request(body, CHANNELS)
    except Invalid as exc:
        # Only invalid regular expressions may be refused here.
        assert all("regular expression" in d["problem"] for d in exc.details), exc.details
        return
    group = compile_rule("r0123456789ab", req)
    text = render_groups([group])
    assert yaml.safe_load(text) == {"groups": [group]}
    assert check_group_in_process(group) == []
    rule = group["rules"][0]
    assert set(rule) == {"alert", "expr", "for", "labels", "annotations"}
    sels = selectors(rule["expr"])
    assert len(sels) == 1
    name, matchers = sels[0]
    assert name.startswith("fuzz_metric")
    assert [(n, v) for n, _, v in matchers] == [(n, v) for n, _, v in filters]


@settings(max_examples=100, deadline=None)
@given(st.text(max_size=50))
def test_promql_string_round_trips(value):
    parsed = selectors(f"x{{a={promql_string(value)}}}")
    assert parsed == [("x", [("a", "MatchOp.Equal", value)])]


def test_promtool_accepts_compiled_groups(tmp_path):
    """Compiled output (every aggregation and suppression) is what promtool accepts, which is
    why compiled rules may skip promtool on the critical path."""
    promtool = require_binary("promtool")
    groups = []
    for i, agg in enumerate(["avg", "sum", "min", "max", "count", "rate", "increase", "p50",
                             "p90", "p95", "p99"]):
        req = validate_request(request(
            name=f"Rule{i}", description='tricky "quotes" {{ $value }} \n: - [x]',
            condition={"operator": "!=", "aggregation": agg, "groupBy": ["a"],
                       "filters": [{"label": "b", "op": "=~", "value": 'x"|\\d+'}]},
            suppressionRules=[{"type": "while_firing", "alertname": "Other"},
                              {"type": "business_hours_only"}]), CHANNELS)
        groups.append(compile_rule(f"r{i:012x}", req))
    path = tmp_path / "all.yml"
    path.write_text(render_groups(groups))
    proc = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_suppressions_behave_in_prometheus_engine(tmp_path):
    """promtool's rule tests run Prometheus's engine: business hours (UTC, Mon-Fri) and
    while_firing silence the compiled alert when they should. 1970-01-01 was a Thursday."""
    promtool = require_binary("promtool")
    hours = validate_request(request(
        name="BizHours", metric="load", condition={"operator": ">", "aggregation": "max",
                                                   "window": "5m", "for": "0"},
        thresholds=[{"severity": "warning", "value": 1}],
        suppressionRules=[{"type": "business_hours_only"}]), CHANNELS)
    quiet = validate_request(request(
        name="QuietWhileOther", metric="load", condition={"operator": ">", "aggregation": "max",
                                                          "window": "5m", "for": "0"},
        thresholds=[{"severity": "warning", "value": 1}],
        suppressionRules=[{"type": "while_firing", "alertname": "Other"}]), CHANNELS)
    other = {"name": "other", "rules": [{"alert": "Other", "expr": "other_on > 0"}]}
    rules = tmp_path / "rules.yml"
    rules.write_text(render_groups([compile_rule("r000000000001", hours),
                                    compile_rule("r000000000002", quiet), other]))
    def expected(rid, req):
        labels = {"severity": "warning", "team": "oncall", "rule_id": rid,
                  "channels": "oncall,ops"}
        annotations = compile_rule(rid, req)["rules"][0]["annotations"] | {
            "description": "API p95 latency above its threshold. Current value: 5."}
        return [{"exp_labels": labels, "exp_annotations": annotations}]

    test = {
        "rule_files": [str(rules)], "evaluation_interval": "1m",
        "tests": [{
            "interval": "1m",
            "input_series": [{"series": "load", "values": "5+0x3600"},
                             {"series": "other_on", "values": "0x720 1x900"}],
            "alert_rule_test": [
                {"eval_time": "10h", "alertname": "BizHours",
                 "exp_alerts": expected("r000000000001", hours)},
                {"eval_time": "20h", "alertname": "BizHours", "exp_alerts": []},
                # Saturday 1970-01-03 10:00 UTC: a weekend.
                {"eval_time": "58h", "alertname": "BizHours", "exp_alerts": []},
                {"eval_time": "5h", "alertname": "QuietWhileOther",
                 "exp_alerts": expected("r000000000002", quiet)},
                {"eval_time": "15h", "alertname": "QuietWhileOther", "exp_alerts": []},
            ],
        }],
    }
    path = tmp_path / "test.yml"
    path.write_text(yaml.safe_dump(test, sort_keys=False))
    proc = subprocess.run([promtool, "test", "rules", str(path)], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr


# Prometheus 2.42's duration grammar (prometheus/common ParseDuration, checked with promtool).
GOOD_DURATIONS = ["0", "0s", "0m", "1h30m", "2w", "1y", "1500ms", "1d2h", "1m30s500ms"]
BAD_DURATIONS = ["1.5h", "2h1d", "1h1h", "1H", "10", "-1m", "", "ms"]


@pytest.mark.parametrize("value", GOOD_DURATIONS)
def test_every_prometheus_duration_is_accepted(value):
    group = {"name": "g", "interval": value, "rules": [
        {"alert": "A", "expr": "up == 0", "for": value, "keep_firing_for": value}]}
    assert check_group_in_process(group) == []
    req = request(condition={"operator": ">", "for": value})
    rule = compile_rule("r0123456789ab", validate_request(req, CHANNELS))["rules"][0]
    assert rule.get("for", "0") == (value if duration_seconds(value) else "0")


@pytest.mark.parametrize("value", BAD_DURATIONS)
@pytest.mark.parametrize("key", ["for", "keep_firing_for"])
def test_invalid_durations_name_the_field(value, key):
    group = {"name": "g", "rules": [{"alert": "A", "expr": "up", key: value}]}
    problems = check_group_in_process(group)
    assert [p["field"] for p in problems] == [f"group.rules[0].{key}"], problems
    with pytest.raises(Invalid) as err:
        validate_request(request(condition={"operator": ">", "for": value}), CHANNELS)
    assert "condition.for" in [d["field"] for d in err.value.details]


@pytest.mark.parametrize("group,field", [
    ({"name": "g", "rules": [{"record": "a:b", "expr": "up", "keep_firing_for": "1m"}]},
     "group.rules[0].keep_firing_for"),
    ({"name": "g", "limit": -1, "rules": []}, "group.limit"),
    ({"name": "g", "limit": "10", "rules": []}, "group.limit"),
    ({"name": "g", "query_offset": "1m", "rules": []}, "group.query_offset"),
    ({"name": "g", "evaluation_delay": "1m", "rules": []}, "group.evaluation_delay"),
    ({"name": "g", "source_tenants": ["a"], "rules": []}, "group.source_tenants"),
    ({"name": "g", "rules": [{"alert": "A", "expr": "up", "labels": {"tenant": "x"}}]},
     "group.rules[0].labels.tenant"),
    ({"name": "g", "interval": "1.5h", "rules": []}, "group.interval"),
])
def test_what_pulse_or_prometheus_refuses_is_named(group, field):
    assert field in [p["field"] for p in check_group_in_process(group)]


@pytest.mark.parametrize("rules", [None, []])
def test_empty_and_null_rules_are_groups_without_rules(rules):
    assert check_group_in_process({"name": "g", "rules": rules, "limit": 0}) == []


def test_keep_firing_for_is_refused_when_prometheus_lacks_it():
    group = {"name": "g", "rules": [{"alert": "A", "expr": "up", "keep_firing_for": "5m"}]}
    assert check_group_in_process(group, keep_firing_for=False)[0]["field"] == \
        "group.rules[0].keep_firing_for"


def test_no_channels_routes_by_team():
    req = validate_request(request(notificationChannels=[], team="data"), CHANNELS)
    rule = compile_rule("r0123456789ab", req)["rules"][0]
    assert "channels" not in rule["labels"] and rule["labels"]["team"] == "data"


def test_zero_window_is_refused():
    with pytest.raises(Invalid) as err:
        validate_request(request(condition={"operator": ">", "window": "0m"}), CHANNELS)
    assert "condition.window" in [d["field"] for d in err.value.details]
