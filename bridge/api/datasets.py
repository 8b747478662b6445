"""Research datasets (seed HFA-005): POST /api/analytics/datasets/research, and the privacy
budget ledger: GET /api/analytics/datasets/budget.

Builds a dataset from the profile store (pulse.profiles.research): generalised attributes,
either exact and k-anonymous (no epsilon) or (epsilon, delta)-differentially private (noisy
counts, a noisy threshold, noisy sums); every release is charged to the research scope's
privacy budget (pulse.profiles.ledger) before it is computed, and one that would exceed the
configured total is refused with 409 naming `epsilon` (or `delta`) and what remains. The
CSV + JSON metadata are written to the data directory and returned.
"""

from __future__ import annotations

import math
import time

from flask import Blueprint, current_app

from bridge.auth import current_principal, require
from bridge.errors import bad_request
from bridge.services.errors import Conflict
from bridge.validation import request_body
from pulse.grants import PERSONAL_DATA
from pulse.profiles.ledger import BudgetExceeded, Ledger
from pulse.profiles.research import DEFAULT_ATTRIBUTES, DEFAULT_DELTA, release
from pulse.profiles.store import SCHEMA, connect, db_path

bp = Blueprint("datasets", __name__, url_prefix="/api/analytics/datasets")
MIN_EPSILON, MAX_EPSILON = 0.01, 10.0


def dataset_request(body: dict, k_floor: int
                    ) -> tuple[tuple[str, ...], int, float | None, float]:
    """(attributes, k, epsilon, delta) of a schema-checked body; what the schema cannot know
    (the configured k floor, a NaN epsilon, a delta without epsilon) is Invalid here."""
    attributes = body.get("attributes", list(DEFAULT_ATTRIBUTES))
    k = body.get("k", k_floor)
    if k < k_floor:
        raise bad_request("k is invalid", "k",
                          f"an integer from privacy.k_anonymity ({k_floor}) to 10000")
    epsilon = body.get("epsilon")
    if epsilon is not None and not math.isfinite(epsilon):
        raise bad_request("epsilon is invalid", "epsilon",
                          f"a number from {MIN_EPSILON} to {MAX_EPSILON} (omit it for no noise)")
    if "delta" in body and epsilon is None:
        # An exact release has no delta to spend: a lone delta would read as a DP promise.
        raise bad_request("delta needs epsilon", "delta",
                          "only with epsilon (an exact release is k-anonymous, not DP)")
    delta = body.get("delta", DEFAULT_DELTA)
    return tuple(attributes), k, float(epsilon) if epsilon is not None else None, float(delta)


def ledger() -> Ledger:
    """The privacy-budget ledger of the configured data directory and totals."""
    cfg = current_app.config["PULSE"]
    return Ledger(cfg.data_dir, cfg.privacy.budget.epsilon, cfg.privacy.budget.delta)


@bp.post("/research")
@require("datasets:generate", scope=PERSONAL_DATA)
def research():
    """Release a research dataset (CSV + JSON metadata, also stored), charged to the budget."""
    cfg = current_app.config["PULSE"]
    attributes, k, epsilon, delta = dataset_request(request_body(default={}),
                                                    cfg.privacy.k_anonymity)
    conn = connect(db_path(cfg.data_dir))
    try:
        conn.executescript(SCHEMA)  # a fresh data directory has no profiles yet
        result = release(cfg.data_dir, conn, time.time(), k, attributes, epsilon, delta,
                         ledger=ledger(), requested_by=current_principal().name)
    except BudgetExceeded as exc:
        raise Conflict(str(exc), [{"field": exc.field, "problem": (
            f"at most {exc.remaining:g} remains of the {exc.total:g} of scope {exc.scope!r} "
            "(privacy.budget)")}], code="privacy_budget_exceeded") from None
    finally:
        conn.close()
    return result, 201


@bp.get("/budget")
@require("privacy:budget")
def budget():
    """The privacy-budget ledger: per scope, the total, what is spent and left, the releases."""
    return {"scopes": ledger().scopes()}
