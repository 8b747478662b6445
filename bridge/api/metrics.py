"""GET/POST /api/analytics/metrics: catalogue metrics by dimension (bridge.services.analytics)."""

from __future__ import annotations

from collections.abc import Mapping

from flask import Blueprint, current_app, request

from bridge.auth import current_principal, require
from bridge.services import PROMETHEUS, now, service
from bridge.services.analytics import build_response, catalogue, k_anonymity, parse_query
from bridge.validation import request_body

bp = Blueprint("metrics_query", __name__, url_prefix="/api/analytics")


def args_source(args) -> dict:
    """GET parameters as the parse_query source: repeated keys become lists."""
    out: dict = {}
    for key in args:
        values = args.getlist(key)
        out[key] = values if key in ("metrics", "dimensions", "filters", "orderBy") \
            else values[-1]
    return out


def _run(source: Mapping):
    principal = current_principal()
    q = parse_query(source, now(current_app))
    return build_response(service(current_app, PROMETHEUS), q, principal,
                          k_anonymity(current_app.config["PULSE"]))


@bp.get("/metrics")
@require("metrics:read")
def query_metrics():
    """MetricsQueryResponse for catalogue metrics given as query parameters."""
    return _run(args_source(request.args))


@bp.post("/metrics")
@require("metrics:read")
def query_metrics_body():
    """MetricsQueryResponse for a MetricsQueryRequest sent as a JSON body."""
    return _run(request_body())  # its schema first; parse_query then as for GET


@bp.get("/metrics/catalogue")
@require("metrics:read")
def list_catalogue():
    """The published catalogue: each metric's PromQL, dimensions, unit and description."""
    return {"metrics": [
        {"name": d.name, "description": d.description, "unit": d.unit,
         "windowSeconds": d.window, "kind": d.kind, "dimensions": list(d.dimensions),
         "promql": d.promql, "seriesRead": d.series_names(), "userCount": d.user_count,
         "coach": d.coach, "distinctTotal": dict(d.distinct_total)}
        for d in catalogue().values()]}
