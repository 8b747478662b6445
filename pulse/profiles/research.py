"""Anonymised research datasets (seed HFA-005) from the profile store.

Each released row is one combination of generalised attributes (engagement level, paid or
free, goal category, platform or "multi", tenure band, quarter of the first activity) with
the number of users in it and the mean of five bounded per-user measures. Only users whose
latest event allowed sharing (privacyFlags.canShare) are included; every row describes at
least k users (the check is on the true count, before any noise); with `epsilon`, Laplace
noise is added to each row's count and sums (epsilon split evenly across them; rows are
disjoint, so the whole release is epsilon-differentially private under parallel composition).
The dataset is written as CSV + JSON metadata under `<data_dir>/profiles/research/`; every
file there is deleted when any user withdraws consent.
"""

from __future__ import annotations

import csv
import io
import json
import math
import random
import secrets
import sqlite3
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from pulse.fileio import write_atomic
from pulse.profiles.aggregates import engagement_level
from pulse.profiles.store import DAY, week_of

ATTRIBUTES = {
    "engagement": "active days of the last 30: high 12+, medium 4-11, low 1-3, dormant 0",
    "plan": "paid (any paid plan) or free",
    "goal_category": "current goal category, or none",
    "platform": "the one platform used (ios, android, web) or multi",
    "tenure": "weeks since the first activity: 0-4w, 5-12w, 13-26w, 27-52w, 52w+",
    "cohort_quarter": "quarter of the first activity, e.g. 2026-Q3",
}
DEFAULT_ATTRIBUTES = ("engagement", "plan", "goal_category")
# name -> (description, upper bound of the per-user value: the sensitivity of a sum)
MEASURES = {
    "active_days_30_mean": ("mean active days in the last 30", 30.0),
    "workouts_completed_mean": ("mean workouts completed (each user capped at 60)", 60.0),
    "workout_completion_mean": ("mean of completed/started workouts (0 without workouts)", 1.0),
    "goal_achieved_share": ("share of users who achieved at least one goal", 1.0),
    "ai_acceptance_mean": ("mean share of AI recommendations accepted (0 without any)", 1.0),
}
TENURE = ((4, "0-4w"), (12, "5-12w"), (26, "13-26w"), (52, "27-52w"))


def research_dir(data_dir: str | Path) -> Path:
    """Where released research datasets are kept."""
    return Path(data_dir) / "profiles" / "research"


def delete_all(data_dir: str | Path) -> int:
    """Delete every stored research dataset (after a consent withdrawal); returns files gone."""
    gone = 0
    folder = research_dir(data_dir)
    if folder.is_dir():
        for path in folder.iterdir():
            if path.is_file():
                path.unlink(missing_ok=True)
                gone += 1
    return gone


def _tenure(weeks: int) -> str:
    for limit, label in TENURE:
        if weeks <= limit:
            return label
    return "52w+"


def _quarter(day: int) -> str:
    d = date(1970, 1, 1) + timedelta(days=day)
    return f"{d.year}-Q{(d.month - 1) // 3 + 1}"


def _laplace(rng: random.Random, scale: float) -> float:
    u = rng.random() - 0.5
    return -scale * math.copysign(1.0, u) * math.log(1 - 2 * abs(u))


