"""GET /api/analytics/dashboards/{dashboardId}: a Grafana dashboard as data, with its quality.

The definitions are the generated Grafana dashboards (grafana/generated/*.json), so the
API and Grafana always show the same queries. Every widget's queries are evaluated over
the requested range through Prometheus's query_range, in parallel.
"""

from __future__ import annotations

import contextvars
import math
import re
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

from flask import Blueprint, current_app, request

from bridge.auth import ROLE_PERMISSIONS, current_principal, require
from bridge.errors import ApiError, bad_request
from bridge.services import PROMETHEUS, service
from bridge.services.promql_scope import COACH_LABEL, Enforced, coach_scope, scope
from pulse import dashboards as gq
from pulse.config import parse_duration
from pulse.dashboards import DATASOURCE_UID
from pulse.promapi import PromError, ReadRouter, source_note

bp = Blueprint("dashboards", __name__, url_prefix="/api/analytics")

AUDIENCES = {"executive", "product", "coach", "admin", "custom"}
WIDGET_TYPES = {"timeseries": "chart", "bargauge": "chart", "stat": "metric",
                "table": "table"}
MAX_POINTS = 11000  # Prometheus refuses more points per series
TARGET_POINTS = 240
VALUE = re.compile(r"^[A-Za-z0-9_.:/{}@ -]{1,128}$")
WORKERS = 8


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def find(dashboard_id: str, docs: dict[str, dict]) -> tuple[str, dict]:
    """The (name, document) of a dashboard by uid (pulse-executive) or name (executive)."""
    for name, doc in docs.items():
        if dashboard_id in (name, doc.get("uid")):
            return name, doc
    raise ApiError(404, "not_found", f"no dashboard {dashboard_id!r}",
                   [{"field": "dashboardId",
                     "problem": f"known: {', '.join(d['uid'] for d in docs.values())}"}])


def audience(doc: dict) -> str:
    """The targetAudience from the dashboard's `audience:<x>` tag."""
    for tag in doc.get("tags", []):
        if tag.startswith("audience:") and tag[9:] in AUDIENCES:
            return tag[9:]
    return "custom"


def access_control(doc: dict) -> list[dict]:
    """Who may read the dashboard through the API (from the one role table)."""
    rules = []
    for role, perms in ROLE_PERMISSIONS.items():
        if "*" not in perms and "dashboards:read" not in perms:
            continue
        if role == "coach":
            if audience(doc) == "coach":
                rules.append({"role": role, "permission": "read", "scope": "own coach_id"})
            continue
        rules.append({"role": role, "permission": "read", "scope": "all"})
    return rules


def _aggregation(expr: str) -> str:
    head = expr.lstrip("( ")
    if head.startswith("histogram_quantile") or re.search(r":p\d\d_", expr):
        return "percentile"
    for agg in ("sum", "avg", "count", "min", "max"):
        if head.startswith(agg):
            return agg
    return "avg" if "ratio" in expr else "sum"


def widget(panel: dict, variables: list[str], time_range: dict) -> dict:
    """A DashboardWidget from a Grafana panel (queries kept verbatim as PromQL)."""
    first = panel["targets"][0]["expr"]
    names = sorted(gq.metric_names(first))
    dims = re.findall(r"\bby\s*\(([^)]*)\)", first)
    legend_dims = re.findall(r"\{\{(\w+)\}\}", panel["targets"][0].get("legendFormat", ""))
    dimensions = sorted({d.strip() for group in dims for d in group.split(",") if d.strip()}
                        | set(legend_dims))
    used = [v for v in variables if any(f"${v}" in t["expr"] for t in panel["targets"])]
    defaults = panel.get("fieldConfig", {}).get("defaults", {})
    pos = panel["gridPos"]
    return {
        "id": f"panel-{panel['id']}",
        "type": WIDGET_TYPES.get(panel["type"], "chart"),
        "title": panel["title"],
        "description": panel.get("description", ""),
        "dataSource": DATASOURCE_UID,
        "query": {
            "metric": names[0] if names else "",
            "dimensions": dimensions,
            "filters": [{"field": v, "operator": "=~", "value": f"${v}"} for v in used],
            "timeRange": time_range,
            "aggregation": _aggregation(first),
            "groupBy": dimensions,
            "promql": [{"refId": t["refId"], "expr": t["expr"],
                        "legendFormat": t.get("legendFormat", "")}
                       for t in panel["targets"]],
        },
        "visualization": {"type": panel["type"], "unit": defaults.get("unit", ""),
                          "thresholds": defaults.get("thresholds", {}).get("steps", [])},
        "position": {"x": pos["x"], "y": pos["y"], "width": pos["w"], "height": pos["h"]},
        "refreshInterval": 0,
        **({"alertThresholds": [
            {"value": s["value"], "color": s["color"]}
            for s in defaults["thresholds"]["steps"][1:]]}
           if panel.get("fieldConfig", {}).get("defaults", {}).get("custom", {})
           .get("thresholdsStyle", {}).get("mode") == "line" else {}),
    }


