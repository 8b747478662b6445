"""The report as data: sections of catalogue metrics, comparisons, forecasts, data quality.

`build_report` queries Prometheus through the metrics catalogue (bridge/services/analytics.py)
and returns the JSON document every format renders; nothing else computes a number.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

from bridge.services import benchmarks
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
from bridge.services.forecast import crossing, forecast_series
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
# Forecasts of the report's own points (see forecast()).
FORECASTS = {
    "executive": ["signups", "sessions", "revenue", "churn_rate"],
    "business": ["revenue", "subscriptions_started", "churn_rate"],
    "technical": ["api_requests", "cpu_utilisation"],
    "custom": [],
}
TITLES = {"executive": "Executive report", "business": "Business report",
          "technical": "Technical report", "custom": "Custom report"}
FORECAST_HORIZON = 7 * 86400
CAPACITY_HORIZON = 30 * 86400
CAPACITY_THRESHOLD = 0.8
ROUNDING = ("Counts (unit count) are Prometheus increases, which extrapolate to the window's "
            "edges and so carry fractions: every count is rounded to the nearest integer "
            "(half to even) per point, and the range's figure is the rounded sum or mean.")
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
    """minute up to 6 hours, hour up to 2 days, day up to 120 days, else week.

    Every range gets several points (an hour: 60, a year: 52) for its charts.
    """
    if seconds <= 6 * 3600:
        return "minute"
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


def forecast(item: dict, end: float, step: int, horizon: float = FORECAST_HORIZON) -> dict:
    """Forecast of a metric's first series past the end (bridge.services.forecast)."""
    s = item["series"][0]
    out = forecast_series(s["values"], item["timestamps"], step, horizon)
    if item["unit"] == "count":
        for p in out["points"]:
            for key in ("value", "low95", "low80", "high80", "high95"):
                p[key] = max(p[key], 0.0)  # a count is never negative
    for p in out["points"]:
        p["time"] = iso(p.pop("t"))
    return {"metric": item["metric"], "series": s["name"], "unit": item["unit"],
            "stepSeconds": step, **out}


def _capacity(items: dict[str, dict], req: ReportRequest, threshold: float) -> list[dict]:
    """Days until each instance's CPU or memory use crosses the threshold, with an interval."""
    out = []
    for metric in ("cpu_utilisation", "memory_utilisation"):
        item = items.get(metric)
        if not item or not item["series"]:
            out.append({"metric": metric, "series": None, "threshold": threshold,
                        "days": None, "note": "no utilisation data: no capacity forecast"})
            continue
        for s in item["series"]:
            f = forecast_series(s["values"], item["timestamps"], req.step, CAPACITY_HORIZON)
            row = {"metric": metric, "series": s["name"], "method": f["method"],
                   "beatsBaseline": f.get("beatsBaseline"), "forecastNote": f["note"]}
            if f["points"]:
                row.update(crossing(f["points"], threshold, req.end))
            else:
                row.update(threshold=threshold, days=None, note=f["note"])
            out.append(row)
    return out


def _counted(res: MetricResult, values: list[float | None], step: int):
    """(points, figure) of a series: counts rounded to integers (see ROUNDING)."""
    if res.metric.unit != "count":
        return values, res.summary(values, step)
    points = [None if v is None else round(v) for v in values]
    value = res.summary(points, step)
    return points, None if value is None else round(value)


def _change_note(value, previous, compared: bool) -> str | None:
    if not compared:
        return "no comparison requested"
    if previous is None:
        return "the previous period has no data"
    if value is None:
        return "this period has no data"
    if previous == 0:
        return "the previous period is 0: no relative change"
    return None


def _item(res: MetricResult, step: int, prev: MetricResult | None) -> dict:
    metric = res.metric
    prev_by = {}
    if prev is not None:
        prev_by = {label_name(lbl): _counted(prev, vals, step)[1] for lbl, vals in prev.series}
    series, left_out = [], []
    for labels, raw in res.series:
        name = label_name(labels)
        values, value = _counted(res, raw, step)
        previous = prev_by.get(name)
        # A segment (a currency, a plan...) with nothing in either period is not a row.
        if labels and not value and not previous:
            left_out.append(name)
            continue
        entry = {"name": name, "labels": labels, "values": values, "value": value}
        if prev is not None:
            entry["previous"] = previous
            entry["change"], entry["changeRatio"] = change(value, previous)
        note = _change_note(value, previous, prev is not None)
        if note:
            entry["changeNote"] = note
        series.append(entry)
    series.sort(key=lambda s: (-(s["value"] or 0.0), s["name"]))
    return {"metric": metric.name, "title": metric.description, "unit": metric.unit,
            "kind": metric.kind, "windowSeconds": metric.window,
            "aggregation": res.aggregation(step), "promql": res.promql,
            "timestamps": res.timestamps, "times": [iso(t) for t in res.timestamps],
            "series": series, "leftOut": left_out}


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


