"""POST /api/analytics/reports/generate: executive, business, technical and custom reports
as JSON, Excel or PDF, downloaded or emailed; scheduled reports sent by a bridge thread."""

from __future__ import annotations

from collections.abc import Mapping

from flask import Blueprint, Response, current_app, request

from bridge.auth import require
from bridge.errors import bad_request
from bridge.services import now
from bridge.services.analytics import (
    GRANULARITIES,
    MAX_POINTS,
    catalogue,
    distinct_problems,
    parse_filter,
    parse_range,
)
from bridge.services.errors import Invalid
from bridge.services.reports import generate, outbox
from bridge.services.reports.build import ReportRequest, clean, default_granularity
from bridge.services.reports.deliver import MEDIA_TYPES, email_urls, filename, send_email

bp = Blueprint("reports", __name__, url_prefix="/api/analytics/reports")

REPORT_TYPES = ("executive", "business", "technical", "custom")
FORMATS = ("json", "excel", "pdf")
DELIVERY = ("download", "email")
KEYS = ("reportType", "timeRange", "includeComparisons", "format", "deliveryMethod",
        "customQueries", "granularity", "channel")
QUERY_KEYS = ("metric", "dimensions", "filters", "groupBy", "aggregation", "timeRange")
AGGREGATIONS = ("sum", "avg", "count", "min", "max", "percentile")
MAX_CUSTOM = 20


def _custom(raw) -> list[dict]:
    if not isinstance(raw, list) or not raw:
        raise bad_request("customQueries is required for a custom report", "customQueries",
                          "a non-empty list of QueryDefinition objects")
    if len(raw) > MAX_CUSTOM:
        raise bad_request("too many customQueries", "customQueries", f"at most {MAX_CUSTOM}")
    defs = catalogue()
    out = []
    for i, q in enumerate(raw):
        where = f"customQueries[{i}]"
        if not isinstance(q, Mapping):
            raise bad_request(f"{where} is invalid", where, "must be an object")
        for key in q:
            if key not in QUERY_KEYS:
                raise bad_request(f"{where}.{str(key)[:64]}: unknown key", f"{where}.{key}",
                                  f"unknown key (allowed: {', '.join(QUERY_KEYS)})")
        metric = q.get("metric")
        if not isinstance(metric, str) or metric not in defs:
            raise bad_request(f"unknown metric {str(metric)[:64]!r}", f"{where}.metric",
                              "not in the catalogue (GET /api/analytics/metrics/catalogue)")
        allowed = set(defs[metric].dimensions)
        dims = []
        for key in ("dimensions", "groupBy"):
            value = q.get(key) or []
            if not isinstance(value, list) or not all(isinstance(d, str) for d in value):
                raise bad_request(f"{where}.{key} is invalid", f"{where}.{key}",
                                  "must be a list of dimension names")
            for d in value:
                if d not in allowed:
                    raise bad_request(f"unknown dimension {d[:64]!r}", f"{where}.{key}",
                                      f"{d[:64]!r} is not a dimension of {metric} (allowed: "
                                      f"{', '.join(sorted(allowed)) or 'none'})")
                if d not in dims:
                    dims.append(d)
        filters = q.get("filters") or []
        if not isinstance(filters, list):
            raise bad_request(f"{where}.filters is invalid", f"{where}.filters", "a list")
        try:
            matchers = [parse_filter(f, allowed) for f in filters]
        except Invalid as exc:
            for d in exc.details:
                d["field"] = f"{where}.filters"
            raise
        errors, _ = distinct_problems(defs[metric], dims, matchers)
        if errors:
            raise bad_request(f"{where}.filters is invalid", f"{where}.filters", errors[0])
        if q.get("aggregation") is not None and q["aggregation"] not in AGGREGATIONS:
            raise bad_request(f"{where}.aggregation is invalid", f"{where}.aggregation",
                              f"one of {', '.join(AGGREGATIONS)} (the catalogue decides how "
                              "a metric aggregates; this is informative)")
        if q.get("timeRange") is not None:
            raise bad_request(f"{where}.timeRange is not supported", f"{where}.timeRange",
                              "custom queries use the report's timeRange")
        out.append({"metric": metric, "dimensions": dims, "filters": matchers})
    return out


def parse_report_request(body, now: float) -> ReportRequest:
    """A ReportRequest from the JSON body; every problem is a 400 naming the field."""
    if not isinstance(body, Mapping):
        raise bad_request("the body must be a JSON object", "body", "a JSON object is required")
    for key in body:
        if key not in KEYS:
            raise bad_request(f"{str(key)[:64]}: unknown field", str(key)[:64],
                              f"unknown field (allowed: {', '.join(KEYS)})")
    rtype = body.get("reportType")
    if rtype not in REPORT_TYPES:
        raise bad_request("reportType is invalid", "reportType",
                          f"one of {', '.join(REPORT_TYPES)}")
    if "timeRange" not in body:
        raise bad_request("timeRange is required", "timeRange",
                          "a duration ending now (30d) or {start, end}")
    start, end = parse_range(body["timeRange"], None, None, now, default="30d")
    comparisons = body.get("includeComparisons", True)
    if not isinstance(comparisons, bool):
        raise bad_request("includeComparisons is invalid", "includeComparisons",
                          "must be true or false")
    fmt = body.get("format", "json")
    if fmt not in FORMATS:
        raise bad_request("format is invalid", "format", f"one of {', '.join(FORMATS)}")
    delivery = body.get("deliveryMethod", "download")
    if delivery not in DELIVERY:
        raise bad_request("deliveryMethod is invalid", "deliveryMethod",
                          f"one of {', '.join(DELIVERY)}")
    granularity = body.get("granularity") or default_granularity(end - start)
    if not isinstance(granularity, str) or granularity not in GRANULARITIES:
        raise bad_request("granularity is invalid", "granularity",
                          f"one of {', '.join(GRANULARITIES)}")
    if (end - start) / GRANULARITIES[granularity] > MAX_POINTS:
        raise bad_request("the range is too large for the granularity", "granularity",
                          f"at most {MAX_POINTS} points per series")
    channel = body.get("channel")
    if channel is not None and (not isinstance(channel, str) or delivery != "email"):
        raise bad_request("channel is invalid", "channel",
                          "a channel name, only with deliveryMethod email")
    custom = []
    if rtype == "custom":
        custom = _custom(body.get("customQueries"))
    elif body.get("customQueries"):
        raise bad_request("customQueries is only for custom reports", "customQueries",
                          "use reportType custom")
    return ReportRequest(rtype, start, end, granularity, comparisons, fmt, delivery,
                         channel, custom)


@bp.post("/generate")
@require("reports:generate")
def generate_report():
    """Generate a report: the file (download) or a delivery receipt (email)."""
    req = parse_report_request(request.get_json(silent=True), now(current_app))
    cfg = current_app.config["PULSE"]
    channel = req.channel or cfg.bridge.reports.email_channel
    channels = cfg.bridge.channels
    if req.delivery == "email":
        email_urls(channel, channels)  # 400 before any work when the channel is unusable
    report, data = generate(current_app, req)
    if req.delivery == "email":
        receipt = send_email(report, data, req.format, channel, channels, outbox(cfg))
        return {"delivered": True, "deliveryMethod": "email", "format": req.format,
                **receipt, "dataQuality": clean(report["dataQuality"])}
    media, _ = MEDIA_TYPES[req.format]
    return Response(data, mimetype=media, headers={
        "Content-Disposition": f'attachment; filename="{filename(report, req.format)}"'})
