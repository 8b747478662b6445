"""The bounded aggregates of the profile store (what Prometheus scrapes), all additive.

`compute(conn, now, funnels)` reads every record once (and the funnel steps of users who
entered a funnel in the last 30 days) and returns metric families as plain data: counts of
users, sums and histograms only, never a ratio, a median or a k-anonymity cut. With the
JetStream log every aggregator exports the families of its own partitions (a user lives in
one), so Prometheus's `sum` of a family over the processes is the global count; the
published k-anonymous series (`PUBLISHED`, docs/profiles.md: fitness_active_users,
fitness_stickiness_ratio, ...) are recording rules over those sums (rules/profiles.rules.yml),
which suppress every group of 1 to k-1 users where the global count is known. The single
process (local log) exports the same families, so both give identical published series.
Days are UTC days; weeks are ISO weeks (Monday first).
"""

from __future__ import annotations

import sqlite3
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
    """One gauge family: name, help, label names and (label values, value) samples.

    kind "gaugehistogram": each sample's value is (cumulative bucket counts in the order of
    `buckets`, then +Inf; sum of the observations).
    """

    name: str
    help: str
    labels: tuple[str, ...] = ()
    samples: list[tuple[tuple[str, ...], object]] = field(default_factory=list)
    kind: str = "gauge"
    buckets: tuple[float, ...] = ()


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


def compute(conn: sqlite3.Connection, now: float, funnels: dict,
            max_coaches: int = 1000) -> list[Family]:
    """Every exported (additive) family, from one consistent read of the store."""
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

    fams = []
    f = Family("pulse_profiles_active_users",
               "Distinct profiled users active in the trailing 1, 7 or 30 UTC days, by platform "
               "(platform=all counts a user on several platforms once); not k-anonymous.",
               ("window", "platform"))
    f.samples = [((w, p), float(n)) for (w, p), n in active.items()]
    fams.append(f)
    f = Family("pulse_profiles_cohort_users",
               "Users first active in each of the last 12 ISO weeks; not k-anonymous.",
               ("cohort",))
    r = Family("pulse_profiles_cohort_retained_users",
               "Users of a weekly cohort active in its week 0..11 (week 0 is the first week); "
               "not k-anonymous.", ("cohort", "week"))
    for cw, size in sorted(cohort_size.items()):
        f.samples.append(((cohort_label(cw),), float(size)))
        for w in range(this_week - cw + 1):
            r.samples.append(((cohort_label(cw), str(w)), float(retained.get((cw, w), 0))))
    fams += [f, r]
    f = Family("pulse_profiles_segment_users",
               "Profiled users by engagement level (active days of the last 30), plan and goal "
               "category; not k-anonymous.", ("engagement", "plan", "goal_category"))
    f.samples = [(key, float(n)) for key, n in sorted(segments.items()) if n]
    fams.append(f)
    f = Family("pulse_profiles_streak_users",
               "Users active in the last 30 days by current streak of consecutive active days; "
               "not k-anonymous.", ("streak",))
    f.samples = [((label,), float(n)) for label, n in streaks.items()]
    fams.append(f)
    f = Family("pulse_profiles_churn_risk_users",
               "Users active in the last 90 days but not in the last 7, 14 or 30 days; not "
               "k-anonymous.", ("inactive_days",))
    f.samples = [((str(n),), float(v)) for n, v in churn.items()]
    fams.append(f)
    f = Family("pulse_profiles_subscriptions_active",
               "Profiled users whose current plan is paid, by plan; not k-anonymous.", ("plan",))
    f.samples = [((plan,), float(n)) for plan, n in subs.items()]
    fams.append(f)
    fams += _funnels(funnel_rows, funnels)
    fams += _coaches(coaches, max_coaches)
    return fams


# Upper bounds (seconds) of the funnel step-time histogram: a minute to a month.
STEP_BUCKETS = (60.0, 300.0, 900.0, 1800.0, 3600.0, 7200.0, 21600.0, 43200.0, 86400.0,
                172800.0, 259200.0, 604800.0, 1209600.0, 2592000.0)


