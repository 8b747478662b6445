"""Anonymised research datasets (seed HFA-005) from the profile store.

Each released row is one combination of generalised attributes (engagement level, paid or
free, goal category, platform or "multi", tenure band, quarter of the first activity) with
the number of users in it and the mean of five bounded per-user measures. Only users whose
latest event allowed sharing (privacyFlags.canShare) are included; each user is in exactly
one row and contributes at most a measure's bound to its sum. Two releases, and what each
guarantees, no more:

- without `epsilon`: exact counts and means of every combination of at least k users (the
  check is on the true count). That is k-anonymity; it is NOT differentially private.
- with `epsilon` (and `delta`): (epsilon, delta)-differential privacy for adding or removing
  one user. Counts get discrete Laplace noise and a combination is kept only when its NOISY
  count reaches a threshold set from epsilon, delta and k, so that a combination of a single
  user appears with probability at most delta; the kept rows' sums get Laplace noise
  (OpenDP's mechanisms, see `dp_rows`). No k-anonymity is promised: a kept row's true count
  may be under k.

A ledger (pulse.profiles.ledger) charges each DP release to the research scope's budget.
The dataset is written as CSV + JSON metadata under `<data_dir>/profiles/research/`; every
file there is deleted when any user withdraws consent.
"""

from __future__ import annotations

import csv
import io
import json
import math
import secrets
import sqlite3
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from pulse.fileio import write_atomic
from pulse.profiles.aggregates import engagement_level
from pulse.profiles.ledger import RESEARCH_SCOPE, Ledger
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
# delta of a release when none is asked for: the chance a group of one user is released.
DEFAULT_DELTA = 1e-6
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


def _groups(conn: sqlite3.Connection, now: float, attributes: tuple[str, ...]
            ) -> dict[tuple, list[float]]:
    """Per combination: [users, sum of each measure], each user's values clamped to the
    measure's bound (the contribution bound: one user is one row of `users`, so one group)."""
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
            acc[1] += min(30, recent)
            acc[2] += min(completed, 60)
            acc[3] += min(1.0, completed / started) if started else 0.0
            acc[4] += 1.0 if achieved else 0.0
            acc[5] += min(1.0, accepted / shown) if shown else 0.0
    finally:
        conn.execute("COMMIT")
    return groups


def _row(attributes: tuple[str, ...], key: tuple, count: float, sums: list[float]) -> dict:
    row = dict(zip(attributes, key, strict=True))
    row["users"] = round(count)
    for (name, (_, bound)), total in zip(MEASURES.items(), sums, strict=True):
        row[name] = round(min(bound, max(0.0, total / max(count, 1.0))), 4)
    return row


def exact_rows(groups: dict[tuple, list[float]], k: int, attributes: tuple[str, ...]
               ) -> list[dict]:
    """The k-anonymous release: true counts and means of every group of at least k users."""
    return [_row(attributes, key, acc[0], acc[1:]) for key, acc in sorted(groups.items())
            if acc[0] >= k]


def _opendp():
    import opendp.prelude as dp  # imported on first DP release: the bridge starts without it

    # make_laplace_threshold is in OpenDP's "contrib" set (proved, not yet vetted upstream).
    dp.enable_features("contrib")
    return dp


Charge = Callable[[float | None, float | None], None]


def _free(epsilon: float | None, delta: float | None) -> None:
    """No ledger: building a release in memory (tests, benches) spends nothing durable."""


def count_threshold(scale: float, delta: float, k: int) -> tuple[int, float]:
    """(threshold, delta spent) of the noisy-threshold count release at this noise scale.

    The count noise Z is discrete Laplace, P(Z = z) = (1-a)/(1+a) a^|z| with a = e^(-1/scale).
    A group is kept when its noisy count is at least the threshold t, so a group of one user
    (the only one that exists in one of two neighbouring datasets and not the other) is kept
    with P(1 + Z >= t) = a^(t-1)/(1+a): that is delta. t is the smallest integer with this at
    most the requested delta, raised to k when k is larger (fewer releases, smaller delta).
    """
    a = math.exp(-1.0 / scale)
    t = max(k, 2, 1 + math.ceil(math.log(delta * (1 + a)) / math.log(a)))
    return t, a ** (t - 1) / (1 + a)