def definition(name: str, doc: dict, time_range: dict, updated: float) -> dict:
    """The AnalyticsDashboard of a generated Grafana dashboard."""
    try:
        refresh = int(parse_duration(doc.get("refresh") or "0s"))
    except ValueError:
        refresh = 0
    variables = gq.variables(doc)
    widgets = [widget(p, variables, time_range) for p in gq.panels(doc)]
    for w in widgets:
        w["refreshInterval"] = refresh
    return {
        "id": doc["uid"], "name": doc["title"], "description": doc.get("description", ""),
        "targetAudience": audience(doc), "widgets": widgets, "refreshInterval": refresh,
        "isPublic": False, "accessControl": access_control(doc),
        "lastUpdated": _iso(updated), "owner": "pulse",
        "variables": variables,
    }


def parse_grafana_time(value: str, now: float, field: str) -> float:
    """Unix seconds from `now`, `now-<duration>`, Unix seconds or an RFC 3339 time."""
    value = value.strip()
    try:
        if value == "now":
            return now
        if value.startswith("now-"):
            return now - parse_duration(value[4:])
        if re.fullmatch(r"\d+(\.\d+)?", value):
            return float(value)
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        raise bad_request(f"{field} is not a time", field,
                          "use now, now-<duration> (now-30d), Unix seconds or RFC 3339"
                          ) from None


def promql_regex(values: list[str]) -> str:
    """A PromQL regex string body matching exactly these label values."""
    return "|".join(re.escape(v).replace("\\", "\\\\") for v in values)


def quality(widget_id: str, series: list[dict], end: float, step: float, now: float,
            error: str | None = None) -> dict:
    """Did the widget get data, how old is its newest point, what share of series is current.

    Expected series are those seen anywhere in the range; a series is present when it has
    a point within two steps of the range's end, so a source that stopped reporting part
    way lowers the share instead of leaving a silently shorter line.
    """
    newest = max((float(s["values"][-1][0]) for s in series if s["values"]), default=None)
    current = sum(1 for s in series
                  if s["values"] and float(s["values"][-1][0]) >= end - 2 * step)
    expected = len(series)
    ratio = current / expected if expected else 0.0
    status = ("error" if error else "missing" if not expected
              else "ok" if current == expected else "partial")
    out = {"widgetId": widget_id, "hasData": expected > 0,
           "newestSampleAgeSeconds": None if newest is None else round(max(0.0, now - newest),
                                                                       3),
           "expectedSeries": expected, "presentSeries": current,
           "seriesPresentRatio": round(ratio, 4), "status": status}
    if error:
        out["error"] = error
    return out


def _number(value: str) -> float | None:
    v = float(value)
    return None if math.isnan(v) or math.isinf(v) else v


