"""Churn prediction: a logistic regression on the pseudonymous profile features.

Churn is "no activity in the HORIZON days after a cut-off"; the features are what the
profile store knew at the cut-off (HORIZON days ago), read from each record's 62-day
activity bitmap (bit i = last_day - i), so nothing after the cut-off leaks into them:
active days in the 7 and 28 days before it, days since the last activity, tenure, whether
the plan is paid, the platforms used, the workout-completion and AI-acceptance ratios.
Users are split by their pseudonym into training (70 %) and held-out (30 %) sets; the
model is scored on the held-out users (AUC, Brier score, a calibration table). The output
is aggregates per segment (plan x engagement) with at least k users, never a person.
"""

from __future__ import annotations

import sqlite3

import numpy as np
from sklearn.calibration import calibration_curve
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import brier_score_loss, roc_auc_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

from pulse.profiles.store import DAY

HORIZON = 14
BITS = 62
MIN_USERS = 200  # below this many users (or 20 of each class) there is no model
FEATURES = ("active_days_7", "active_days_28", "days_since_active", "tenure_days",
            "paid_plan", "platforms", "completion_ratio", "ai_acceptance_ratio")


def _window(days: int, last: int, hi: int) -> int:
    """The bitmap re-anchored at day `hi` (bit i = day hi - i), days after hi dropped."""
    bits = days & ((1 << BITS) - 1)
    return bits >> (last - hi) if last >= hi else bits << (hi - last)


def _active_days(days: int, last: int, lo: int, hi: int) -> int:
    """Active days d with lo <= d <= hi from the bitmap anchored at `last`."""
    return (_window(days, last, hi) & ((1 << (hi - lo + 1)) - 1)).bit_count()


def dataset(conn: sqlite3.Connection, today: int):
    """(features, churned, plan, engagement, held_out) of users active before the cut-off."""
    cut = today - HORIZON
    rows = conn.execute(
        "SELECT uid, first_day, last_day, days, plan, last_ios, last_android, last_web, "
        "started, completed, ai_shown, ai_accepted FROM users WHERE last_day IS NOT NULL "
        "AND first_day <= ? AND last_day >= ?", (cut, cut - BITS + HORIZON + 1)).fetchall()
    x, y, plans, levels, held = [], [], [], [], []
    for (uid, first, last, days, plan, ios, android, web, started, completed, shown,
         accepted) in rows:
        before = _active_days(days, last, cut - 27, cut)
        if before == 0:
            continue  # not active in the 28 days before the cut-off: already gone
        recent = _active_days(days, last, cut - 6, cut)
        at_cut = _window(days, last, cut)
        last_before = cut - ((at_cut & -at_cut).bit_length() - 1)  # lowest set bit
        after = _active_days(days, last, cut + 1, today)
        x.append([recent, before, cut - last_before, cut - first, int(plan is not None),
                  sum(v is not None and v <= cut for v in (ios, android, web)),
                  completed / started if started else 0.0,
                  accepted / shown if shown else 0.0])
        y.append(int(after == 0))
        plans.append(plan or "free")
        levels.append("high" if before >= 12 else "medium" if before >= 4 else "low")
        held.append(uid[0] < 77)  # ~30 % of pseudonyms (first byte < 77 of 256)
    return (np.array(x, float).reshape(-1, len(FEATURES)), np.array(y, int), plans, levels,
            np.array(held, bool))


def churn_model(conn: sqlite3.Connection, now: float, k: int) -> dict:
    """Train, score on held-out users, and predict per segment (k-anonymous)."""
    today = int(now // DAY)
    x, y, plans, levels, held = dataset(conn, today)
    base = {"method": "logistic regression (scikit-learn), standardised features",
            "features": list(FEATURES), "horizonDays": HORIZON,
            "label": f"no activity in the {HORIZON} days after the cut-off", "users": len(y)}
    train, test = ~held, held
    enough = (len(y) >= MIN_USERS and min(np.bincount(y[train], minlength=2)) >= 20
              and min(np.bincount(y[test], minlength=2)) >= 10)
    if not enough:
        return {**base, "status": "not_enough_data",
                "note": f"needs at least {MIN_USERS} users active before the cut-off with "
                        "both outcomes in training and held-out sets"}
    with threadpool_limits(1):
        model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
        model.fit(x[train], y[train])
        p_test = model.predict_proba(x[test])[:, 1]
        p_all = model.predict_proba(x)[:, 1]
    observed, predicted = calibration_curve(y[test], p_test, n_bins=5, strategy="quantile")
    segments, suppressed = [], 0
    keys = sorted(set(zip(plans, levels, strict=True)))
    for plan, level in keys:
        mask = np.array([p == plan and lv == level for p, lv in
                         zip(plans, levels, strict=True)])
        n = int(mask.sum())
        if n < k:
            suppressed += n
            continue
        segments.append({"plan": plan, "engagement": level, "users": n,
                         "meanChurnProbability": float(p_all[mask].mean()),
                         "expectedChurners": int(round(p_all[mask].sum())),
                         "observedChurnRate": float(y[mask].mean())})
    return {**base, "status": "ok", "trainingUsers": int(train.sum()),
            "heldOutUsers": int(test.sum()),
            "heldOut": {"auc": float(roc_auc_score(y[test], p_test)),
                        "brierScore": float(brier_score_loss(y[test], p_test)),
                        "baseRate": float(y[test].mean()),
                        "calibration": [{"predicted": float(a), "observed": float(b)}
                                        for a, b in zip(predicted, observed, strict=True)]},
            "coefficients": dict(zip(FEATURES, model[-1].coef_[0].tolist(), strict=True)),
            "segments": segments, "suppressedUsers": suppressed, "kAnonymity": k}
