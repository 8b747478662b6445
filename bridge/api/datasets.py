"""Research datasets (seed HFA-005): POST /api/analytics/datasets/research.

Builds an anonymised dataset from the profile store (pulse.profiles.research): generalised
attributes, every row describing at least k users, optional Laplace noise; writes CSV + JSON
metadata to the data directory and returns both.
"""

from __future__ import annotations

import math
import time

from flask import Blueprint, current_app

from bridge.auth import require
from bridge.errors import bad_request
from bridge.validation import request_body
from pulse.grants import PERSONAL_DATA
from pulse.profiles.research import DEFAULT_ATTRIBUTES, release
from pulse.profiles.store import SCHEMA, connect, db_path

bp = Blueprint("datasets", __name__, url_prefix="/api/analytics/datasets")
MIN_EPSILON, MAX_EPSILON = 0.01, 10.0


def dataset_request(body: dict, k_floor: int) -> tuple[tuple[str, ...], int, float | None]:
    """(attributes, k, epsilon) of a schema-checked body; what the schema cannot know
    (the configured k floor, a NaN epsilon) is Invalid here."""
    attributes = body.get("attributes", list(DEFAULT_ATTRIBUTES))
    k = body.get("k", k_floor)
    if k < k_floor:
        raise bad_request("k is invalid", "k",
                          f"an integer from privacy.k_anonymity ({k_floor}) to 10000")
    epsilon = body.get("epsilon")
    if epsilon is not None and not math.isfinite(epsilon):
        raise bad_request("epsilon is invalid", "epsilon",
                          f"a number from {MIN_EPSILON} to {MAX_EPSILON} (omit it for no noise)")
    return tuple(attributes), k, float(epsilon) if epsilon is not None else None


@bp.post("/research")
@require("datasets:generate", scope=PERSONAL_DATA)
def research():
    """Release an anonymised research dataset (CSV + JSON metadata, also stored)."""
    cfg = current_app.config["PULSE"]
    attributes, k, epsilon = dataset_request(request_body(default={}), cfg.privacy.k_anonymity)
    conn = connect(db_path(cfg.data_dir))
    try:
        conn.executescript(SCHEMA)  # a fresh data directory has no profiles yet
        result = release(cfg.data_dir, conn, time.time(), k, attributes, epsilon)
    finally:
        conn.close()
    return result, 201
