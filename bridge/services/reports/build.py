"""The report as data: sections of catalogue metrics, comparisons, forecasts, data quality.

`build_report` queries Prometheus through the metrics catalogue (bridge/services/analytics.py)
and returns the JSON document every format renders; nothing else computes a number.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

from bridge.services.analytics import (
    GRANULARITIES,
    MAX_POINTS,
    Matcher,
    MetricResult,
    catalogue,
    evaluate,
    iso,
    stale_sources,
)
from pulse.promapi import ReadRouter, source_note

# (section id, title, [(metric, dimensions)]) per report type: what each audience reads.
SECTIONS: dict[str, list[tuple[str, str, list[tuple[str, tuple[str, ...]]]]]] = {
    "executive": [
        ("acquisition", "Acquisition",
         [("signups", ()), ("sessions", ()), ("active_users", ()),
          ("monthly_active_users", ())]),
        ("retention", "Retention",
         [("stickiness", ()), ("churn_rate", ()), ("active_subscriptions", ()),
          ("subscriptions_canceled", ()), ("churn_risk_users", ()),
          ("workout_completion_rate", ())]),
        ("revenue", "Revenue", [("revenue", ("currency",)), ("arpu", ("currency",))]),
        ("feature_usage", "Feature usage", [("feature_usage", ("feature",))]),
        ("ai_effectiveness", "AI effectiveness",
         [("ai_accuracy", ()), ("ai_acceptance_rate", ()), ("ai_safety_events", ())]),
    ],
    "business": [
        ("revenue", "Revenue", [("revenue", ("stream", "currency"))]),
        ("subscriptions", "Subscriptions and churn",
         [("subscriptions_started", ()), ("subscriptions_canceled", ()),
          ("active_subscriptions", ()), ("churn_rate", ()), ("subscription_conversion", ())]),
        ("unit_economics", "ARPU and lifetime value",
         [("arpu", ("currency",)), ("monthly_active_users", ())]),
        ("marketplace", "Marketplace",
         [("programs_sold", ("category",)), ("trainer_commission", ("currency",))]),
        ("costs", "Costs per user",
         [("sessions", ()), ("monthly_active_users", ()), ("ai_recommendations", ())]),
    ],
    "technical": [
        ("latency", "Latency", [("api_p95_latency", ()), ("api_requests", ())]),
        ("errors", "Errors", [("api_error_ratio", ()), ("crash_rate", ())]),
        ("availability", "Availability against the SLO",
         [("availability", ()), ("availability_objective", ())]),
        ("incidents", "Incidents", []),
        ("integrations", "Integrations", [("integration_availability", ("integration",))]),
        ("capacity", "Capacity and scaling",
         [("cpu_utilisation", ("instance",)), ("memory_utilisation", ("instance",)),
          ("capacity_headroom_7d", ("instance", "resource")), ("api_requests_forecast_7d", ())]),
    ],
}
HEADLINES = {
    "executive": ["signups", "sessions", "active_users", "monthly_active_users", "revenue",
                  "active_subscriptions", "churn_rate", "workout_completion_rate",
                  "ai_accuracy"],
    "business": ["revenue", "subscriptions_started", "subscriptions_canceled",
                 "active_subscriptions", "churn_rate", "arpu", "programs_sold",
                 "trainer_commission"],
    "technical": ["api_p95_latency", "api_error_ratio", "availability", "crash_rate",
                  "integration_availability"],
    "custom": [],
}
# Growth projections: fitted on the report's own points (see forecast()).
FORECASTS = {
    "executive": ["signups", "sessions", "revenue", "churn_rate"],
    "business": ["revenue", "subscriptions_started", "churn_rate"],
    "technical": ["api_requests", "cpu_utilisation"],
    "custom": [],
}
TITLES = {"executive": "Executive report", "business": "Business report",
          "technical": "Technical report", "custom": "Custom report"}
FORECAST_METHOD = ("least-squares linear regression over the report range's points "
                   "(one per granularity step), extrapolated to the horizon")
HEADROOM_LOW = 0.2


@dataclass
class ReportRequest:
    """A validated ReportGenerationRequest (see bridge/reports/__init__.py)."""

    report_type: str
    start: float
    end: float
    granularity: str
    include_comparisons: bool = True
    format: str = "json"
    delivery: str = "download"
    channel: str | None = None
    custom: list[dict] = field(default_factory=list)

    @property
    def step(self) -> int:
        """Seconds per point."""
        return GRANULARITIES[self.granularity]


def default_granularity(seconds: float) -> str:
    """hour up to 2 days, day up to 120 days, else week."""
    if seconds <= 2 * 86400:
        return "hour"
    if seconds <= 120 * 86400:
        return "day"
    return "week"


def label_name(labels: Mapping[str, str]) -> str:
    """A series' display name: `currency=EUR, stream=x`, or `total`."""
    return ", ".join(f"{k}={v}" for k, v in sorted(labels.items())) or "total"


