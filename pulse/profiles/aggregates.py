"""The bounded, k-anonymous aggregates of the profile store (what Prometheus gets).

`compute(conn, now, k, funnels)` reads every record once (and the funnel steps of users who
entered a funnel in the last 30 days) and returns metric families as plain data. Every group
that describes between 1 and k-1 users is left out (not exported at all); an empty group of
a fixed-shape family (e.g. no active user on android) is exported as 0, as it describes nobody.
Days are UTC days; weeks are ISO weeks (Monday first).
"""

from __future__ import annotations

import sqlite3
import statistics
from dataclasses import dataclass, field
from datetime import date, timedelta

from pulse.profiles.store import DAY, PLANS, week_of

WINDOWS = (("1d", 1), ("7d", 7), ("30d", 30))
PLATFORM_OF_COLUMN = (("ios", 4), ("android", 5), ("web", 6))
COHORTS = 12  # the last 12 weekly cohorts, each followed for 12 weeks
STREAK_BUCKETS = ((0, "0"), (1, "1"), (3, "2-3"), (7, "4-7"), (14, "8-14"), (29, "15-29"),
                  (None, "30+"))
ENGAGEMENT = ((12, "high"), (4, "medium"), (1, "low"), (0, "dormant"))
CHURN_DAYS = (7, 14, 30)
CHURN_LOOKBACK = 90  # churn risk counts users active in the last 90 days
FUNNEL_WINDOW = 30  # funnels: users who entered in the last 30 days
COACH_ACTIVE_DAYS = 7
EPOCH_MONDAY = date(1969, 12, 29)  # week_of(day) counts weeks from this Monday

# Per-user derived values, in SQL: `off` = days since the last activity (never negative),
# `recent` = active days of the last 30 (a 30-bit popcount of the day bitmap, SWAR style).
_OFF = "MAX(0, :t - last_day)"
_RECENT = f"""
  SELECT plan, goal, ((x3 * 16843009) >> 24) & 255 AS recent FROM (
   SELECT plan, goal, (x2 + (x2 >> 4)) & 252645135 AS x3 FROM (
    SELECT plan, goal, (x1 & 858993459) + ((x1 >> 2) & 858993459) AS x2 FROM (
     SELECT plan, goal, x - ((x >> 1) & 1431655765) AS x1 FROM (
      SELECT plan, goal,
             CASE WHEN last_day IS NULL OR {_OFF} >= 30 THEN 0
                  ELSE days & ((1 << (30 - {_OFF})) - 1) END AS x
      FROM users))))"""
SEGMENTS_SQL = f"""
SELECT CASE WHEN recent >= 12 THEN 'high' WHEN recent >= 4 THEN 'medium'
            WHEN recent >= 1 THEN 'low' ELSE 'dormant' END AS engagement,
       COALESCE(plan, 'free'), COALESCE(goal, 'none'), COUNT(*)
FROM ({_RECENT}) GROUP BY 1, 2, 3"""
_ACTIVE = ", ".join(
    f"SUM(last_day > :t - {n}), SUM(last_ios > :t - {n}), SUM(last_android > :t - {n}), "
    f"SUM(last_web > :t - {n})" for n in (1, 7, 30))
_CHURN = ", ".join(f"SUM(last_day IS NOT NULL AND {_OFF} < 90 AND {_OFF} >= {n})"
                   for n in (7, 14, 30))
_RUN = f"last_day IS NOT NULL AND {_OFF} <= 1"  # active today or yesterday: a current streak
_AT_LEAST = (1, 2, 4, 8, 15, 30)  # lower ends of the buckets 1, 2-3, 4-7, 8-14, 15-29, 30+


def _streak_at_least(n: int) -> str:
    return f"days & {(1 << n) - 1} = {(1 << n) - 1}"  # the last n days are all active


_STREAK = ", ".join(
    [f"SUM(last_day IS NOT NULL AND {_OFF} < 30 AND {_OFF} > 1)"]
    + [f"SUM({_RUN} AND {_streak_at_least(lo)}"
       + (f" AND NOT {_streak_at_least(hi)})" if hi else ")")
       for lo, hi in zip(_AT_LEAST, (*_AT_LEAST[1:], None), strict=True)])
TOTALS_SQL = f"SELECT {_ACTIVE}, {_CHURN}, {_STREAK} FROM users"
COHORTS_SQL = "SELECT (first_day + 3) / 7 AS cw, COUNT(*), " + ", ".join(
    f"SUM((weeks >> {w}) & 1)" for w in range(12)) + """
FROM users WHERE first_day IS NOT NULL AND (first_day + 3) / 7 > :w - :c
  AND (first_day + 3) / 7 <= :w GROUP BY cw"""
