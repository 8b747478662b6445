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
from pulse.config import parse_duration
from pulse.links import SOURCE_BRIDGE, SOURCE_GRAFANA

METRIC_NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
# Prometheus's duration grammar (prometheus/common ParseDuration): 0, or integer units in the
# fixed order y w d h m s ms, each at most once (0s, 0m, 1h30m, 2w, 1500ms; not 1.5h, 2h1d, 10).
_UNITS = ("y", "w", "d", "h", "m", "s", "ms")
DURATION = re.compile(r"^(0|" + "|".join(
    f"[0-9]+{u}" + "".join(f"([0-9]+{v})?" for v in _UNITS[i + 1:])
    for i, u in enumerate(_UNITS)) + r")$")
# What the compiler owns: a request may not filter or group on these.
RESERVED_LABELS = frozenset({"__name__", "le", "severity", "team", "rule_id", "channels"})
# Labels the bridge writes onto every rule of a ruler namespace: a group may not set them.
TENANT_LABEL = "tenant"
# Rule-group keys of newer Prometheus or of Mimir that Prometheus 2.42 refuses to load.
UNSUPPORTED_GROUP_KEYS = {
    "query_offset": "needs Prometheus 2.53 or later",
    "evaluation_delay": "a Mimir extension that Prometheus does not load",
    "remote_write": "a Mimir extension (ruler remote write) that Prometheus does not load",
    "source_tenants": "federated rule groups are a Mimir extension Pulse does not run",
    "align_evaluation_time_on_interval": "a Mimir extension Prometheus does not load",
}

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


def duration_seconds(text: str) -> float:
    """Seconds in a Prometheus duration (DURATION grammar; '0' is zero)."""
    if not isinstance(text, str) or not DURATION.match(text):
        raise ValueError(f"not a valid duration string: {text!r}")
    return 0.0 if text == "0" else parse_duration(text)


def _semantic_problems(req: dict, channels: set[str] | None) -> list[dict]:
    problems = []
    cond = req["condition"]
    if duration_seconds(cond["window"]) == 0:
        problems.append({"field": "condition.window", "problem": "a range must not be zero"})
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


def compile_rule(rule_id: str, req: dict, bridge_base: str = SOURCE_BRIDGE,
                 grafana_base: str | None = SOURCE_GRAFANA) -> dict:
    """A validated request (see validate_request) -> one Prometheus rule group (a dict).

    The links are built on the stack's external bases (pulse.links); with no Grafana
    (grafana_base None) the rule carries no dashboard link.
    """
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
        if duration_seconds(req["condition"]["for"]) > 0:
            rule["for"] = req["condition"]["for"]
        rule["labels"] = {"severity": t["severity"], "team": req["team"], "rule_id": rule_id}
        if channels:
            # No channels: Alertmanager routes the alert by its team label alone.
            rule["labels"]["channels"] = channels
        op, value = req["condition"]["operator"], _format_value(t["value"])
        rule["annotations"] = {
            "summary": template_literal(f"{req['name']}: {what} {op} {value} ({t['severity']})."),
            "description": template_literal(req["description"]) + _locate(req),
            "runbook_url": runbook,
        }
        if grafana_base:
            rule["annotations"]["dashboard_url"] = f"{grafana_base}/d/{req['dashboardUid']}"
        rules.append(rule)
    return {"name": group_name(rule_id), "rules": rules}


def render_groups(groups: list[dict]) -> str:
    """A rule file's YAML text for these groups."""
    header = "# Written by the Pulse bridge; change it through the API, not by hand.\n"
    return header + yaml.dump({"groups": groups}, Dumper=_DUMPER, sort_keys=False,
                              allow_unicode=False, width=1_000_000)


def _duration_problem(value: Any, field: str) -> list[dict]:
    if isinstance(value, str) and value == "":
        return [{"field": field, "problem": "empty duration string"}]
    if not (isinstance(value, str) and DURATION.match(value)):
        return [{"field": field, "problem": f"not a valid duration string: {value!r} (Prometheus "
                 "durations: 0, or integer units in the order y w d h m s ms, as 1h30m)"}]
    return []


def _label_map_problems(value: Any, field: str) -> list[dict]:
    if value is None:
        return []
    if not isinstance(value, dict):
        return [{"field": field, "problem": "a mapping of label names to strings"}]
    out = []
    for k, v in value.items():
        if not (isinstance(k, str) and LABEL_NAME.match(k)):
            out.append({"field": f"{field}.{k}", "problem": "not a valid label name"})
        elif not isinstance(v, str | int | float | bool) or v is None:
            out.append({"field": f"{field}.{k}", "problem": "the value must be a string"})
    return out