def change(current: float | None, previous: float | None) -> tuple[float | None, float | None]:
    """(absolute change, relative change) between two figures."""
    if current is None or previous is None:
        return None, None
    return current - previous, ((current - previous) / abs(previous) if previous else None)


def linear_fit(points: list[tuple[float, float]]) -> tuple[float, float] | None:
    """(slope per second, intercept) of the least-squares line, or None below 3 points."""
    if len(points) < 3:
        return None
    n = len(points)
    mx = sum(t for t, _ in points) / n
    my = sum(v for _, v in points) / n
    sxx = sum((t - mx) ** 2 for t, _ in points)
    if sxx == 0:
        return None
    slope = sum((t - mx) * (v - my) for t, v in points) / sxx
    return slope, my - slope * mx


def forecast(item: dict, end: float, step: int) -> dict | None:
    """Projection of a metric's first series 7 and 30 days past the end (method named)."""
    if not item["series"]:
        return None
    s = item["series"][0]
    pts = [(t, v) for t, v in zip(item["timestamps"], s["values"], strict=True) if v is not None]
    fit = linear_fit(pts)
    out = {"metric": item["metric"], "series": s["name"], "unit": item["unit"],
           "method": FORECAST_METHOD, "points": len(pts), "stepSeconds": step}
    if fit is None:
        return {**out, "slopePerDay": None, "projections": [],
                "note": "fewer than 3 points: no projection"}
    slope, intercept = fit
    horizons = [("7d", 7 * 86400), ("30d", 30 * 86400)]
    out["slopePerDay"] = slope * 86400
    out["projections"] = [{"horizon": name, "time": iso(end + h),
                           "value": slope * (end + h) + intercept} for name, h in horizons]
    trend = "rising" if slope > 0 else "falling" if slope < 0 else "flat"
    out["trend"] = trend
    return out


def _item(res: MetricResult, step: int, prev: MetricResult | None) -> dict:
    metric = res.metric
    prev_by = {}
    if prev is not None:
        prev_by = {label_name(lbl): prev.summary(vals, step) for lbl, vals in prev.series}
    series = []
    for labels, values in res.series:
        name = label_name(labels)
        value = res.summary(values, step)
        entry = {"name": name, "labels": labels, "values": values, "value": value}
        if prev is not None:
            previous = prev_by.get(name)
            entry["previous"] = previous
            entry["change"], entry["changeRatio"] = change(value, previous)
        series.append(entry)
    series.sort(key=lambda s: (-(s["value"] or 0.0), s["name"]))
    return {"metric": metric.name, "title": metric.description, "unit": metric.unit,
            "kind": metric.kind, "windowSeconds": metric.window,
            "aggregation": res.aggregation(step), "promql": res.promql,
            "timestamps": res.timestamps, "times": [iso(t) for t in res.timestamps],
            "series": series}