LATE, COUNTED = "pulse_events_late_total", "pulse_event_lateness_seconds_count"


def _late_events(prom, req: ReportRequest, late_after: str) -> dict:
    """How many of the events counted in the range arrived late, per platform.

    The late events (pulse_events_late_total) against the events counted
    (pulse_event_lateness_seconds_count: one observation per counted event), the range's
    increases at its end; counts rounded (see ROUNDING), the share the ratio of the
    increases (what the data-quality dashboard's "Arrived late" shows).
    """
    window = max(int(req.end - req.start), 1)
    promql = {key: f"sum by (platform) (increase({name}[{window}s]))"
              for key, name in (("late", LATE), ("events", COUNTED))}
    raw: dict[str, dict[str, float]] = {}
    for key, expr in promql.items():
        for r in prom.query(expr, time=req.end):
            value = float(r["value"][1])
            if math.isfinite(value):
                raw.setdefault(r["metric"].get("platform", ""), {})[key] = value
    out = {"lateAfter": late_after, "promql": promql, "platforms": [], "total": None}
    if not raw:
        out["note"] = (f"Arrived late: no data ({LATE} and {COUNTED} have no samples in the "
                       "range: is the events intake scraped?).")
        return out
    texts = []
    for platform in sorted(raw):
        row = _late_row(raw[platform].get("late"), raw[platform].get("events"))
        out["platforms"].append({"platform": platform, **row})
        texts.append(f"{platform}: {_late_text(row)}")
    late = [raw[p]["late"] for p in raw if "late" in raw[p]]
    events = [raw[p]["events"] for p in raw if "events" in raw[p]]
    out["total"] = _late_row(sum(late) if late else None, sum(events) if events else None)
    out["note"] = (f"Arrived late (more than late_after={late_after} after they happened): "
                   f"{_late_text(out['total'])} in total; " + "; ".join(texts) + ".")
    return out


def _late_row(late: float | None, events: float | None) -> dict:
    share = late / events if late is not None and events else None
    row = {"late": None if late is None else round(late),
           "events": None if events is None else round(events), "share": share}
    if events is None or round(events) == 0:
        row["note"] = "no events counted"
    elif late is None:
        row["note"] = f"{LATE} absent"
    return row


def _late_text(row: dict) -> str:
    if row.get("note"):
        return f"no data ({row['note']})"
    return f"{row['late']:,} of {row['events']:,} counted events ({row['share']:.2%})"


def _booked(prom, start: float, end: float) -> dict[tuple[str, str], float]:
    window = max(int(end - start), 1)
    rows = prom.query("sum by (category, currency) "
                      f"(increase(business_costs_total[{window}s]))", time=end)
    return {(r["metric"].get("category", ""), r["metric"].get("currency", "")):
            float(r["value"][1]) for r in rows if math.isfinite(float(r["value"][1]))}


def _costs(prom, items: dict[str, dict], req: ReportRequest, prices: Mapping) -> dict:
    """Booked costs (business_costs_total) per user and per active subscription.

    The price table adds an estimate only for the categories nobody books, labelled so.
    """
    booked = {k: v for k, v in _booked(prom, req.start, req.end).items() if v}
    previous = (_booked(prom, req.start - (req.end - req.start), req.start)
                if req.include_comparisons else {})
    notes: list[str] = []

    def total(metric: str) -> float | None:
        item = items.get(metric)
        return item["series"][0]["value"] if item and item["series"] else None

    users = total("monthly_active_users")
    subscriptions = total("active_subscriptions")
    rows = []
    for (category, currency), value in sorted(booked.items()):
        prev = previous.get((category, currency))
        rows.append({"category": category, "currency": currency, "amount": value,
                     "basis": "booked", "previous": prev,
                     "changeRatio": change(value, prev)[1]})
    rows += _estimates(prom, items, req, prices, {c for c, _ in booked}, notes)
    by_currency: dict[str, dict] = {}
    for r in rows:
        cur = by_currency.setdefault(r["currency"], {"currency": r["currency"], "booked": 0.0,
                                                     "estimated": 0.0})
        cur["booked" if r["basis"] == "booked" else "estimated"] += r["amount"]
    for cur in by_currency.values():
        cur["total"] = cur["booked"] + cur["estimated"]
        cur["perUser"] = cur["total"] / users if users else None
        cur["perActiveSubscription"] = cur["total"] / subscriptions if subscriptions else None
        cur["bookedPerUser"] = cur["booked"] / users if users else None
        cur["bookedPerActiveSubscription"] = (cur["booked"] / subscriptions
                                              if subscriptions else None)
    notes.insert(0, "Costs are the range's booked business_costs_total by category."
                 if booked else "No booked costs in the range (business_costs_total absent).")
    notes.append("Per user: over the distinct monthly active users (mean over the range)."
                 if users else "Cost per user unknown: monthly_active_users is absent.")
    if not subscriptions:
        notes.append("Cost per active subscription unknown: no active subscriptions.")
    return {"rows": rows, "byCurrency": sorted(by_currency.values(),
                                               key=lambda c: c["currency"]),
            "activeUsers": users, "activeSubscriptions": subscriptions,
            "userBase": "monthly_active_users (distinct, platform=all)",
            "unitPrices": dict(prices), "notes": notes}