def dp_rows(groups: dict[tuple, list[float]], k: int, attributes: tuple[str, ...],
            epsilon: float, delta: float, charge: Charge = _free) -> tuple[list[dict], dict]:
    """The (epsilon, delta)-differentially private release and what it spent.

    epsilon is split evenly over the count and the five sums. Counts: OpenDP's
    make_laplace_threshold (discrete Laplace, scale 6/epsilon, sensitivity 1) keeps a group
    only when its noisy count reaches the threshold of `count_threshold`: which groups exist
    is itself private, delta being the chance a group of one user is released. Sums of the
    kept groups: OpenDP's make_laplace (scale bound*6/epsilon, the bound being a user's
    largest contribution). Partition selection then aggregation compose to (epsilon, delta);
    means are sum/count of the noisy values (post-processing). charge(epsilon, delta) is
    called with what the release will spend before any noise is drawn (it may refuse).
    """
    dp = _opendp()
    part = epsilon / (1 + len(MEASURES))
    scale = 1.0 / part
    threshold, spent_delta = count_threshold(scale, delta, k)
    names = {"\x1f".join(key): key for key in groups}
    counts = dp.m.make_laplace_threshold(
        dp.map_domain(dp.atom_domain(T=str), dp.atom_domain(T=int)),
        dp.l01inf_distance(dp.absolute_distance(T=int)), scale=scale, threshold=threshold)
    # One user changes one group's count by one: (l0, l1, linf) = (1, 1, 1).
    count_eps, opendp_delta = counts.map((1, 1, 1))
    # OpenDP 0.16 under-reports this delta by one step of the threshold (opendp issue
    # #2922); the larger of its figure and the closed form above is what is reported.
    spent_delta = max(spent_delta, opendp_delta)
    sums = [dp.m.make_laplace(dp.vector_domain(dp.atom_domain(T=float, nan=False)),
                              dp.l1_distance(T=float), scale=bound / part)
            for _, bound in MEASURES.values()]
    # A user adds at most the measure's bound to one group's sum: l1 sensitivity = bound.
    spent = [count_eps] + [m.map(bound) for m, (_, bound) in zip(sums, MEASURES.values(),
                                                                 strict=True)]
    if math.fsum(spent) > epsilon * (1 + 1e-9):  # OpenDP's maps round up; never report less
        raise RuntimeError(f"the release would spend epsilon {math.fsum(spent)} > {epsilon}")
    charge(epsilon, spent_delta)  # durably, before any noise is drawn
    kept = counts({name: int(groups[key][0]) for name, key in names.items()})
    order = sorted(kept, key=lambda name: names[name])
    noisy = [m([groups[names[n]][1 + i] for n in order]) if order else []
             for i, m in enumerate(sums)]
    noisy_sums = [list(values) for values in zip(*noisy, strict=True)]
    rows = [_row(attributes, names[n], kept[n], s) for n, s in zip(order, noisy_sums,
                                                                    strict=True)]
    noise = {
        "mechanism": "laplace", "epsilon": epsilon, "epsilonPerValue": part,
        "delta": spent_delta,
        "guarantee": f"({epsilon:g}, {spent_delta:.3g})-differential privacy for adding or "
                     "removing one user (each user is in at most one row)",
        "library": "OpenDP " + _opendp_version(),
        "counts": {"mechanism": "discrete Laplace with a noisy threshold "
                                "(opendp make_laplace_threshold)",
                   "scale": scale, "threshold": threshold, "epsilon": count_eps,
                   "sensitivity": 1},
        "sums": {n: {"mechanism": "Laplace (opendp make_laplace)", "scale": b / part,
                     "epsilon": e, "sensitivity": b}
                 for (n, (_, b)), e in zip(MEASURES.items(), spent[1:], strict=True)},
        "composition": "epsilon split evenly over the count and the five sums (sequential); "
                       "rows are disjoint (parallel); the set of rows is chosen on noisy "
                       "counts",
    }
    return rows, noise