def _quality(results: list[MetricResult], stale: list[dict], k: int) -> dict:
    expected = present = 0
    gaps, absent = [], []
    suppressed = 0
    for res in results:
        suppressed += res.suppressed
        n = len(res.timestamps)
        if not res.series:
            expected += n
            absent.append({"metric": res.metric.name,
                           "series": res.metric.series_names()})
            continue
        for labels, values in res.series:
            expected += n
            have = sum(v is not None for v in values)
            present += have
            if have < n:
                missing = [iso(t) for t, v in zip(res.timestamps, values, strict=True)
                           if v is None]
                gaps.append({"metric": res.metric.name, "series": label_name(labels),
                             "missingPoints": n - have, "of": n, "first": missing[0],
                             "last": missing[-1]})
    completeness = present / expected if expected else None
    notes = []
    if completeness is not None:
        notes.append(f"Completeness: {present} of {expected} expected points present "
                     f"({completeness:.1%}).")
    for a in absent:
        notes.append(f"No data for {a['metric']} (absent series: {', '.join(a['series'])}).")
    for g in gaps:
        notes.append(f"Gap in {g['metric']} [{g['series']}]: {g['missingPoints']} of {g['of']} "
                     f"points missing between {g['first']} and {g['last']}.")
    for s in stale:
        notes.append(f"Stale source: scrape target {s['job']}/{s['instance']} is down (up == 0).")
    if suppressed:
        notes.append(f"{suppressed} points of groups with fewer than {k} users were suppressed "
                     "(k-anonymity).")
    if not notes or (completeness == 1.0 and len(notes) == 1):
        notes.append("No gaps, absent series or stale sources.")
    return {"completeness": completeness, "expectedPoints": expected, "presentPoints": present,
            "gaps": gaps, "absent": absent, "staleSources": stale,
            "suppressedPoints": suppressed, "kAnonymity": k, "notes": notes}


def _costs(prom, items: dict[str, dict], req: ReportRequest, prices: Mapping) -> dict:
    hours = (req.end - req.start) / 3600
    cores = prom.query('count(node_cpu_seconds_total{mode="idle"})', time=req.end)
    mem = prom.query("sum(node_memory_MemTotal_bytes)", time=req.end)
    cores_n = float(cores[0]["value"][1]) if cores else None
    mem_gb = float(mem[0]["value"][1]) / 1e9 if mem else None
    notes = []

    def total(metric: str) -> float | None:
        item = items.get(metric)
        return item["series"][0]["value"] if item and item["series"] else None

    infra = None
    if cores_n is not None:
        infra = cores_n * hours * prices["cpu_core_hour"] + (
            (mem_gb or 0.0) * hours * prices["memory_gb_hour"])
    else:
        notes.append("Infrastructure cost unknown: node_cpu_seconds_total is absent.")
    recs = total("ai_recommendations")
    ai = recs / 1000 * prices["ai_per_1000_recommendations"] if recs is not None else None
    if ai is None:
        notes.append("AI processing cost unknown: no recommendations in the range.")
    sessions = total("sessions")
    support = (sessions / 1000 * prices["support_tickets_per_1000_sessions"]
               * prices["support_per_ticket"] if sessions is not None else None)
    notes.append("Support cost is estimated from the configured ticket rate per 1000 sessions "
                 "(no support-ticket metric exists).")
    parts = [v for v in (infra, ai, support) if v is not None]
    all_costs = sum(parts) if parts else None
    # The user base is the distinct monthly active users (platform="all", mean over the
    # range), the same denominator as arpu: a user on two platforms is one user.
    users = total("monthly_active_users")
    per_user = all_costs / users if all_costs is not None and users else None
    if per_user is None:
        notes.append("Cost per user unknown: monthly_active_users is absent; cost per 1000 "
                     "sessions is given instead.")
    else:
        notes.append("Cost per user: the range's costs over the distinct monthly active "
                     "users (mean over the range).")
    return {"currency": prices["currency"], "hours": hours, "cpuCores": cores_n,
            "memoryGB": mem_gb, "infrastructure": infra, "aiProcessing": ai,
            "support": support, "total": all_costs, "activeUsers": users,
            "userBase": "monthly_active_users (distinct, platform=all)",
            "perUser": per_user,
            "per1000Sessions": all_costs / sessions * 1000 if all_costs and sessions else None,
            "unitPrices": dict(prices), "notes": notes}