@bp.get("/dashboards/<dashboard_id>")
@require("dashboards:read")
def get_dashboard(dashboard_id: str):
    """DashboardDataResponse: the definition, every widget's data and the data quality."""
    principal = current_principal()
    docs = gq.load_all()
    name, doc = find(dashboard_id, docs)
    variables = gq.variables(doc)
    # The coach dashboard has no coach variable (a coach's queries are scoped by the query
    # itself); other roles may still narrow it with ?coach=a,b.
    choices = [*variables, *(["coach"] if audience(doc) == "coach"
                             and "coach" not in variables else [])]
    allowed = {"from", "to", "step", *choices}
    for key in request.args:
        if key not in allowed:
            raise bad_request(f"unknown query parameter {key!r}", key,
                              f"allowed: {', '.join(sorted(allowed))}")
    values: dict[str, str] = {}
    chosen_coaches: list[str] = []
    for var in choices:
        raw = request.args.getlist(var)
        chosen = [v for item in raw for v in item.split(",") if v]
        for v in chosen:
            if not VALUE.fullmatch(v):
                raise bad_request(f"{var} has an invalid value", var,
                                  "letters, digits and _ . : / { } @ - only, up to 128")
        if chosen and var in variables:
            values[var] = promql_regex(chosen)
        elif chosen:
            chosen_coaches = chosen
    enforced = None
    if principal.role == "coach":
        # A coach sees only the coach dashboard, every selector narrowed to their coach id.
        if audience(doc) != "coach":
            raise ApiError(403, "forbidden", "coaches may read only the coach dashboard",
                           [{"field": "dashboardId", "problem": "not a coach dashboard"}])
        enforced = coach_scope(principal)
        if any(c != principal.coach_id for c in chosen_coaches):
            raise ApiError(403, "forbidden", "a coach may only see their own clients",
                           [{"field": "coach", "problem": "not your coach id"}])
    elif chosen_coaches:
        enforced = Enforced(COACH_LABEL, "|".join(re.escape(c) for c in chosen_coaches),
                            regex=True)

    now = time.time()
    default_from = doc.get("time", {}).get("from", "now-6h")
    start = parse_grafana_time(request.args.get("from", default_from), now, "from")
    end = parse_grafana_time(request.args.get("to", "now"), now, "to")
    if end <= start:
        raise bad_request("from must be before to", "from", "must be earlier than to")
    cfg = current_app.config["PULSE"]
    scrape_s = parse_duration(cfg.prometheus.scrape_interval)
    span = end - start
    if "step" in request.args:
        try:
            step = parse_duration(request.args["step"]) if not \
                re.fullmatch(r"\d+", request.args["step"]) else float(request.args["step"])
        except ValueError:
            raise bad_request("step is not a duration", "step", "e.g. 60, 60s, 5m") from None
        if step <= 0:
            raise bad_request("step must be positive", "step", "must be > 0")
    else:
        step = max(scrape_s, math.ceil(span / TARGET_POINTS))
    if span / step > MAX_POINTS:
        raise bad_request("too many points per series", "step",
                          f"range / step must be at most {MAX_POINTS}")

    time_range = {"start": _iso(start), "end": _iso(end), "stepSeconds": step}
    path = gq.GENERATED / f"{name}.json"
    updated = Path(path).stat().st_mtime if Path(path).exists() else now
    dashboard = definition(name, doc, time_range, updated)
    prom = service(current_app, PROMETHEUS)
    jobs = [(p, t) for p in gq.panels(doc) for t in p["targets"]]

    def prepared(target) -> str:
        expr = gq.expand(target["expr"], range_s=span, step_s=step, scrape_s=scrape_s,
                         values=values)
        return expr if enforced is None else scope(expr, enforced, "coach")

    # Scoped before anything runs: a conflicting matcher refuses the whole request.
    exprs = [prepared(target) for _panel, target in jobs]

    def run(expr):
        try:
            return prom.query_range(expr, start, end, step), None
        except PromError as exc:
            if not exc.invalid:
                raise
            return [], exc.message

    with ReadRouter.recording() as seen, \
            ThreadPoolExecutor(min(WORKERS, max(1, len(jobs)))) as pool:
        # Each job runs in a copy of this context, so the sources it reads land in `seen`.
        ctx = contextvars.copy_context()
        results = list(pool.map(lambda expr: ctx.copy().run(run, expr), exprs))

    data, widgets_quality = [], []
    by_panel: dict[int, list] = {}
    for (panel, target), (result, error) in zip(jobs, results, strict=True):
        by_panel.setdefault(panel["id"], []).append((target, result, error))
    for panel in gq.panels(doc):
        wid = f"panel-{panel['id']}"
        series, all_raw, errors = [], [], []
        for target, result, error in by_panel.get(panel["id"], []):
            if error:
                errors.append(f"{target['refId']}: {error}")
            for s in result:
                all_raw.append(s)
                series.append({"refId": target["refId"], "labels": s["metric"],
                               "values": [[float(t), _number(v)] for t, v in s["values"]]})
        data.append({"widgetId": wid, "series": series})
        widgets_quality.append(quality(wid, all_raw, end, step, now,
                                       "; ".join(errors) or None))
    with_data = sum(1 for q in widgets_quality if q["hasData"])
    complete = all(q["status"] == "ok" for q in widgets_quality)
    return {
        "dashboard": dashboard,
        "data": data,
        "lastUpdated": _iso(now),
        "dataQuality": {
            "status": "complete" if complete else "partial" if with_data else "empty",
            "widgetsWithData": with_data,
            "widgetCount": len(widgets_quality),
            "timeRange": time_range,
            "widgets": widgets_quality,
        },
        "metadata": {"source": source_note(seen)},
    }
