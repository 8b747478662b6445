"""HTTP API of the AI exporter: evaluations, drift references/observations, inference reports."""

from __future__ import annotations

from flask import Blueprint, current_app, jsonify, request
from werkzeug.exceptions import HTTPException

from exporters.ai import validate
from exporters.ai.psi import bin_values, compare
from exporters.ai.validate import InvalidInput
from pulse.service import guard

bp = Blueprint("ai_api", __name__, url_prefix="/api/analytics/ai")


def _ctx():
    return current_app.extensions["pulse.ai"]


def _body():
    body = request.get_json(silent=True)
    if body is None:
        raise InvalidInput("body", "expected a JSON body (Content-Type: application/json)")
    return body


def _error(status: int, code: str, message: str, details: list | None = None):
    return jsonify({"error": {"code": code, "message": message, "details": details or []}}), status


@bp.errorhandler(InvalidInput)
def invalid(exc: InvalidInput):
    """Bad input: 4xx naming the field."""
    code = "not_found" if exc.status == 404 else (
        "limit_exceeded" if exc.status == 422 else "invalid_request")
    return _error(exc.status, code, f"{exc.field}: {exc.problem}",
                  [{"field": exc.field, "problem": exc.problem}])


def register_error_handlers(app) -> None:
    """Every error of the exporter is JSON in the bridge's shape."""
    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        code = (exc.name or "error").lower().replace(" ", "_")
        return _error(exc.code, code, exc.description or exc.name)


def _check_model_budget(model: str) -> None:
    ctx = _ctx()
    if model not in ctx.store.models() and len(ctx.store.models()) >= ctx.max_models:
        raise InvalidInput("model", f"too many models (limit {ctx.max_models}); labels must "
                           "stay bounded", status=422)


@bp.post("/evaluations")
@guard("ai:write")
def post_evaluation():
    """Record an evaluation result (EvaluationReport) of a model version."""
    ctx = _ctx()
    ev = validate.evaluation(_body(), ctx.clock())
    _check_model_budget(ev["model"])
    ev["receivedAt"] = ctx.clock()
    current = ctx.store.put_evaluation(ev)
    return {"model": ev["model"], "modelVersion": ev["modelVersion"], "current": current,
            "evaluatedAt": validate.iso(ev["evaluatedAt"])}, 201


@bp.get("/evaluations")
@guard("ai:read")
def list_evaluations():
    """The latest evaluation of every exported model version."""
    out = []
    for model, versions in sorted(_ctx().store.evaluations().items()):
        for version, ev in sorted(versions.items()):
            out.append({"model": model, "modelVersion": version, "task": ev["task"],
                        "metrics": ev["metrics"], "sampleSize": ev["sampleSize"],
                        "evaluatedAt": validate.iso(ev["evaluatedAt"])})
    return {"evaluations": out}


@bp.post("/drift/reference")
@guard("ai:write")
def post_reference():
    """Register (or replace) the reference distribution of a model's score or feature."""
    ctx = _ctx()
    ref = validate.reference(_body(), ctx.clock())
    _check_model_budget(ref["model"])
    known = ctx.store.features(ref["model"])
    if ref["feature"] not in known and len(known) >= ctx.max_features:
        raise InvalidInput("feature", f"too many features for this model (limit "
                           f"{ctx.max_features})", status=422)
    ctx.store.put_reference(ref)
    return {"model": ref["model"], "feature": ref["feature"], "bins": ref["edges"],
            "capturedAt": validate.iso(ref["registeredAt"])}, 201


@bp.post("/drift/observations")
@guard("ai:write")
def post_observations():
    """Add current observations (counts per reference bin, or raw values) for drift."""
    ctx = _ctx()
    obs = validate.observations(_body(), ctx.store.reference)
    counts = obs["counts"] if obs["counts"] is not None else bin_values(obs["edges"],
                                                                         obs["values"])
    ctx.store.add_observations(obs["model"], obs["feature"], counts)
    return {"model": obs["model"], "feature": obs["feature"], "added": sum(counts)}, 202


@bp.get("/drift")
@guard("ai:read")
def get_drift():
    """PSI of every (model, feature) over the drift window, with per-bin contributions."""
    ctx = _ctx()
    now = ctx.clock()
    out = []
    for ref in sorted(ctx.store.references(),
                      key=lambda r: (r["model"], r["feature"])):
        current = ctx.store.window_counts(ref["model"], ref["feature"], now)
        result = compare(ref["counts"], current, ctx.min_observations)
        out.append({
            "model": ref["model"], "feature": ref["feature"], "bins": ref["edges"],
            "referenceCounts": ref["counts"], "currentCounts": current,
            "observations": result.observations, "sufficientData": result.sufficient,
            "psi": result.psi, "contributions": list(result.contributions),
            "referenceAgeSeconds": round(max(now - ref["registeredAt"], 0.0), 3),
        })
    return {"windowSeconds": ctx.store.window_seconds,
            "minObservations": ctx.min_observations, "drift": out}


@bp.post("/inference")
@guard("ai:write")
def post_inference():
    """Observe inference durations reported by a model server (seconds)."""
    ctx = _ctx()
    report = validate.inference(_body())
    _check_model_budget(report["model"])
    child = ctx.inference.labels(model=report["model"])
    for d in report["durations"]:
        child.observe(d)
    return {"model": report["model"], "observed": len(report["durations"])}, 202
