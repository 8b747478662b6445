"""The churn model on a synthetic profile store: held-out AUC, calibration, k-anonymity."""

import hashlib
import sqlite3

import numpy as np

from bridge.services.churn import HORIZON, churn_model, dataset
from pulse.profiles.store import COLUMNS, DAY, SCHEMA

TODAY = 20_000


def store(n=1500, seed=4):
    """Users whose churn depends on their engagement before the cut-off."""
    rng = np.random.default_rng(seed)
    conn = sqlite3.connect(":memory:")
    conn.executescript(SCHEMA)
    cut = TODAY - HORIZON
    truth = []
    for i in range(n):
        engagement = rng.uniform(0.05, 0.9)
        active = {d for d in range(cut - 45, cut + 1) if rng.random() < engagement}
        active.add(cut - int(rng.integers(0, 5)))
        churned = rng.random() < 1 / (1 + np.exp(-(2.0 - 7.0 * engagement)))
        if not churned:
            active |= {d for d in range(cut + 1, TODAY + 1) if rng.random() < engagement}
            active.add(int(rng.integers(cut + 1, TODAY + 1)))
        last = max(active)
        days = sum(1 << (last - d) for d in active if last - d < 62)
        plan = "family" if i < 3 else ("annual" if rng.random() < 0.4 else None)
        rec = dict.fromkeys(COLUMNS)
        rec.update(uid=hashlib.sha256(str(i).encode()).digest()[:16], touched=last,
                   first_day=min(active), last_day=last, days=days, weeks=0, plan=plan,
                   last_ios=last, started=10, completed=int(10 * engagement), achieved=0,
                   ai_shown=5, ai_accepted=2)
        conn.execute(f"INSERT INTO users ({', '.join(COLUMNS)}) VALUES "
                     f"({', '.join('?' * len(COLUMNS))})", [rec[c] for c in COLUMNS])
        truth.append(churned)
    return conn, truth


def test_labels_and_features_come_from_the_bitmap_without_leakage():
    conn, truth = store(300)
    x, y, _, _, held = dataset(conn, TODAY)
    # Rows come in pseudonym order; the labels are exactly the simulated outcomes.
    assert len(y) == 300 and int(y.sum()) == sum(truth)
    assert 0.2 < held.mean() < 0.4
    assert (x[:, 2] >= 0).all() and (x[:, 1] >= 1).all()  # active before the cut-off


def test_model_reports_held_out_auc_calibration_and_k_anonymous_segments():
    conn, _ = store()
    out = churn_model(conn, TODAY * DAY + 3600, k=5)
    assert out["status"] == "ok"
    held = out["heldOut"]
    assert held["auc"] > 0.75 and held["brierScore"] < 0.25
    for b in held["calibration"]:
        assert abs(b["predicted"] - b["observed"]) < 0.12, held["calibration"]
    assert all(s["users"] >= 5 for s in out["segments"])
    assert not any(s["plan"] == "family" for s in out["segments"])  # 3 users < k
    assert out["suppressedUsers"] >= 3
    assert sum(s["users"] for s in out["segments"]) + out["suppressedUsers"] == out["users"]
    assert "uid" not in str(out)


def test_too_few_users_is_not_a_model():
    conn, _ = store(50)
    assert churn_model(conn, TODAY * DAY, k=5)["status"] == "not_enough_data"
