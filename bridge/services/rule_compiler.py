"""AlertRuleRequest -> Prometheus rule group: validation and a pure compiler.

The PromQL is built from structured fields only. Metric and label names must
match Prometheus's grammar (checked by the schema and again here), label values
are written as escaped PromQL string literals, and the YAML is produced by a
YAML emitter, never by string formatting, so no field can inject PromQL or YAML.
Annotation text is escaped for Prometheus's Go templates as well.
"""

from __future__ import annotations

import math
import re
from datetime import datetime
from typing import Any

import promql_parser
import yaml

from bridge.services.errors import Invalid
from bridge.validation import validator

METRIC_NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
DURATION = re.compile(r"^(0|[1-9][0-9]*(ms|s|m|h|d|w|y))$")
GRAFANA_BASE = "http://127.0.0.1:3000/d/"
# What the compiler owns: a request may not filter or group on these.
RESERVED_LABELS = frozenset({"__name__", "le", "severity", "team", "rule_id", "channels"})

# libyaml's emitter when present (same output, ~10x faster than the pure-Python one).
_DUMPER = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
_OVER_TIME = {"avg": "avg_over_time", "min": "min_over_time", "max": "max_over_time",
              "sum": "avg_over_time"}
_QUANTILES = {"p50": "0.5", "p90": "0.9", "p95": "0.95", "p99": "0.99"}
# The operation whose AlertRuleRequest schema (bridge/openapi/rules.yaml) a request meets.
RULES_PATH = "/api/analytics/alerts/rules"


def _apply_defaults(body: dict) -> dict:
    req = dict(body)
    req.setdefault("team", "oncall")
    req.setdefault("dashboardUid", "pulse-system")
    req.setdefault("suppressionRules", [])
    cond = dict(req["condition"])
    cond.setdefault("aggregation", "avg")
    cond.setdefault("window", "5m")
    cond.setdefault("for", "1m")
    cond.setdefault("groupBy", [])
    cond["filters"] = [{"op": "=", **f} for f in cond.get("filters", [])]
    req["condition"] = cond
    sup = []
    for s in req["suppressionRules"]:
        if s["type"] == "business_hours_only":
            s = {"startHour": 9, "endHour": 17, **s}
        sup.append(s)
    req["suppressionRules"] = sup
    return req


def _semantic_problems(req: dict, channels: set[str] | None) -> list[dict]:
    problems = []
    cond = req["condition"]
    seen = set()
    for i, t in enumerate(req["thresholds"]):
        try:
            finite = math.isfinite(float(t["value"]))
        except OverflowError:
            finite = False
        if not finite:
            problems.append({"field": f"thresholds[{i}].value", "problem": "must be finite"})
        if t["severity"] in seen:
            problems.append({"field": f"thresholds[{i}].severity",
                             "problem": f"severity {t['severity']!r} appears twice"})
        seen.add(t["severity"])
    for i, label in enumerate(cond["groupBy"]):
        if label in RESERVED_LABELS or label.startswith("__"):
            problems.append({"field": f"condition.groupBy[{i}]",
                             "problem": f"label {label!r} is reserved"})
    for i, f in enumerate(cond["filters"]):
        if f["label"] in RESERVED_LABELS or f["label"].startswith("__"):
            problems.append({"field": f"condition.filters[{i}].label",
                             "problem": f"label {f['label']!r} is reserved"})
        if f["op"] in ("=~", "!~"):
            # Checked by a PromQL parser (Rust regex, close to Prometheus's RE2), not by
            # Python's re, which accepts syntax Prometheus refuses (octal escapes, lookarounds).
            try:
                promql_parser.parse(f"x{{a=~{promql_string(f['value'])}}}")
            except (ValueError, RuntimeError) as exc:
                problems.append({"field": f"condition.filters[{i}].value",
                                 "problem": f"not a valid regular expression: {exc}"})
    if "expr" in req:
        try:
            # Parsed as it will be used, so a comment or a stray parenthesis cannot
            # swallow the comparison the compiler appends.
            promql_parser.parse(f"({req['expr']}) > 0")
        except (ValueError, RuntimeError) as exc:
            problems.append({"field": "expr", "problem": f"invalid PromQL: {exc}"})
    if channels is not None:
        for i, name in enumerate(req["notificationChannels"]):
            if name not in channels:
                known = ", ".join(sorted(channels)) or "none"
                problems.append({"field": f"notificationChannels[{i}]",
                                 "problem": f"unknown channel {name!r} (configured: {known})"})
    for i, s in enumerate(req["suppressionRules"]):
        if s["type"] == "maintenance_window":
            try:
                start = datetime.fromisoformat(s["startsAt"].replace("Z", "+00:00"))
                end = datetime.fromisoformat(s["endsAt"].replace("Z", "+00:00"))
            except ValueError as exc:
                problems.append({"field": f"suppressionRules[{i}]", "problem": str(exc)})
                continue
            if start.tzinfo is None or end.tzinfo is None:
                problems.append({"field": f"suppressionRules[{i}]",
                                 "problem": "startsAt and endsAt need a time zone"})
            elif end <= start:
                problems.append({"field": f"suppressionRules[{i}].endsAt",
                                 "problem": "must be after startsAt"})
        elif s["type"] == "business_hours_only" and s["endHour"] <= s["startHour"]:
            problems.append({"field": f"suppressionRules[{i}].endHour",
                             "problem": "must be after startHour"})
    return problems


