"""POST /api/analytics/reports/generate: executive, business, technical and custom reports
as JSON, Excel or PDF, downloaded or emailed; scheduled reports sent by a bridge thread."""

from __future__ import annotations

from collections.abc import Mapping

from flask import Blueprint, Response, current_app

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
from bridge.validation import request_body

bp = Blueprint("reports", __name__, url_prefix="/api/analytics/reports")



def _custom(raw: list | None) -> list[dict]:
    """The custom queries against the catalogue (their shape is the schema's)."""
    if not raw:
        raise bad_request("customQueries is required for a custom report", "customQueries",
                          "a non-empty list of QueryDefinition objects")
    defs = catalogue()
    out = []
    for i, q in enumerate(raw):
        where = f"customQueries[{i}]"
        metric = q["metric"]
        if metric not in defs:
            raise bad_request(f"unknown metric {metric[:64]!r}", f"{where}.metric",
                              "not in the catalogue (GET /api/analytics/metrics/catalogue)")
        allowed = set(defs[metric].dimensions)
        dims = []
        for key in ("dimensions", "groupBy"):
            for d in q.get(key) or []:
                if d not in allowed:
                    raise bad_request(f"unknown dimension {d[:64]!r}", f"{where}.{key}",
                                      f"{d[:64]!r} is not a dimension of {metric} (allowed: "
                                      f"{', '.join(sorted(allowed)) or 'none'})")
                if d not in dims:
                    dims.append(d)
        try:
            matchers = [parse_filter(f, allowed) for f in q.get("filters") or []]
        except Invalid as exc:
            for d in exc.details:
                d["field"] = f"{where}.filters"
            raise
        errors, _ = distinct_problems(defs[metric], dims, matchers)
        if errors:
            raise bad_request(f"{where}.filters is invalid", f"{where}.filters", errors[0])
        out.append({"metric": metric, "dimensions": dims, "filters": matchers})
    return out


def parse_report_request(body: Mapping, now: float) -> ReportRequest:
    """A ReportRequest from a body its schema (ReportGenerationRequest) accepted; what the
    schema cannot know (time, points per series, catalogue, delivery) is a 400 naming the field."""
    rtype = body["reportType"]
    start, end = parse_range(body["timeRange"], None, None, now, default="30d")
    comparisons = body.get("includeComparisons", True)
    fmt = body.get("format", "json")
    delivery = body.get("deliveryMethod", "download")
    granularity = body.get("granularity") or default_granularity(end - start)
    if (end - start) / GRANULARITIES[granularity] > MAX_POINTS:
        raise bad_request("the range is too large for the granularity", "granularity",
                          f"at most {MAX_POINTS} points per series")
    channel = body.get("channel")
    if channel is not None and delivery != "email":
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
    req = parse_report_request(request_body(), now(current_app))
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