def check_group_in_process(group: Any, where: str = "group",
                           keep_firing_for: bool = True) -> list[dict]:
    """Structural and PromQL checks of one rule group (what Prometheus 2.42 would refuse,
    templates aside: promtool checks those); keep_firing_for: the running Prometheus has it."""
    problems: list[dict] = []
    if not isinstance(group, dict):
        return [{"field": where, "problem": "a rule group is a mapping"}]
    for key in sorted(set(group) & set(UNSUPPORTED_GROUP_KEYS)):
        problems.append({"field": f"{where}.{key}", "problem": UNSUPPORTED_GROUP_KEYS[key]})
    unknown = set(group) - {"name", "interval", "rules", "limit"} - set(UNSUPPORTED_GROUP_KEYS)
    if unknown:
        problems.append({"field": where, "problem": f"unknown keys {sorted(unknown)}"})
    if not isinstance(group.get("name"), str) or not group.get("name"):
        problems.append({"field": f"{where}.name", "problem": "a non-empty string is required"})
    if "interval" in group:
        problems += _duration_problem(group["interval"], f"{where}.interval")
    if "limit" in group and not (isinstance(group["limit"], int)
                                 and not isinstance(group["limit"], bool)
                                 and 0 <= group["limit"] < 2**31):
        problems.append({"field": f"{where}.limit", "problem": "a whole number >= 0"})
    rules = group.get("rules")
    if rules is None:
        return problems  # rules: null (or absent) loads as a group with no rules
    if not isinstance(rules, list):
        problems.append({"field": f"{where}.rules", "problem": "a list of rules is required"})
        return problems
    for i, rule in enumerate(rules):
        problems += _rule_problems(rule, f"{where}.rules[{i}]", keep_firing_for)
    return problems


def _rule_problems(rule: Any, at: str, keep_firing_for: bool) -> list[dict]:
    if not isinstance(rule, dict):
        return [{"field": at, "problem": "a rule is a mapping"}]
    problems: list[dict] = []
    unknown = set(rule) - {"alert", "record", "expr", "for", "keep_firing_for", "labels",
                           "annotations"}
    if unknown:
        problems.append({"field": at, "problem": f"unknown keys {sorted(unknown)}"})
    if ("alert" in rule) == ("record" in rule):
        problems.append({"field": at, "problem": "exactly one of alert or record"})
    if "record" in rule:
        if not (isinstance(rule["record"], str) and METRIC_NAME.match(rule["record"])):
            problems.append({"field": f"{at}.record", "problem": "not a valid metric name"})
        for key in ("for", "keep_firing_for", "annotations"):
            if key in rule:
                problems.append({"field": f"{at}.{key}",
                                 "problem": f"invalid field {key!r} in recording rule"})
    if "alert" in rule and not (isinstance(rule["alert"], str) and rule["alert"]):
        problems.append({"field": f"{at}.alert", "problem": "a non-empty string is required"})
    if "alert" in rule:
        if "for" in rule:
            problems += _duration_problem(rule["for"], f"{at}.for")
        if "keep_firing_for" in rule:
            if not keep_firing_for:
                problems.append({"field": f"{at}.keep_firing_for", "problem": "the running "
                                 "Prometheus does not support keep_firing_for (2.42 or later)"})
            else:
                problems += _duration_problem(rule["keep_firing_for"], f"{at}.keep_firing_for")
    expr = rule.get("expr")
    if not isinstance(expr, str) or not expr.strip():
        problems.append({"field": f"{at}.expr", "problem": "a PromQL string is required"})
    else:
        try:
            promql_parser.parse(expr)
        except (ValueError, RuntimeError) as exc:
            problems.append({"field": f"{at}.expr", "problem": f"invalid PromQL: {exc}"})
    for key in ("labels", "annotations"):
        problems += _label_map_problems(rule.get(key), f"{at}.{key}")
    if isinstance(rule.get("labels"), dict) and TENANT_LABEL in rule["labels"]:
        problems.append({"field": f"{at}.labels.{TENANT_LABEL}", "problem": "reserved: the "
                         "bridge sets it to the tenant that owns the rule"})
    return problems
