"""Prometheus's read API on the bridge, scoped: `/prometheus/api/v1/query`, `query_range`,
`series`, `labels`, `label/<name>/values` (GET and POST form, as Grafana sends them).

A coach's query gets `coach="<coach_id>"` on every selector (bridge.services.promql_scope;
a conflicting matcher is a 403 naming it); for series and labels every `match[]` is scoped,
or a scoped `match[]={__name__=~".+"}` is added when none is given. Every principal but
admin also gets `__name__!~"pulse_profiles_.*"` the same way (the raw profile series, groups
under k included, stay behind the bridge; naming one is a 403); admin reads unchanged.
Answers keep Prometheus's JSON (status, data; errorType and error on failure,
bridge.errors), so Grafana's Prometheus datasource can point here (docs/bridge.md, "Coach
scoping"). `/prometheus/api/v1/rules` and `/alerts` are the ruler's.
"""

from __future__ import annotations

from datetime import datetime

from flask import Blueprint, current_app, request

from bridge.auth import current_principal, require
from bridge.errors import bad_request
from bridge.services import PROMETHEUS, service
from bridge.services.errors import Invalid, Refused
from bridge.services.promql_scope import LABEL_NAME, for_principal, principal_scope, scope_selector
from pulse.promapi import PromError

bp = Blueprint("prometheus_read", __name__, url_prefix="/prometheus/api/v1")
PERMISSION = "prometheus:read"
METHODS = ["GET", "POST"]
# The parameters passed on to Prometheus per endpoint; anything else is left out.
PARAMS = {
    "query": ("query", "time", "timeout"),
    "query_range": ("query", "start", "end", "step", "timeout"),
    "series": ("start", "end"),
    "labels": ("start", "end"),
    "label_values": ("start", "end"),
}


def _unix(value: str | None, field: str) -> float | None:
    """Unix seconds of a Prometheus time parameter (Unix seconds or RFC 3339), for routing."""
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        pass
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        raise bad_request(f"{field} is not a time", field,
                          "Unix seconds or RFC 3339, as Prometheus takes it") from None


def _params(kind: str) -> dict:
    return {k: request.values[k] for k in PARAMS[kind] if k in request.values}


def _read(path: str, params: dict, expr: str | None = None, start: float | None = None):
    try:
        data = service(current_app, PROMETHEUS).read(path, params, expr, start)
    except PromError as exc:
        if not exc.invalid:
            raise  # Prometheus down or failing: 503 (bridge.errors)
        # Prometheus's own message, with its status: 400 bad_data, 422 execution.
        kind = Invalid if exc.status == 400 else Refused
        raise kind(exc.detail or exc.message,
                   [{"field": "query", "problem": "refused by Prometheus"}],
                   code=exc.error_type or "bad_data") from None
    return {"status": "success", "data": data}


def _query(kind: str, path: str, start_field: str):
    params = _params(kind)
    expr = params.get("query")
    if expr is None:
        raise bad_request("query is required", "query", "a PromQL expression")
    params["query"] = for_principal(current_principal(), expr, "query")
    return _read(path, params, params["query"], _unix(params.get(start_field), start_field))


def _matches(required: bool) -> list[str]:
    matches = request.values.getlist("match[]")
    if required and not matches:
        raise bad_request("match[] is required", "match[]", "at least one series selector")
    enforced = principal_scope(current_principal())
    if not enforced:
        return matches
    # No match[]: every series, scoped like any other selector.
    return [scope_selector(m, enforced, "match[]") for m in matches or ['{__name__=~".+"}']]


@bp.route("/query", methods=METHODS)
@require(PERMISSION)
def query():
    """An instant query, as Prometheus answers it (scoped: coach, raw series)."""
    return _query("query", "/api/v1/query", "time")


@bp.route("/query_range", methods=METHODS)
@require(PERMISSION)
def query_range():
    """A range query, as Prometheus answers it (scoped: coach, raw series)."""
    return _query("query_range", "/api/v1/query_range", "start")


@bp.route("/series", methods=METHODS)
@require(PERMISSION)
def series():
    """The series matching every match[] (each scoped: coach, raw series)."""
    return _read("/api/v1/series", {**_params("series"), "match[]": _matches(required=True)})


@bp.route("/labels", methods=METHODS)
@require(PERMISSION)
def labels():
    """Label names (of the series the caller may see: match[] scoped or added)."""
    matches = _matches(required=False)
    return _read("/api/v1/labels", {**_params("labels"),
                                    **({"match[]": matches} if matches else {})})


@bp.route("/label/<name>/values", methods=["GET"])
@require(PERMISSION)
def label_values(name: str):
    """The values of one label (of the series the caller may see)."""
    if not LABEL_NAME.fullmatch(name):
        raise bad_request("name is not a label name", "name",
                          "letters, digits and _, not starting with a digit")
    matches = _matches(required=False)
    return _read(f"/api/v1/label/{name}/values",
                 {**_params("label_values"), **({"match[]": matches} if matches else {})})


@bp.route("/status/buildinfo", methods=["GET"])
@require(PERMISSION)
def buildinfo():
    """Prometheus's build information (Grafana reads it to know the server's features)."""
    return _read("/api/v1/status/buildinfo", {})