def _estimates(prom, items: dict[str, dict], req: ReportRequest, prices: Mapping,
               booked: set[str], notes: list[str]) -> list[dict]:
    """Price-table estimates of infrastructure, AI and support, only where nobody books."""
    hours = (req.end - req.start) / 3600
    out = []

    def first(metric: str) -> float | None:
        item = items.get(metric)
        return item["series"][0]["value"] if item and item["series"] else None

    def add(category: str, amount: float | None, how: str) -> None:
        if category in booked:
            return
        if amount is None:
            notes.append(f"{category}: not booked, and no usage to estimate it from.")
            return
        out.append({"category": category, "currency": prices["currency"], "amount": amount,
                    "basis": "estimate", "method": how, "previous": None,
                    "changeRatio": None})
        notes.append(f"{category}: not booked; ESTIMATE from the price table ({how}).")

    if "infrastructure" not in booked:
        cores = prom.query('count(node_cpu_seconds_total{mode="idle"})', time=req.end)
        mem = prom.query("sum(node_memory_MemTotal_bytes)", time=req.end)
        n = float(cores[0]["value"][1]) if cores else None
        gb = float(mem[0]["value"][1]) / 1e9 if mem else 0.0
        add("infrastructure", None if n is None else
            n * hours * prices["cpu_core_hour"] + gb * hours * prices["memory_gb_hour"],
            "cores x hours x cpu_core_hour + memory GB x hours x memory_gb_hour")
    recs = first("ai_recommendations")
    add("ai_processing", None if recs is None else
        recs / 1000 * prices["ai_per_1000_recommendations"],
        "recommendations / 1000 x ai_per_1000_recommendations")
    sessions = first("sessions")
    add("support", None if sessions is None else
        sessions / 1000 * prices["support_tickets_per_1000_sessions"]
        * prices["support_per_ticket"],
        "sessions / 1000 x tickets per 1000 sessions x support_per_ticket")
    return out


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
        figures, problem = benchmarks.load(settings["benchmarks"].get("file"))
        extras["benchmarks"] = {"configured": not problem, "note": problem,
                                "rows": benchmarks.compare(items, figures)}
        by_id["feature_usage"]["notes"].append(
            problem or f"{len(figures)} industry benchmark(s) from "
                       f"{settings['benchmarks']['file']}.")
    if "incidents" in by_id:
        extras["incidents"] = _incidents(prom, req)
        by_id["incidents"]["notes"].append(
            f"{len(extras['incidents'])} alert(s) fired in the range (Prometheus ALERTS)."
            if extras["incidents"] else "No alert fired in the range.")
    if "capacity" in by_id:
        extras["capacityPlanning"] = _capacity(items, req, CAPACITY_THRESHOLD)
        by_id["capacity"]["notes"] += [f"{r['metric']} {r['series']}: {r['note']}"
                                       for r in extras["capacityPlanning"]]
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
                              "changeNote": s.get("changeNote",
                                                  _change_note(None, None,
                                                               req.include_comparisons)),
                              "aggregation": item["aggregation"]})
    forecasts = [forecast(items[m], req.end, step) for m in FORECASTS.get(req.report_type, [])
                 if m in items and items[m]["series"]]
    stale = stale_sources(prom, req.end)
    quality = _quality(results, stale, k)
    quality["lateEvents"] = _late_events(prom, req, settings.get("late_after", "1h"))
    quality["notes"].append(quality["lateEvents"]["note"])
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
        "metadata": {"queryMs": round(took * 1000, 1), "maxPoints": MAX_POINTS,
                     "rounding": ROUNDING},
    }


def clean(value):
    """The report as every format writes it: NaN/inf become None, floats keep 10 digits.

    Ten significant digits survive every writer unchanged (JSON, the Excel XML, the PDF
    text), so the same number reads back identically from each format.
    """
    if type(value).__module__ == "numpy" and hasattr(value, "item"):
        value = value.item()  # a numpy scalar (numpy.bool_ is no bool to a writer)
    if isinstance(value, float):
        return float(f"{value:.10g}") if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [clean(v) for v in value]
    return value