def _benchmarks(items: dict[str, dict], bench: Mapping) -> dict:
    sessions_item = items.get("sessions")
    usage = items.get("feature_usage")
    sessions = (sessions_item["series"][0]["value"]
                if sessions_item and sessions_item["series"] else None)
    rows = []
    ours_by = {s["labels"].get("feature"): s["value"] for s in (usage or {}).get("series", [])}
    for feature, industry in sorted((bench.get("feature_adoption") or {}).items()):
        ours = ours_by.get(feature)
        share = ours / sessions if ours is not None and sessions else None
        rows.append({"feature": feature, "usesPerSession": share, "industry": industry,
                     "difference": share - industry if share is not None else None,
                     "position": None if share is None else "above" if share > industry
                     else "below" if share < industry else "at"})
    return {"source": bench.get("source"), "measure": "feature uses per session", "rows": rows}


def _incidents(prom, req: ReportRequest) -> list[dict]:
    window = max(int(req.end - req.start), 1)
    rows = prom.query("max by (alertname, severity) (max_over_time("
                      f'ALERTS{{alertstate="firing"}}[{window}s]))', time=req.end)
    counts = prom.query("count by (alertname, severity) (count_over_time("
                        f'ALERTS{{alertstate="firing"}}[{window}s]))', time=req.end)
    series = {(r["metric"].get("alertname"), r["metric"].get("severity")): float(r["value"][1])
              for r in counts}
    return sorted(({"alertname": r["metric"].get("alertname", ""),
                    "severity": r["metric"].get("severity", ""),
                    "alertSeries": series.get((r["metric"].get("alertname"),
                                               r["metric"].get("severity")))}
                   for r in rows), key=lambda r: (r["severity"], r["alertname"]))


def _scaling(items: dict[str, dict]) -> list[dict]:
    out = []
    head = items.get("capacity_headroom_7d")
    if not head or not head["series"]:
        return [{"action": "none", "reason": "no capacity forecast data (capacity_headroom_7d "
                 "absent): cannot recommend scaling"}]
    for s in head["series"]:
        last = next((v for v in reversed(s["values"]) if v is not None), None)
        if last is not None and last < HEADROOM_LOW:
            out.append({"action": "scale_up", "series": s["name"], "headroom7d": last,
                        "reason": f"{s['name']}: {last:.0%} free a week from now "
                                  f"(below {HEADROOM_LOW:.0%}); add capacity"})
    if not out:
        out.append({"action": "none", "reason": f"every resource keeps at least "
                    f"{HEADROOM_LOW:.0%} headroom a week from now"})
    return out


def build_report(prom, req: ReportRequest, settings: Mapping, k: int,
                 now: float | None = None) -> dict:
    """Query Prometheus (or the long-term tier the range needs) and return the report."""
    with ReadRouter.recording() as seen:
        report = _build_report(prom, req, settings, k, now)
    report["metadata"]["source"] = source_note(seen)
    return report