def _opendp_version() -> str:
    from importlib.metadata import version

    return version("opendp")


def build(conn: sqlite3.Connection, now: float, k: int, attributes: tuple[str, ...],
          epsilon: float | None = None, delta: float = DEFAULT_DELTA,
          charge: Charge = _free) -> tuple[list[dict], dict]:
    """The released rows and their metadata (nothing written): k-anonymous and exact without
    epsilon, (epsilon, delta)-differentially private with it."""
    groups = _groups(conn, now, attributes)
    if epsilon:
        released, noise = dp_rows(groups, k, attributes, epsilon, delta, charge)
        suppression = (f"combinations whose noisy count is under {noise['counts']['threshold']} "
                       f"(the larger of k = {k} and the threshold that delta asks for) are not "
                       "released; a released row's true count may be lower")
        guarantee = noise["guarantee"]
    else:
        charge(None, None)
        released = exact_rows(groups, k, attributes)
        noise = {"mechanism": "none", "epsilon": None}
        suppression = (f"combinations of fewer than {k} users are not released (checked on "
                       "the true count)")
        guarantee = (f"k-anonymity (k = {k}) of exact counts and means; not differentially "
                     "private")
    meta = {
        "createdAt": datetime.fromtimestamp(now, UTC).isoformat(timespec="seconds"),
        "k": k,
        "attributes": {a: ATTRIBUTES[a] for a in attributes},
        "measures": {name: desc for name, (desc, _) in MEASURES.items()},
        "rows": len(released),
        "population": "users with profiling consent whose latest event allowed sharing "
                      "(privacyFlags.canShare); days are UTC days",
        "guarantee": guarantee,
        "suppression": suppression,
        "noise": noise,
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
            attributes: tuple[str, ...], epsilon: float | None = None,
            delta: float = DEFAULT_DELTA, ledger: Ledger | None = None,
            requested_by: str | None = None) -> dict:
    """Build a dataset and write <id>.csv and <id>.json (atomically); return its description.

    With a ledger, the release is charged to the research scope before its noise is drawn
    (BudgetExceeded refuses it); the description carries the scope's new budget state.
    """
    dataset_id = "rd-" + datetime.fromtimestamp(now, UTC).strftime("%Y%m%dT%H%M%S") + "-" + \
        secrets.token_hex(4)
    budget: dict = {}

    def charge(spent_epsilon: float | None, spent_delta: float | None) -> None:
        if ledger is not None:
            budget.update(ledger.charge(RESEARCH_SCOPE, {
                "datasetId": dataset_id, "epsilon": spent_epsilon, "delta": spent_delta,
                "k": k, "attributes": list(attributes), "requestedBy": requested_by,
                "at": datetime.fromtimestamp(now, UTC).isoformat(timespec="seconds")}))

    rows, meta = build(conn, now, k, attributes, epsilon, delta, charge)
    meta = {"datasetId": dataset_id, **meta}
    if budget:
        meta["budget"] = {key: budget[key] for key in ("scope", "total", "spent", "remaining")}
    folder = research_dir(data_dir)
    folder.mkdir(parents=True, exist_ok=True)
    text = to_csv(rows, attributes)
    for name, content in ((f"{dataset_id}.csv", text),
                          (f"{dataset_id}.json", json.dumps(meta, indent=2) + "\n")):
        write_atomic(folder / name, content)
    return {"datasetId": dataset_id, "metadata": meta, "rows": rows, "csv": text,
            "files": {"csv": str(folder / f"{dataset_id}.csv"),
                      "metadata": str(folder / f"{dataset_id}.json")}}