COACHES_SQL = """
SELECT coach, COUNT(*), SUM(last_day IS NOT NULL AND MAX(0, :t - last_day) < 7),
       SUM(started > 0), SUM(started), SUM(CASE WHEN started > 0 THEN completed ELSE 0 END),
       SUM(progress), COUNT(progress), SUM(ai_shown > 0), SUM(ai_shown),
       SUM(CASE WHEN ai_shown > 0 THEN ai_accepted ELSE 0 END)
FROM users WHERE coach IS NOT NULL GROUP BY coach"""


@dataclass
class Family:
    """One gauge family: name, help, label names and (label values, value) samples."""

    name: str
    help: str
    labels: tuple[str, ...] = ()
    samples: list[tuple[tuple[str, ...], float]] = field(default_factory=list)


def cohort_label(week: int) -> str:
    """ISO year-week (e.g. 2026-W48) of a Monday-based week number."""
    iso = (EPOCH_MONDAY + timedelta(weeks=week)).isocalendar()
    return f"{iso[0]}-W{iso[1]:02d}"


def engagement_level(active_days_30: int) -> str:
    """high (12+ active days of the last 30), medium (4-11), low (1-3), dormant (0)."""
    for floor, label in ENGAGEMENT:
        if active_days_30 >= floor:
            return label
    return "dormant"


