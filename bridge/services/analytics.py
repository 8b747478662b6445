"""The analytics engine: catalogue metrics over recording rules, by dimension.

Used by the metrics API (bridge/api/metrics.py) and the reports (bridge/services/reports).
The catalogue (bridge/services/analytics-catalogue.yaml) defines each metric once as PromQL;
`parse_query` validates a MetricsQueryRequest (every problem an Invalid naming the
field), `compile_promql` fills in dimensions and matchers, `evaluate` runs one
range query and `build_response` assembles the MetricsQueryResponse.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache
from pathlib import Path

import yaml

from bridge.services.errors import Forbidden, invalid
from bridge.services.promql_scope import Enforced, coach_scope, scope
from bridge.services.times import parse_time
from pulse.config import parse_duration
from pulse.promapi import ReadRouter, source_note

CATALOGUE_PATH = Path(__file__).resolve().parent / "analytics-catalogue.yaml"
GRANULARITIES = {"minute": 60, "hour": 3600, "day": 86400, "week": 7 * 86400,
                 "month": 30 * 86400}
MAX_POINTS = 11_000  # Prometheus refuses range queries of more than 11 000 points per series
MAX_RANGE = 400 * 86400
MAX_LIMIT = 10_000
DEFAULT_LIMIT = 100
OPERATORS = ("eq", "neq", "in", "not_in")
LABEL_VALUE = re.compile(r"^[A-Za-z0-9_.:/+ -]{1,128}$")
NAME = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
# Series names a PromQL expression reads: recording rules (a:b:c) and raw metric names.
SERIES_NAME = re.compile(r"\b([a-zA-Z_][a-zA-Z0-9_]*(?::[a-zA-Z0-9_]+)*)\s*\{")
QUERY_KEYS = ("metrics", "dimensions", "filters", "timeRange", "start", "end", "granularity",
              "limit", "offset", "orderBy")


# -- the catalogue --------------------------------------------------------------
@dataclass(frozen=True)
class MetricDef:
    """One catalogue metric: its PromQL template and what may be asked of it."""

    name: str
    description: str
    unit: str
    window: int
    kind: str
    dimensions: tuple[str, ...]
    promql: str
    user_count: bool = False
    coach: bool = False
    # label -> the value of that label holding the distinct total (fitness_active_users'
    # platform="all": a user on two platforms is once in "all", once in each platform).
    distinct_total: tuple[tuple[str, str], ...] = ()

    def series_names(self) -> list[str]:
        """The recording rules and raw series the definition reads."""
        return sorted(set(SERIES_NAME.findall(self.promql.replace("$filters", ""))))


def load_catalogue(path: Path = CATALOGUE_PATH) -> dict[str, MetricDef]:
    """Read and check the catalogue file (a broken catalogue is a bug: raise ValueError)."""
    raw = yaml.safe_load(Path(path).read_text())["metrics"]
    out = {}
    for name, spec in raw.items():
        if not NAME.match(name):
            raise ValueError(f"catalogue: bad metric name {name!r}")
        missing = {"description", "unit", "window", "kind", "dimensions", "promql"} - set(spec)
        if missing:
            raise ValueError(f"catalogue: {name} lacks {sorted(missing)}")
        if spec["kind"] not in ("total", "level"):
            raise ValueError(f"catalogue: {name}: kind must be total or level")
        if "$by" not in spec["promql"] or "$filters" not in spec["promql"]:
            raise ValueError(f"catalogue: {name}: promql needs $by and $filters")
        totals = spec.get("distinct_total") or {}
        if not set(totals) <= set(spec["dimensions"]):
            raise ValueError(f"catalogue: {name}: distinct_total labels must be dimensions")
        out[name] = MetricDef(name, " ".join(spec["description"].split()), spec["unit"],
                              int(parse_duration(str(spec["window"]))), spec["kind"],
                              tuple(spec["dimensions"]), " ".join(spec["promql"].split()),
                              bool(spec.get("user_count")), bool(spec.get("coach")),
                              tuple((str(k), str(v)) for k, v in totals.items()))
    return out


@cache
def catalogue() -> dict[str, MetricDef]:
    """The published catalogue (read once)."""
    return load_catalogue()


# -- the request ------------------------------------------------------------------
@dataclass(frozen=True)
class Matcher:
    """A validated filter: label, operator (eq, neq, in, not_in) and values."""

    label: str
    operator: str
    values: tuple[str, ...]

    def promql(self) -> str:
        """The PromQL label matcher."""
        if self.operator in ("eq", "neq"):
            return f'{self.label}{"=" if self.operator == "eq" else "!="}"{self.values[0]}"'
        alternatives = "|".join(re.escape(v).replace("\\", "\\\\") for v in self.values)
        return f'{self.label}{"=~" if self.operator == "in" else "!~"}"{alternatives}"'


@dataclass
class Query:
    """A validated MetricsQueryRequest."""

    metrics: list[str]
    dimensions: list[str]
    filters: list[Matcher]
    start: float
    end: float
    granularity: str
    step: int
    limit: int = DEFAULT_LIMIT
    offset: int = 0
    order_by: list[tuple[str, str]] = field(default_factory=list)

    @property
    def points(self) -> int:
        """How many points each series has: one per step ending at `end`."""
        return max(int((self.end - self.start) // self.step), 1)


def parse_range(time_range, start, end, now: float, default: str = "24h") -> tuple[float, float]:
    """(start, end) from a duration ending now, or explicit start/end; Invalid names the field."""
    if isinstance(time_range, Mapping):
        unknown = set(time_range) - {"start", "end"}
        if unknown:
            raise invalid("timeRange is invalid", "timeRange",
                              f"unknown key {sorted(unknown)[0]!r} (allowed: start, end)")
        start, end, time_range = time_range.get("start"), time_range.get("end"), None
        if start is None:
            raise invalid("timeRange.start is required", "timeRange.start", "required")
    if start is not None or end is not None:
        if time_range is not None:
            raise invalid("timeRange conflicts with start/end", "timeRange",
                              "give either timeRange (a duration) or start and end")
        if start is None:
            raise invalid("start is required with end", "start", "required with end")
        s = parse_time(start, "start")
        e = parse_time(end, "end") if end is not None else now
    else:
        raw = default if time_range is None else time_range
        if not isinstance(raw, str):
            raise invalid("timeRange is invalid", "timeRange",
                              "must be a duration like 7d, or {start, end}")
        try:
            seconds = parse_duration(raw)
        except (ValueError, TypeError):
            raise invalid("timeRange is invalid", "timeRange",
                              "must be a duration like 1h, 7d or 30d") from None
        e, s = now, now - seconds
    if e <= s:
        raise invalid("end must be after start", "timeRange", "end must be after start")
    if e - s > MAX_RANGE:
        raise invalid("the time range is too long", "timeRange", "must span at most 400d")
    if e > now + 60:
        raise invalid("end is in the future", "timeRange", "end must not be in the future")
    return s, e


def _names(raw, field_name: str) -> list[str]:
    """A list of names from a list, or comma-separated strings (GET)."""
    if raw is None:
        return []
    items = raw if isinstance(raw, list | tuple) else [raw]
    out = []
    for item in items:
        if not isinstance(item, str):
            raise invalid(f"{field_name} is invalid", field_name, "must be names (strings)")
        out += [p.strip() for p in item.split(",") if p.strip()]
    return out


def _int(raw, field_name: str, default: int, low: int, high: int) -> int:
    if raw is None:
        return default
    if isinstance(raw, bool) or not (isinstance(raw, int) or (isinstance(raw, str)
                                                                and raw.isdigit())):
        raise invalid(f"{field_name} is invalid", field_name, "must be an integer")
    value = int(raw)
    if not low <= value <= high:
        raise invalid(f"{field_name} is out of range", field_name,
                          f"must be between {low} and {high}")
    return value


def parse_filter(raw, allowed: set[str]) -> Matcher:
    """A filter from `label:operator:value[|value...]` (GET) or {field, operator, value(s)}."""
    if isinstance(raw, str):
        parts = raw.split(":", 2)
        if len(parts) != 3:
            raise invalid("filters is invalid", "filters",
                              f"{raw[:80]!r}: expected <dimension>:<operator>:<value>")
        label, op, value = parts
        values = value.split("|") if op in ("in", "not_in") else [value]
    elif isinstance(raw, Mapping):
        unknown = set(raw) - {"field", "operator", "value", "values"}
        if unknown:
            raise invalid("filters is invalid", "filters",
                              f"unknown key {sorted(unknown)[0]!r}")
        label, op = raw.get("field"), raw.get("operator", "eq")
        value = raw.get("values", raw.get("value"))
        values = value if isinstance(value, list) else [value]
    else:
        raise invalid("filters is invalid", "filters", "each filter is a string or object")
    if not isinstance(label, str) or label not in allowed:
        raise invalid(f"unknown filter dimension {str(label)[:64]!r}", "filters",
                          f"{str(label)[:64]!r} is not a dimension of the requested metrics "
                          f"(allowed: {', '.join(sorted(allowed)) or 'none'})")
    if op not in OPERATORS:
        raise invalid("filters is invalid", "filters",
                          f"unknown operator {str(op)[:32]!r} (known: {', '.join(OPERATORS)})")
    if not values or len(values) > 50 or not all(
            isinstance(v, str) and LABEL_VALUE.match(v) for v in values):
        raise invalid("filters is invalid", "filters",
                          f"{label}: values must be 1-50 strings matching {LABEL_VALUE.pattern}")
    if op in ("eq", "neq") and len(values) != 1:
        raise invalid("filters is invalid", "filters", f"{label}: {op} takes one value")
    return Matcher(label, op, tuple(values))


def parse_query(source: Mapping, now: float, defs: Mapping[str, MetricDef] | None = None) -> Query:
    """A Query from GET parameters (lists of strings) or a JSON body; Invalid names the field."""
    defs = defs if defs is not None else catalogue()
    for key in source:
        if key not in QUERY_KEYS:
            raise invalid(f"{str(key)[:64]}: unknown parameter", str(key)[:64],
                              f"unknown parameter (allowed: {', '.join(QUERY_KEYS)})")
    metrics = _names(source.get("metrics"), "metrics")
    if not metrics:
        raise invalid("metrics is required", "metrics",
                          "name at least one metric of the catalogue")
    if len(metrics) > 20:
        raise invalid("too many metrics", "metrics", "at most 20 metrics per query")
    for m in metrics:
        if m not in defs:
            raise invalid(f"unknown metric {m[:64]!r}", "metrics",
                              f"{m[:64]!r} is not in the catalogue (GET /api/analytics/metrics/"
                              "catalogue lists them)")
    allowed = set.intersection(*(set(defs[m].dimensions) for m in metrics))
    dimensions = _names(source.get("dimensions"), "dimensions")
    for d in dimensions:
        if d not in allowed:
            raise invalid(f"unknown dimension {d[:64]!r}", "dimensions",
                              f"{d[:64]!r} is not a dimension of every requested metric "
                              f"(allowed: {', '.join(sorted(allowed)) or 'none'})")
    if len(set(dimensions)) != len(dimensions):
        raise invalid("dimensions is invalid", "dimensions", "a dimension is repeated")
    raw_filters = source.get("filters") or []
    if not isinstance(raw_filters, list):
        raw_filters = [raw_filters]
    filters = [parse_filter(f, allowed) for f in raw_filters]
    for m in metrics:
        errors, _ = distinct_problems(defs[m], dimensions, filters)
        if errors:
            raise invalid(f"filters is invalid for {m}", "filters", errors[0])
    start, end = parse_range(source.get("timeRange"), source.get("start"), source.get("end"),
                             now)
    granularity = source.get("granularity", "hour")
    if not isinstance(granularity, str) or granularity not in GRANULARITIES:
        raise invalid("granularity is invalid", "granularity",
                          f"must be one of {', '.join(GRANULARITIES)}")
    step = GRANULARITIES[granularity]
    if (end - start) / step > MAX_POINTS:
        raise invalid("the range is too large for the granularity", "granularity",
                          f"{int((end - start) // step)} points per series; at most {MAX_POINTS}"
                          ": choose a coarser granularity or a shorter timeRange")
    order_by = []
    raw_order = source.get("orderBy") or []
    for item in raw_order if isinstance(raw_order, list) else [raw_order]:
        if isinstance(item, Mapping):
            fld, direction = item.get("field"), item.get("direction", "desc")
        elif isinstance(item, str):
            fld, _, direction = item.partition(":")
            direction = direction or "desc"
        else:
            raise invalid("orderBy is invalid", "orderBy", "each entry is field[:asc|desc]")
        if not isinstance(fld, str) or fld not in {"value", "metric", *dimensions}:
            raise invalid("orderBy is invalid", "orderBy",
                              f"{str(fld)[:64]!r}: order by value, metric or a requested "
                              "dimension")
        if direction not in ("asc", "desc"):
            raise invalid("orderBy is invalid", "orderBy", "direction must be asc or desc")
        order_by.append((fld, direction))
    return Query(metrics, dimensions, filters, start, end, granularity, step,
                 _int(source.get("limit"), "limit", DEFAULT_LIMIT, 1, MAX_LIMIT),
                 _int(source.get("offset"), "offset", 0, 0, 10_000_000), order_by)


# -- PromQL ---------------------------------------------------------------------
def compile_promql(metric: MetricDef, dimensions: list[str], matchers: list[Matcher],
                   step: int | None = None) -> str:
    """The PromQL for a metric grouped by dimensions with the matchers applied.

    A `total` metric asked at a step that is a multiple of its window is summed over
    each step (a subquery at the window's resolution), so each point is that bucket's total.
    A `distinct_total` label reads its total value (platform="all") unless it is grouped by
    or filtered on; then that value is excluded, so no user is counted in both.
    """
    matchers = [*distinct_matchers(metric, dimensions, matchers), *matchers]
    expr = metric.promql.replace("$by", ", ".join(dimensions))
    expr = expr.replace("$filters", ", ".join(m.promql() for m in matchers))
    expr = re.sub(r",\s*([})])", r"\1", expr)
    expr = re.sub(r"([({])\s*,\s*", r"\1", expr)
    expr = re.sub(r"\{\s*\}", "", expr)
    expr = re.sub(r"\b(sum|avg|min|max) by \(\)\s*", r"\1", expr)
    if (step and metric.kind == "total" and metric.window and step > metric.window
            and step % metric.window == 0):
        expr = f"sum_over_time(({expr})[{step}s:{metric.window}s])"
    return expr


def distinct_matchers(metric: MetricDef, dimensions: list[str],
                      matchers: list[Matcher]) -> list[Matcher]:
    """The matchers choosing a metric's distinct total or, when broken down, its parts."""
    out = []
    for label, total in metric.distinct_total:
        split = label in dimensions or any(m.label == label for m in matchers)
        out.append(Matcher(label, "neq" if split else "eq", (total,)))
    return out


def distinct_problems(metric: MetricDef, dimensions: list[str],
                      matchers: list[Matcher]) -> tuple[list[str], list[str]]:
    """(errors, warnings) of filters on a metric's distinct-total labels.

    Naming the total value (platform=all) is an error: leaving the filter out gives it.
    Summing several parts (platform in ios|web, not grouped) counts a user on more than one
    of them once per part: a warning says so.
    """
    errors, warnings = [], []
    for label, total in metric.distinct_total:
        for m in matchers:
            if m.label != label:
                continue
            if total in m.values:
                errors.append(f"{label}={total} is the distinct total of {metric.name}: "
                              f"leave the {label} filter out to get it")
            elif label not in dimensions and (m.operator in ("neq", "not_in")
                                              or len(m.values) > 1):
                warnings.append(f"{metric.name}: summed over several {label} values, a user "
                                f"active on more than one counts once per {label} (the "
                                f"distinct total is the value without a {label} filter)")
    return errors, warnings


def iso(ts: float) -> str:
    """Unix seconds -> RFC 3339 UTC."""
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


@dataclass
class MetricResult:
    """One metric's evaluated series: [(labels, [value or None per timestamp])]."""

    metric: MetricDef
    promql: str
    timestamps: list[float]
    series: list[tuple[dict, list[float | None]]]
    suppressed: int = 0
    warnings: list[str] = field(default_factory=list)

    def aggregation(self, step: int) -> str:
        """How a series' points combine into one figure: sum, mean or last."""
        if self.metric.kind == "level":
            return "mean"
        return "sum" if step >= self.metric.window else "last"

    def summary(self, values: list[float | None], step: int) -> float | None:
        """One figure for a series over the range (see aggregation)."""
        known = [v for v in values if v is not None]
        if not known:
            return None
        how = self.aggregation(step)
        if how == "sum":
            return sum(known)
        if how == "mean":
            return sum(known) / len(known)
        return values[-1]


def timestamps(start: float, end: float, step: int) -> list[float]:
    """The evaluation times: one per step ending at end (each covers the step before it)."""
    n = max(int((end - start) // step), 1)
    return [end - (n - 1 - i) * step for i in range(n)]


def _label_text(labels: dict) -> str:
    inner = ",".join(f"{k}={v}" for k, v in sorted(labels.items()))
    return "{" + inner + "}" if inner else ""


def evaluate(prom, metric: MetricDef, dimensions: list[str], matchers: list[Matcher],
             start: float, end: float, step: int, k_anonymity: int,
             enforced: Enforced | None = None) -> MetricResult:
    """Run one catalogue metric over the range; gaps, absence and small groups are reported.

    enforced (a coach's coach="<id>") is put on every selector of the compiled PromQL; a
    filter conflicting with it is a Forbidden naming `filters`.
    """
    ts = timestamps(start, end, step)
    promql = compile_promql(metric, dimensions, matchers, step)
    if enforced is not None:
        promql = scope(promql, enforced, "filters")
    rows = prom.query_range(promql, ts[0], ts[-1], step)
    index = {round(t, 3): i for i, t in enumerate(ts)}
    result = MetricResult(metric, promql, ts, [],
                          warnings=distinct_problems(metric, dimensions, matchers)[1])
    for row in rows:
        values: list[float | None] = [None] * len(ts)
        for t, v in row.get("values", []):
            i = index.get(round(float(t), 3))
            value = float(v)
            if i is not None and math.isfinite(value):
                values[i] = value
        labels = {d: row["metric"].get(d, "") for d in dimensions}
        if metric.user_count:
            for i, v in enumerate(values):
                if v is not None and v < k_anonymity:
                    values[i] = None
                    result.suppressed += 1
        result.series.append((labels, values))
    name = metric.name
    if not result.series:
        result.warnings.append(f"{name}: no data in the range (absent series: "
                               f"{', '.join(metric.series_names())})")
    for labels, values in result.series:
        missing = sum(v is None for v in values)
        if missing and missing < len(values):
            result.warnings.append(f"{name}{_label_text(labels)}: {missing} of {len(values)} "
                                   "points missing (gaps)")
    if result.suppressed:
        result.warnings.append(f"{name}: {result.suppressed} points of groups with fewer than "
                               f"{k_anonymity} users suppressed (k-anonymity)")
    return result


def stale_sources(prom, at: float) -> list[dict]:
    """Scrape targets that are down at `at` (Prometheus `up == 0`)."""
    with ReadRouter.recording():
        # A check of the sources, not a number of the answer: kept out of its `source`.
        rows = prom.query("up == 0", time=at)
    return sorted(({"job": r["metric"].get("job", ""), "instance": r["metric"].get("instance", "")}
                   for r in rows), key=lambda s: (s["job"], s["instance"]))


def coach_enforced(principal, metrics: list[str],
                   defs: Mapping[str, MetricDef]) -> Enforced | None:
    """For a coach (principal: .role, .coach_id): the matcher every selector gets (Forbidden
    for a metric coaches may not see); None for every other role."""
    enforced = coach_scope(principal)
    if enforced is None:
        return None
    for m in metrics:
        if not defs[m].coach:
            raise Forbidden(f"coaches may not query {m!r}",
                            [{"field": "metrics",
                              "problem": f"{m!r} is not a coach metric (coach metrics: "
                                         f"{', '.join(n for n, d in defs.items() if d.coach)})"}])
    return enforced


def _order_key(field_name: str, entry: dict):
    if field_name == "value":
        v = entry["summary"]["value"]
        return (v is None, v if v is not None else 0.0)
    if field_name == "metric":
        return (False, entry["metric"])
    return (False, entry["labels"].get(field_name, ""))


def build_response(prom, q: Query, principal, k_anonymity: int,
                   defs: Mapping[str, MetricDef] | None = None) -> dict:
    """Evaluate every requested metric and assemble the MetricsQueryResponse."""
    defs = defs if defs is not None else catalogue()
    with ReadRouter.recording() as seen:
        out = _build_response(prom, q, principal, k_anonymity, defs)
    out["metadata"]["source"] = source_note(seen)
    return out


def _build_response(prom, q: Query, principal, k_anonymity: int,
                    defs: Mapping[str, MetricDef]) -> dict:
    began = time.perf_counter()
    enforced = coach_enforced(principal, q.metrics, defs)
    data, queries, warnings = [], [], []
    suppressed = 0
    for name in q.metrics:
        metric = defs[name]
        res = evaluate(prom, metric, q.dimensions, q.filters, q.start, q.end, q.step,
                       k_anonymity, enforced)
        suppressed += res.suppressed
        warnings += res.warnings
        how = res.aggregation(q.step)
        queries.append({"metric": name, "promql": res.promql, "unit": metric.unit,
                        "windowSeconds": metric.window, "kind": metric.kind,
                        "aggregation": how})
        if metric.kind == "total" and q.step < metric.window:
            warnings.append(f"{name}: each point is the total over the trailing "
                            f"{metric.window}s window (longer than the {q.granularity} step)")
        for labels, values in res.series:
            data.append({
                "metric": name, "labels": labels, "unit": metric.unit,
                "points": [{"timestamp": iso(t), "value": v}
                           for t, v in zip(res.timestamps, values, strict=True)],
                "summary": {"aggregation": how, "value": res.summary(values, q.step)},
            })
    # `up` carries no coach label, so a coach sees no scrape targets either.
    stale = stale_sources(prom, q.end) if enforced is None else []
    warnings += [f"scrape target {s['job']}/{s['instance']} is down (stale source)"
                 for s in stale]
    for fld, direction in reversed(q.order_by):
        data.sort(key=lambda e, f=fld: _order_key(f, e), reverse=direction == "desc")
    total = len(data)
    page = data[q.offset:q.offset + q.limit]
    has_more = q.offset + q.limit < total
    return {
        "data": page,
        "metadata": {
            "queries": queries,
            "timeRange": {"start": iso(q.start), "end": iso(q.end)},
            "granularity": q.granularity, "stepSeconds": q.step,
            "pointsPerSeries": q.points, "seriesTotal": total,
            "suppressedPoints": suppressed, "staleSources": stale,
            "tookMs": round((time.perf_counter() - began) * 1000, 1),
        },
        "pagination": {"total": total, "limit": q.limit, "offset": q.offset,
                       "hasMore": has_more,
                       "nextOffset": q.offset + q.limit if has_more else None},
        "warnings": warnings,
    }


def k_anonymity(cfg) -> int:
    """The smallest group of users a figure may describe (privacy.k_anonymity, default 5)."""
    privacy = cfg.get("privacy") or {}
    return int(privacy.get("k_anonymity", 5))
