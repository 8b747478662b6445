"""/api/analytics/ai-experiments: A/B experiments of AI models (bridge.services.experiments)."""

from __future__ import annotations

import math

from flask import Blueprint, current_app, request

from bridge.auth import require
from bridge.errors import bad_request
from bridge.services import EXPERIMENTS, now, service
from bridge.services import experiments as svc
from bridge.validation import request_body

bp = Blueprint("experiments", __name__, url_prefix="/api/analytics/ai-experiments")


def _store() -> svc.ExperimentStore:
    return service(current_app, EXPERIMENTS)


@bp.post("")
@require("experiments:write")
def create():
    """Validate and store an ExperimentRequest; 201 with the experiment and its id."""
    # The published schema first (shapes, types, unknown keys), by the one validator; then
    # what a schema cannot say (unique names, splits summing to 100, duration bounds).
    exp = svc.validate_experiment(request_body())
    at = now(current_app)
    return svc.public(svc.create(_store(), exp, at), at), 201


@bp.get("")
@require("experiments:read")
def list_experiments():
    """Every experiment (without results)."""
    at = now(current_app)
    return {"experiments": [svc.public(e, at) for e in _store().all()]}


@bp.get("/<exp_id>")
@require("experiments:read")
def get_experiment(exp_id: str):
    """One experiment with its per-unit results."""
    store = _store()
    exp = svc.get(store, exp_id)
    confidence = _float_arg("confidence", 0.95, 0.5, 0.999)
    min_sample = int(_float_arg("minSample", svc.MIN_SAMPLE, 1, 1e9))
    mde = _float_arg("relativeMde", 0.1, 0.001, 10)
    at = now(current_app)
    out = svc.public(exp, at)
    out["results"] = svc.results(store.units, exp, at, confidence, min_sample, mde)
    return out


@bp.get("/<exp_id>/assignment")
@require("experiments:read")
def assignment(exp_id: str):
    """The variant of a unit: SHA-256 of 'id:unit' mapped onto the cumulative split."""
    exp = svc.get(_store(), exp_id)
    unit = request.args.get("unit")
    if unit is None or not 1 <= len(unit) <= 128 or not unit.isprintable():
        raise bad_request("unit is invalid", "unit",
                          "required query parameter: an opaque id of 1 to 128 printable characters")
    platform = request.args.get("platform")
    if platform is not None and platform not in svc.PLATFORMS:
        raise bad_request("platform is invalid", "platform",
                          f"one of {', '.join(svc.PLATFORMS)}")
    plan = request.args.get("plan")
    if plan is not None and not svc.MODEL.match(plan):
        raise bad_request("plan is invalid", "plan", "a plan name (^[a-z][a-z0-9_]*$)")
    raw_new = request.args.get("newUser")
    if raw_new is not None and raw_new not in ("true", "false"):
        raise bad_request("newUser is invalid", "newUser", "true or false")
    new_user = None if raw_new is None else raw_new == "true"
    active = now(current_app) < exp["endsAt"]
    reason = svc.audience_reason(exp, platform, plan, new_user)
    if reason is not None:
        # Outside the audience: no variant, and the unit's exposures are not counted.
        return {"experimentId": exp["id"], "variant": None, "model": None,
                "modelVersion": None, "active": active, "inAudience": False,
                "reason": reason}
    chosen = svc.assign(exp, unit)
    return {"experimentId": exp["id"], "variant": chosen["name"], "model": chosen["model"],
            "modelVersion": chosen["modelVersion"], "active": active, "inAudience": True}


def _float_arg(name: str, default: float, lo: float, hi: float) -> float:
    raw = request.args.get(name)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not lo <= value <= hi:
        raise bad_request(f"{name} is invalid", name, f"must be a number from {lo:g} to {hi:g}")
    return value