def _funnels(rows: list, funnels: dict) -> list[Family]:
    entered_f = Family("pulse_profiles_funnel_entered_users",
                       "Users who entered the funnel (its first step) in the last 30 days; not "
                       "k-anonymous.", ("funnel",))
    reached_f = Family("pulse_profiles_funnel_users",
                       "Of the users who entered the funnel in the last 30 days, those who "
                       "reached the step; not k-anonymous.", ("funnel", "step"))
    times_f = Family("pulse_profiles_funnel_step_seconds",
                     "Time from the previous step to this one, over users who reached both "
                     "in order (a gauge histogram); not k-anonymous.", ("funnel", "step"),
                     kind="gaugehistogram", buckets=STEP_BUCKETS)
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
        entered_f.samples.append(((funnel,), float(reached.get((funnel, 0), 0))))
        for i, name in enumerate(names):
            reached_f.samples.append(((funnel, name), float(reached.get((funnel, i), 0))))
            if i == 0:
                continue
            times = gaps.get((funnel, i), [])
            counts = [float(sum(1 for t in times if t <= le)) for le in STEP_BUCKETS]
            times_f.samples.append(((funnel, name), (counts + [float(len(times))],
                                                     float(sum(times)))))
    return [entered_f, reached_f, times_f]


# The coach families, in the order of COACHES_SQL's columns after the coach.
COACH_FAMILIES = (
    ("pulse_profiles_coach_clients", "Clients of the coach."),
    ("pulse_profiles_coach_clients_active", "Clients of the coach active in the last 7 days."),
    ("pulse_profiles_coach_clients_started", "Clients of the coach who started a workout."),
    ("pulse_profiles_coach_workouts_started", "Workouts the coach's clients started."),
    ("pulse_profiles_coach_workouts_completed",
     "Workouts completed by the coach's clients who started one."),
    ("pulse_profiles_coach_goal_progress_sum",
     "Sum of the progress (0-1) of the coach's clients towards their current goal."),
    ("pulse_profiles_coach_clients_with_goal", "Clients of the coach with a current goal."),
    ("pulse_profiles_coach_clients_with_ai",
     "Clients of the coach who were shown an AI recommendation."),
    ("pulse_profiles_coach_ai_recommendations", "AI recommendation outcomes of the clients."),
    ("pulse_profiles_coach_ai_accepted",
     "Accepted AI recommendations of the clients who were shown one."),
)


# The scraped coach families name the coach in `coach_id`, not `coach`: a coach's scoped
# queries (bridge.services.promql_scope adds coach="<id>" to every selector) then never
# reach these partial, not k-anonymous counts, only the published fitness_coach_* series.
RAW_COACH_LABEL = "coach_id"


def _coaches(coaches: dict[str, list], max_coaches: int) -> list[Family]:
    fams = [Family(name, f"{text} Not k-anonymous.", (RAW_COACH_LABEL,))
            for name, text in COACH_FAMILIES]
    # The cap bounds this process's series (most clients first); the k cut is the rules'.
    kept = sorted(coaches.items(), key=lambda item: (-item[1][0], item[0]))[:max_coaches]
    for coach, values in sorted(kept):
        for fam, value in zip(fams, values, strict=True):
            fam.samples.append(((coach,), float(value)))
    return fams


# The published, k-anonymous series the recording rules of rules/profiles.rules.yml derive
# from the sums of the families above (name -> labels): what dashboards, reports and the
# bridge's catalogue read.
PUBLISHED: dict[str, tuple[str, ...]] = {
    "fitness_active_users": ("window", "platform"),
    "fitness_stickiness_ratio": (),
    "fitness_cohort_users": ("cohort",),
    "fitness_cohort_retention_ratio": ("cohort", "week"),
    "fitness_segment_users": ("engagement", "plan", "goal_category"),
    "fitness_streak_users": ("streak",),
    "fitness_churn_risk_users": ("inactive_days",),
    "business_subscriptions_active": ("plan",),
    "fitness_funnel_conversion_ratio": ("funnel", "step"),
    "fitness_funnel_step_median_seconds": ("funnel", "step"),
    "fitness_coach_clients_active": ("coach",),
    "fitness_coach_workout_completion_ratio": ("coach",),
    "fitness_coach_goal_progress_ratio": ("coach",),
    "fitness_coach_ai_acceptance_ratio": ("coach",),
}
K_GAUGE = "pulse_profiles_k_anonymity"
