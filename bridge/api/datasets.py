"""Research datasets (seed HFA-005): POST /api/analytics/datasets/research.

Builds an anonymised dataset from the profile store (pulse.profiles.research): generalised
attributes, every row describing at least k users, optional Laplace noise; writes CSV + JSON
metadata to the data directory and returns both.
"""

from __future__ import annotations

import math
import time

from flask import Blueprint, current_app, request

from bridge.auth import require
from bridge.errors import bad_request
from pulse.profiles.research import ATTRIBUTES, DEFAULT_ATTRIBUTES, release
from pulse.profiles.store import SCHEMA, connect, db_path

bp = Blueprint("datasets", __name__, url_prefix="/api/analytics/datasets")
MIN_EPSILON, MAX_EPSILON = 0.01, 10.0


def validate_request(body, k_floor: int) -> tuple[tuple[str, ...], int, float | None]:
    """(attributes, k, epsilon) of a research dataset request; raises ApiError 400."""
    if body is None:
        body = {}
    if not isinstance(body, dict):
        raise bad_request("expected a JSON object", "body", "expected a JSON object")
    for key in body:
        if key not in ("attributes", "k", "epsilon"):
            raise bad_request(f"{key}: unknown field", key,
                              "unknown field (allowed: attributes, k, epsilon)")
    attributes = body.get("attributes", list(DEFAULT_ATTRIBUTES))
    if (not isinstance(attributes, list) or not 1 <= len(attributes) <= len(ATTRIBUTES)
            or not all(isinstance(a, str) for a in attributes)
            or len(set(attributes)) != len(attributes)):
        raise bad_request("attributes is invalid", "attributes",
                          f"a list of distinct names among {', '.join(ATTRIBUTES)}")
    for i, name in enumerate(attributes):
        if name not in ATTRIBUTES:
            raise bad_request(f"attributes[{i}] is unknown", f"attributes[{i}]",
                              f"must be one of {', '.join(ATTRIBUTES)}")
    k = body.get("k", k_floor)
    if isinstance(k, bool) or not isinstance(k, int) or not k_floor <= k <= 10000:
        raise bad_request("k is invalid", "k",
                          f"an integer from privacy.k_anonymity ({k_floor}) to 10000")
    epsilon = body.get("epsilon")
    if epsilon is not None and (isinstance(epsilon, bool) or not isinstance(epsilon, int | float)
                                or not math.isfinite(epsilon)
                                or not MIN_EPSILON <= epsilon <= MAX_EPSILON):
        raise bad_request("epsilon is invalid", "epsilon",
                          f"a number from {MIN_EPSILON} to {MAX_EPSILON} (omit it for no noise)")
    return tuple(attributes), k, float(epsilon) if epsilon is not None else None


@bp.post("/research")
@require("datasets:generate")
def research():
    """Release an anonymised research dataset (CSV + JSON metadata, also stored)."""
    cfg = current_app.config["PULSE"]
    attributes, k, epsilon = validate_request(request.get_json(silent=True),
                                              cfg.privacy.k_anonymity)
    if request.content_length and request.get_json(silent=True) is None:
        raise bad_request("the body is not valid JSON", "body", "invalid JSON")
    conn = connect(db_path(cfg.data_dir))
    try:
        conn.executescript(SCHEMA)  # a fresh data directory has no profiles yet
        result = release(cfg.data_dir, conn, time.time(), k, attributes, epsilon)
    finally:
        conn.close()
    return result, 201