def compute(conn: sqlite3.Connection, now: float, k: int, funnels: dict,
            max_coaches: int = 1000) -> list[Family]:
    """Every exported family, from one consistent read of the store."""
    today = int(now // DAY)
    this_week = week_of(today)
    active = {(w, p): 0 for w, _ in WINDOWS for p in ("ios", "android", "web", "all")}
    cohort_size: dict[int, int] = {}
    retained: dict[tuple[int, int], int] = {}
    streaks: dict[str, int] = {label: 0 for _, label in STREAK_BUCKETS}
    segments: dict[tuple[str, str, str], int] = {}
    churn = dict.fromkeys(CHURN_DAYS, 0)
    subs = dict.fromkeys(PLANS, 0)
    coaches: dict[str, list] = {}
    # The scans run inside SQLite (which releases the GIL), so a refresh of a large store
    # does not stall the intake's request threads; Python only sees the grouped results.
    params = {"t": today, "w": this_week, "c": COHORTS}
    conn.execute("BEGIN")
    try:
        totals = conn.execute(TOTALS_SQL, params).fetchone()
        cohort_rows = conn.execute(COHORTS_SQL, params).fetchall()
        segment_rows = conn.execute(SEGMENTS_SQL, params).fetchall()
        coach_rows = conn.execute(COACHES_SQL, params).fetchall()
        funnel_rows = conn.execute(
            "SELECT f.uid, f.funnel, f.step, f.ts FROM funnel s JOIN funnel f "
            "ON f.uid = s.uid AND f.funnel = s.funnel WHERE s.step = 0 AND s.ts >= ? "
            "ORDER BY f.uid", ((today - FUNNEL_WINDOW + 1) * DAY,)).fetchall()
    finally:
        conn.execute("COMMIT")
    values = iter(v or 0 for v in totals)
    for window, _ in WINDOWS:
        for platform in ("all", "ios", "android", "web"):
            active[(window, platform)] = next(values)
    for n in CHURN_DAYS:
        churn[n] = next(values)
    for _, label in STREAK_BUCKETS:
        streaks[label] = next(values)
    for cw, size, *kept in cohort_rows:
        cohort_size[cw] = size
        for w, n in enumerate(kept):
            if w <= this_week - cw and n:
                retained[(cw, w)] = n
    for engagement, plan, goal, n in segment_rows:
        segments[(engagement, plan, goal)] = n
        if plan in subs:
            subs[plan] += n
    for coach, *acc in coach_rows:
        coaches[coach] = [v or 0 for v in acc]

    def shown(n: int) -> bool:
        return n == 0 or n >= k

    fams = []
    f = Family("fitness_active_users",
               "Distinct profiled users active in the trailing 1, 7 or 30 UTC days, by platform "
               "(platform=all counts a user on several platforms once).", ("window", "platform"))
    f.samples = [((w, p), float(n)) for (w, p), n in active.items() if shown(n)]
    fams.append(f)
    dau, mau = active[("1d", "all")], active[("30d", "all")]
    f = Family("fitness_stickiness_ratio", "Daily over monthly active users (DAU/MAU).")
    if mau >= k and shown(dau):
        f.samples = [((), dau / mau)]
    fams.append(f)
    f = Family("fitness_cohort_users", "Users first active in each of the last 12 ISO weeks.",
               ("cohort",))
    r = Family("fitness_cohort_retention_ratio",
               "Share of a weekly cohort active in its week 0..11 (week 0 is the first week).",
               ("cohort", "week"))
    for cw, size in sorted(cohort_size.items()):
        if size < k:
            continue
        f.samples.append(((cohort_label(cw),), float(size)))
        for w in range(this_week - cw + 1):
            n = retained.get((cw, w), 0)
            if shown(n):
                r.samples.append(((cohort_label(cw), str(w)), n / size))
    fams += [f, r]
    f = Family("fitness_segment_users",
               "Profiled users by engagement level (active days of the last 30), plan and goal "
               "category.", ("engagement", "plan", "goal_category"))
    f.samples = [(key, float(n)) for key, n in sorted(segments.items()) if n >= k]
    fams.append(f)
    f = Family("fitness_streak_users",
               "Users active in the last 30 days by current streak of consecutive active days.",
               ("streak",))
    f.samples = [((label,), float(n)) for label, n in streaks.items() if shown(n)]
    fams.append(f)
    f = Family("fitness_churn_risk_users",
               "Users active in the last 90 days but not in the last 7, 14 or 30 days.",
               ("inactive_days",))
    f.samples = [((str(n),), float(v)) for n, v in churn.items() if shown(v)]
    fams.append(f)
    f = Family("business_subscriptions_active",
               "Profiled users whose current plan is paid, by plan.", ("plan",))
    f.samples = [((plan,), float(n)) for plan, n in subs.items() if shown(n)]
    fams.append(f)
    fams += _funnels(funnel_rows, funnels, k)
    fams += _coaches(coaches, k, max_coaches)
    return fams


def _funnels(rows: list, funnels: dict, k: int) -> list[Family]:
    conv = Family("fitness_funnel_conversion_ratio",
                  "Share of the users who entered the funnel (first step) in the last 30 days "
                  "who reached the step.", ("funnel", "step"))
    med = Family("fitness_funnel_step_median_seconds",
                 "Median time from the previous step to this one, over users who reached both.",
                 ("funnel", "step"))
    reached: dict[tuple[str, int], int] = {}
    gaps: dict[tuple[str, int], list[float]] = {}
    user, steps = None, {}

    def flush():
        for (funnel, step), ts in steps.items():
            reached[(funnel, step)] = reached.get((funnel, step), 0) + 1
            before = steps.get((funnel, step - 1))
            if step > 0 and before is not None and ts >= before:
                gaps.setdefault((funnel, step), []).append(ts - before)

    for uid, funnel, step, ts in rows:
        if uid != user:
            flush()
            user, steps = uid, {}
        steps[(funnel, step)] = ts
    flush()
    for funnel, names in funnels.items():
        entered = reached.get((funnel, 0), 0)
        if entered < k:
            continue
        for i, name in enumerate(names):
            n = reached.get((funnel, i), 0)
            if n == 0 or n >= k:
                conv.samples.append(((funnel, name), n / entered))
            times = gaps.get((funnel, i), [])
            if len(times) >= k:
                med.samples.append(((funnel, name), float(statistics.median(times))))
    return [conv, med]


def _coaches(coaches: dict[str, list], k: int, max_coaches: int) -> list[Family]:
    active = Family("fitness_coach_clients_active",
                    "Clients of the coach active in the last 7 days.", ("coach",))
    completion = Family("fitness_coach_workout_completion_ratio",
                        "Completed over started workouts of the coach's clients.", ("coach",))
    progress = Family("fitness_coach_goal_progress_ratio",
                      "Mean progress (0-1) of the coach's clients towards their current goal.",
                      ("coach",))
    ai = Family("fitness_coach_ai_acceptance_ratio",
                "Accepted over all AI recommendation outcomes of the coach's clients.",
                ("coach",))
    eligible = sorted(((c, v) for c, v in coaches.items() if v[0] >= k),
                      key=lambda item: (-item[1][0], item[0]))[:max_coaches]
    for coach, (_clients, act, n_started, started, completed, prog, n_prog, n_ai, shown,
                accepted) in sorted(eligible):
        if act == 0 or act >= k:
            active.samples.append(((coach,), float(act)))
        if n_started >= k:
            completion.samples.append(((coach,), min(1.0, completed / started)))
        if n_prog >= k:
            progress.samples.append(((coach,), prog / n_prog))
        if n_ai >= k:
            ai.samples.append(((coach,), accepted / shown))
    return [active, completion, progress, ai]