def build(conn: sqlite3.Connection, now: float, k: int, attributes: tuple[str, ...],
          epsilon: float | None = None, rng: random.Random | None = None
          ) -> tuple[list[dict], dict]:
    """The released rows and their metadata (nothing written)."""
    today = int(now // DAY)
    groups: dict[tuple, list[float]] = {}
    conn.execute("BEGIN")
    try:
        rows = conn.execute(
            "SELECT first_day, last_day, days, last_ios, last_android, last_web, plan, goal, "
            "started, completed, achieved, ai_shown, ai_accepted FROM users "
            "WHERE share = 1 AND last_day IS NOT NULL")
        for (first, last, days, ios, android, web, plan, goal, started, completed, achieved,
             shown, accepted) in rows:
            offset = max(0, today - last)
            recent = (days & ((1 << (30 - offset)) - 1)).bit_count() if offset < 30 else 0
            used = [p for p, v in (("ios", ios), ("android", android), ("web", web))
                    if v is not None]
            values = {
                "engagement": engagement_level(recent),
                "plan": "free" if plan in (None, "free") else "paid",
                "goal_category": goal or "none",
                "platform": used[0] if len(used) == 1 else "multi",
                "tenure": _tenure(week_of(today) - week_of(first)),
                "cohort_quarter": _quarter(first),
            }
            key = tuple(values[a] for a in attributes)
            acc = groups.setdefault(key, [0.0] * (1 + len(MEASURES)))
            acc[0] += 1
            acc[1] += recent
            acc[2] += min(completed, 60)
            acc[3] += min(1.0, completed / started) if started else 0.0
            acc[4] += 1.0 if achieved else 0.0
            acc[5] += accepted / shown if shown else 0.0
    finally:
        conn.execute("COMMIT")
    rng = rng or random.SystemRandom()
    share = epsilon / (1 + len(MEASURES)) if epsilon else None
    released = []
    for key, acc in sorted(groups.items()):
        if acc[0] < k:
            continue  # suppressed: the row would describe fewer than k users
        count = acc[0]
        sums = acc[1:]
        if share:
            count = max(0.0, count + _laplace(rng, 1.0 / share))
            sums = [s + _laplace(rng, bound / share)
                    for s, (_, bound) in zip(sums, MEASURES.values(), strict=True)]
        row = dict(zip(attributes, key, strict=True))
        row["users"] = round(count)
        for (name, (_, bound)), total in zip(MEASURES.items(), sums, strict=True):
            row[name] = round(min(bound, max(0.0, total / max(count, 1.0))), 4)
        released.append(row)
    meta = {
        "createdAt": datetime.fromtimestamp(now, UTC).isoformat(timespec="seconds"),
        "k": k,
        "attributes": {a: ATTRIBUTES[a] for a in attributes},
        "measures": {name: desc for name, (desc, _) in MEASURES.items()},
        "rows": len(released),
        "population": "users with profiling consent whose latest event allowed sharing "
                      "(privacyFlags.canShare); days are UTC days",
        "suppression": f"combinations of fewer than {k} users are not released (checked on "
                       "the true count, before noise)",
        "noise": ({"mechanism": "laplace", "epsilon": epsilon,
                   "epsilonPerValue": share,
                   "sensitivity": {"users": 1, **{n: b for n, (_, b) in MEASURES.items()}},
                   "composition": "sequential within a row, parallel across disjoint rows"}
                  if epsilon else {"mechanism": "none", "epsilon": None}),
        "withdrawal": "deleted when any user withdraws consent",
    }
    return released, meta


def to_csv(rows: list[dict], attributes: tuple[str, ...]) -> str:
    """The rows as CSV (attributes, users, the measures)."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=[*attributes, "users", *MEASURES],
                            lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


def release(data_dir: str | Path, conn: sqlite3.Connection, now: float, k: int,
            attributes: tuple[str, ...], epsilon: float | None = None) -> dict:
    """Build a dataset and write <id>.csv and <id>.json (atomically); return its description."""
    rows, meta = build(conn, now, k, attributes, epsilon)
    dataset_id = "rd-" + datetime.fromtimestamp(now, UTC).strftime("%Y%m%dT%H%M%S") + "-" + \
        secrets.token_hex(4)
    meta = {"datasetId": dataset_id, **meta}
    folder = research_dir(data_dir)
    folder.mkdir(parents=True, exist_ok=True)
    text = to_csv(rows, attributes)
    for name, content in ((f"{dataset_id}.csv", text),
                          (f"{dataset_id}.json", json.dumps(meta, indent=2) + "\n")):
        write_atomic(folder / name, content)
    return {"datasetId": dataset_id, "metadata": meta, "rows": rows, "csv": text,
            "files": {"csv": str(folder / f"{dataset_id}.csv"),
                      "metadata": str(folder / f"{dataset_id}.json")}}