def _build_report(prom, req: ReportRequest, settings: Mapping, k: int,
                  now: float | None) -> dict:
    began = time.perf_counter()
    defs = catalogue()
    step = req.step
    length = req.end - req.start
    sections_spec = SECTIONS.get(req.report_type, [])
    if req.report_type == "custom":
        sections_spec = [("custom", "Custom queries", [(q["metric"], tuple(q["dimensions"]))
                                                       for q in req.custom])]
    filters = {i: q.get("filters", []) for i, q in enumerate(req.custom)}
    results: list[MetricResult] = []
    items: dict[str, dict] = {}
    sections = []
    for sid, title, metrics in sections_spec:
        section = {"id": sid, "title": title, "items": [], "notes": []}
        for idx, (name, dims) in enumerate(metrics):
            matchers: list[Matcher] = filters.get(idx, []) if sid == "custom" else []
            res = evaluate(prom, defs[name], list(dims), matchers, req.start, req.end, step, k)
            prev = None
            if req.include_comparisons:
                prev = evaluate(prom, defs[name], list(dims), matchers, req.start - length,
                                req.start, step, k)
            results.append(res)
            item = _item(res, step, prev)
            section["items"].append(item)
            items.setdefault(name, item)
        sections.append(section)
    by_id = {s["id"]: s for s in sections}
    extras: dict = {}
    if "costs" in by_id:
        extras["costs"] = _costs(prom, items, req, settings["costs"])
        by_id["costs"]["notes"] += extras["costs"]["notes"]
    if "feature_usage" in by_id:
        extras["benchmarks"] = _benchmarks(items, settings["benchmarks"])
    if "incidents" in by_id:
        extras["incidents"] = _incidents(prom, req)
        by_id["incidents"]["notes"].append(
            f"{len(extras['incidents'])} alert(s) fired in the range (Prometheus ALERTS)."
            if extras["incidents"] else "No alert fired in the range.")
    if "capacity" in by_id:
        extras["scaling"] = _scaling(items)
        by_id["capacity"]["notes"] += [r["reason"] for r in extras["scaling"]]
    if "availability" in by_id:
        avail = items.get("availability")
        objective = items.get("availability_objective")
        a = avail["series"][0]["value"] if avail and avail["series"] else None
        o = objective["series"][0]["value"] if objective and objective["series"] else None
        extras["slo"] = {"availability": a, "objective": o,
                         "met": None if a is None or o is None else a >= o}
        by_id["availability"]["notes"].append(
            "SLO status unknown (no data)." if extras["slo"]["met"] is None else
            f"Availability {a:.3%} against the objective {o:.3%}: "
            f"{'met' if extras['slo']['met'] else 'missed'}.")
    if "unit_economics" in by_id:
        arpu = items.get("arpu")
        churn = items.get("churn_rate")
        a = arpu["series"][0]["value"] if arpu and arpu["series"] else None
        c = churn["series"][0]["value"] if churn and churn["series"] else None
        extras["ltv"] = {"value": a / c if a is not None and c else None,
                         "formula": "LTV = ARPU (revenue per day per monthly active user, "
                                    "mean over the range) / churn_rate (cancellations per "
                                    "day per active subscription, mean over the range)",
                         "arpu": a, "churnRate": c}
    headlines = []
    for name in HEADLINES.get(req.report_type, []):
        item = items.get(name)
        if item is None:
            continue
        for s in item["series"] or [{"name": "total", "labels": {}, "value": None}]:
            headlines.append({"metric": name, "label": defs[name].description,
                              "series": s["name"], "unit": item["unit"], "value": s["value"],
                              "previous": s.get("previous"), "change": s.get("change"),
                              "changeRatio": s.get("changeRatio"),
                              "aggregation": item["aggregation"]})
    forecasts = [f for f in (forecast(items[m], req.end, step)
                             for m in FORECASTS.get(req.report_type, []) if m in items) if f]
    stale = stale_sources(prom, req.end)
    quality = _quality(results, stale, k)
    took = time.perf_counter() - began
    if took > settings.get("max_report_seconds", 30):
        quality["notes"].append(f"The report took {took:.1f} s to query.")
    return {
        "report": {"type": req.report_type, "title": TITLES[req.report_type],
                   "generatedAt": iso(now if now is not None else time.time()),
                   "timeRange": {"start": iso(req.start), "end": iso(req.end),
                                 "seconds": length},
                   "previousRange": ({"start": iso(req.start - length), "end": iso(req.start)}
                                     if req.include_comparisons else None),
                   "granularity": req.granularity, "stepSeconds": step,
                   "includeComparisons": req.include_comparisons},
        "headlines": headlines,
        "sections": sections,
        "forecasts": forecasts,
        **extras,
        "dataQuality": quality,
        "metadata": {"queryMs": round(took * 1000, 1), "maxPoints": MAX_POINTS},
    }


def clean(value):
    """The report as every format writes it: NaN/inf become None, floats keep 10 digits.

    Ten significant digits survive every writer unchanged (JSON, the Excel XML, the PDF
    text), so the same number reads back identically from each format.
    """
    if isinstance(value, float):
        return float(f"{value:.10g}") if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [clean(v) for v in value]
    return value