def validate_request(body: Any, channels: set[str] | None = None) -> dict:
    """The request with defaults filled in, or Invalid naming every bad field."""
    validator().check("POST", RULES_PATH, body, "the alert rule request is invalid")
    req = _apply_defaults(body)
    problems = _semantic_problems(req, channels)
    if problems:
        raise Invalid("the alert rule request is invalid", problems)
    return req


def promql_string(value: str) -> str:
    """A PromQL double-quoted string literal holding value exactly."""
    out = ['"']
    for ch in value:
        if ch == "\\":
            out.append("\\\\")
        elif ch == '"':
            out.append('\\"')
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\r":
            out.append("\\r")
        elif ch == "\t":
            out.append("\\t")
        elif ord(ch) < 0x20 or ord(ch) == 0x7f:
            out.append(f"\\x{ord(ch):02x}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def template_literal(text: str) -> str:
    """Text that Prometheus's Go templates render verbatim (no {{ action can be injected)."""
    return text.replace("{{", '{{ "{{" }}')


def _check_name(name: str, pattern: re.Pattern, what: str) -> str:
    if not pattern.match(name):
        raise ValueError(f"{what} {name!r} does not match Prometheus's grammar")
    return name


def selector(metric: str, filters: list[dict]) -> str:
    """metric{label op "value", ...} from checked names and escaped values."""
    _check_name(metric, METRIC_NAME, "metric name")
    matchers = [f"{_check_name(f['label'], LABEL_NAME, 'label name')}{f['op']}"
                f"{promql_string(f['value'])}" for f in filters]
    return f"{metric}{{{','.join(matchers)}}}"


def _by(labels: list[str], extra: tuple[str, ...] = ()) -> str:
    names = [*extra, *labels]
    for n in names:
        _check_name(n, LABEL_NAME, "label name")
    return f" by ({', '.join(names)})" if names else ""


def base_expr(req: dict) -> str:
    """The PromQL vector the thresholds compare against."""
    if "expr" in req:
        return f"({req['expr']})"
    cond = req["condition"]
    agg, window, group = cond["aggregation"], cond["window"], cond["groupBy"]
    metric, filters = req["metric"], cond["filters"]
    if agg in _QUANTILES:
        bucket = metric if metric.endswith("_bucket") else f"{metric}_bucket"
        inner = f"sum{_by(group, ('le',))} (rate({selector(bucket, filters)}[{window}]))"
        return f"histogram_quantile({_QUANTILES[agg]}, {inner})"
    sel = selector(metric, filters)
    if agg in ("rate", "increase"):
        return f"sum{_by(group)} ({agg}({sel}[{window}]))"
    if agg == "count":
        return f"count{_by(group)} (last_over_time({sel}[{window}]))"
    return f"{agg}{_by(group)} ({_OVER_TIME[agg]}({sel}[{window}]))"


def _format_value(value: float) -> str:
    if isinstance(value, bool):
        raise ValueError("a threshold is a number")
    if isinstance(value, int) and abs(value) < 2**53:
        return str(value)
    value = float(value)
    if not math.isfinite(value):
        raise ValueError("a threshold must be finite")
    return repr(float(value))


def alert_expr(req: dict, threshold: dict) -> str:
    """The full alert expression for one threshold, suppressions included."""
    expr = f"{base_expr(req)} {req['condition']['operator']} {_format_value(threshold['value'])}"
    for s in req.get("suppressionRules", []):
        if s["type"] == "while_firing":
            name = promql_string(_check_name(s["alertname"], LABEL_NAME, "alert name"))
            expr = f"({expr}) unless on() ALERTS{{alertname={name},alertstate=\"firing\"}}"
        elif s["type"] == "business_hours_only":
            start, end = int(s.get("startHour", 9)), int(s.get("endHour", 17))
            expr = (f"({expr}) and on() (hour() >= {start} < {end}) "
                    f"and on() (day_of_week() >= 1 <= 5)")
    return expr


def _locate(req: dict) -> str:
    """' Current value: ...' plus the groupBy labels that locate the problem (checked names)."""
    labels = req["condition"].get("groupBy", []) if "expr" not in req else []
    where = ", ".join(f"{_check_name(n, LABEL_NAME, 'label name')}={{{{ $labels.{n} }}}}"
                      for n in labels)
    return " Current value: {{ $value }}" + (f" ({where})." if where else ".")


def group_name(rule_id: str) -> str:
    """The rule group name of an API rule."""
    return f"pulse-api-{rule_id}"


def compile_rule(rule_id: str, req: dict, bridge_base: str = "http://127.0.0.1:8080") -> dict:
    """A validated request (see validate_request) -> one Prometheus rule group (a dict)."""
    channels = ",".join(req["notificationChannels"])
    runbook = req.get("runbookUrl") or f"{bridge_base}/api/analytics/alerts/rules/{rule_id}"
    what = f"{req['metric']}" if "metric" in req else "the expression"
    rules = []
    for t in sorted(req["thresholds"], key=lambda t: ("critical", "warning", "info")
                    .index(t["severity"])):
        rule: dict[str, Any] = {
            "alert": _check_name(req["name"], LABEL_NAME, "alert name"),
            "expr": alert_expr(req, t),
        }
        if req["condition"]["for"] != "0":
            rule["for"] = req["condition"]["for"]
        rule["labels"] = {"severity": t["severity"], "team": req["team"],
                          "rule_id": rule_id, "channels": channels}
        op, value = req["condition"]["operator"], _format_value(t["value"])
        rule["annotations"] = {
            "summary": template_literal(f"{req['name']}: {what} {op} {value} ({t['severity']})."),
            "description": template_literal(req["description"]) + _locate(req),
            "runbook_url": runbook,
            "dashboard_url": GRAFANA_BASE + req["dashboardUid"],
        }
        rules.append(rule)
    return {"name": group_name(rule_id), "rules": rules}


def render_groups(groups: list[dict]) -> str:
    """A rule file's YAML text for these groups."""
    header = "# Written by the Pulse bridge; change it through the API, not by hand.\n"
    return header + yaml.dump({"groups": groups}, Dumper=_DUMPER, sort_keys=False,
                              allow_unicode=False, width=1_000_000)


def check_group_in_process(group: Any, where: str = "group") -> list[dict]:
    """Structural and PromQL checks of one rule group (what promtool would refuse, mostly)."""
    problems: list[dict] = []
    if not isinstance(group, dict):
        return [{"field": where, "problem": "a rule group is a mapping"}]
    unknown = set(group) - {"name", "interval", "rules", "limit"}
    if unknown:
        problems.append({"field": where, "problem": f"unknown keys {sorted(unknown)}"})
    if not isinstance(group.get("name"), str) or not group.get("name"):
        problems.append({"field": f"{where}.name", "problem": "a non-empty string is required"})
    if "interval" in group and not (isinstance(group["interval"], str)
                                    and DURATION.match(group["interval"])):
        problems.append({"field": f"{where}.interval", "problem": "not a duration"})
    rules = group.get("rules")
    if not isinstance(rules, list):
        problems.append({"field": f"{where}.rules", "problem": "a list of rules is required"})
        return problems
    for i, rule in enumerate(rules):
        at = f"{where}.rules[{i}]"
        if not isinstance(rule, dict):
            problems.append({"field": at, "problem": "a rule is a mapping"})
            continue
        unknown = set(rule) - {"alert", "record", "expr", "for", "keep_firing_for", "labels",
                               "annotations"}
        if unknown:
            problems.append({"field": at, "problem": f"unknown keys {sorted(unknown)}"})
        if ("alert" in rule) == ("record" in rule):
            problems.append({"field": at, "problem": "exactly one of alert or record"})
        if "record" in rule and not (isinstance(rule["record"], str)
                                     and METRIC_NAME.match(rule["record"])):
            problems.append({"field": f"{at}.record", "problem": "not a valid metric name"})
        if "alert" in rule and not (isinstance(rule["alert"], str) and rule["alert"]):
            problems.append({"field": f"{at}.alert", "problem": "a non-empty string is required"})
        if "record" in rule and ("for" in rule or "annotations" in rule):
            problems.append({"field": at, "problem": "a recording rule has no for/annotations"})
        if "for" in rule and not (isinstance(rule["for"], str) and DURATION.match(rule["for"])):
            problems.append({"field": f"{at}.for", "problem": "not a duration"})
        expr = rule.get("expr")
        if not isinstance(expr, str) or not expr.strip():
            problems.append({"field": f"{at}.expr", "problem": "a PromQL string is required"})
        else:
            try:
                promql_parser.parse(expr)
            except (ValueError, RuntimeError) as exc:
                problems.append({"field": f"{at}.expr", "problem": f"invalid PromQL: {exc}"})
        for key in ("labels", "annotations"):
            value = rule.get(key, {})
            if not isinstance(value, dict) or not all(
                    isinstance(k, str) and LABEL_NAME.match(k) and isinstance(v, str)
                    for k, v in value.items()):
                problems.append({"field": f"{at}.{key}",
                                 "problem": "a mapping of label names to strings"})
    return problems
