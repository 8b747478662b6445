"""What rules/profiles.rules.yml publishes, computed in Python: the tests' reference.

`published([families of process 1, families of process 2, ...], k)` sums each additive
family over the processes, then suppresses and divides as the recording rules do (and
estimates the median as Prometheus's histogram_quantile does). It runs in no process of
Pulse: tests/exporters/events/test_profiles_sum.py shows that a real Prometheus loading the
rules gives exactly these series, so unit tests may read them from here.
"""

from __future__ import annotations

import math

from pulse.profiles.aggregates import Family


def summed(processes: list[list[Family]]) -> dict[str, dict[tuple, object]]:
    """name -> labels -> the sum over the processes (histograms: cells summed)."""
    out: dict[str, dict[tuple, object]] = {}
    for fams in processes:
        for fam in fams:
            series = out.setdefault(fam.name, {})
            for labels, value in fam.samples:
                if fam.kind == "gaugehistogram":
                    counts, total = value
                    have = series.get(labels)
                    series[labels] = (counts, total) if have is None else (
                        [a + b for a, b in zip(have[0], counts, strict=True)], have[1] + total)
                else:
                    series[labels] = series.get(labels, 0.0) + value
    return out


def histogram_quantile(q: float, bounds: tuple[float, ...], counts: list[float]) -> float:
    """Prometheus's estimate from cumulative bucket counts (the last one is +Inf)."""
    rank = q * counts[-1]
    if counts[-1] == 0:
        return math.nan
    b = next((i for i in range(len(counts) - 1) if counts[i] >= rank), len(counts) - 1)
    if b == len(counts) - 1:
        return bounds[-1]
    start, count = 0.0, counts[b]
    if b > 0:
        start = bounds[b - 1]
        count -= counts[b - 1]
        rank -= counts[b - 1]
    return start + (bounds[b] - start) * (rank / count)


def published(processes: list[list[Family]], k: int) -> dict[tuple[str, tuple], float]:
    """(name, labels) -> value of every series the rules record from these processes."""
    s = summed(processes)
    fams = {f.name: f for fams in processes for f in fams}
    out: dict[tuple[str, tuple], float] = {}

    def shown(n: float) -> bool:
        return n == 0 or n >= k

    def copy(raw: str, name: str, zero_ok: bool = True) -> None:
        for labels, n in s.get(raw, {}).items():
            if n >= k or (zero_ok and n == 0):
                out[(name, labels)] = n

    copy("pulse_profiles_active_users", "fitness_active_users")
    dau = out.get(("fitness_active_users", ("1d", "all")))
    mau = out.get(("fitness_active_users", ("30d", "all")))
    if dau is not None and mau:
        out[("fitness_stickiness_ratio", ())] = dau / mau
    copy("pulse_profiles_cohort_users", "fitness_cohort_users", zero_ok=False)
    for (cohort, week), n in s.get("pulse_profiles_cohort_retained_users", {}).items():
        size = out.get(("fitness_cohort_users", (cohort,)))
        if size and shown(n):
            out[("fitness_cohort_retention_ratio", (cohort, week))] = n / size
    copy("pulse_profiles_segment_users", "fitness_segment_users", zero_ok=False)
    copy("pulse_profiles_streak_users", "fitness_streak_users")
    copy("pulse_profiles_churn_risk_users", "fitness_churn_risk_users")
    copy("pulse_profiles_subscriptions_active", "business_subscriptions_active")
    entered = s.get("pulse_profiles_funnel_entered_users", {})
    for (funnel, step), n in s.get("pulse_profiles_funnel_users", {}).items():
        if entered.get((funnel,), 0) >= k and shown(n):
            out[("fitness_funnel_conversion_ratio", (funnel, step))] = n / entered[(funnel,)]
    times = fams.get("pulse_profiles_funnel_step_seconds")
    for (funnel, step), (counts, _) in s.get("pulse_profiles_funnel_step_seconds", {}).items():
        if entered.get((funnel,), 0) >= k and counts[-1] >= k:
            out[("fitness_funnel_step_median_seconds", (funnel, step))] = histogram_quantile(
                0.5, times.buckets, counts)
    clients = s.get("pulse_profiles_coach_clients", {})

    def coach(name: str) -> dict:
        return s.get(f"pulse_profiles_coach_{name}", {})

    for labels, n in clients.items():
        if n < k:
            continue
        active = coach("clients_active")[labels]
        if shown(active):
            out[("fitness_coach_clients_active", labels)] = active
        if coach("clients_started")[labels] >= k:
            out[("fitness_coach_workout_completion_ratio", labels)] = min(
                1.0, coach("workouts_completed")[labels] / coach("workouts_started")[labels])
        if coach("clients_with_goal")[labels] >= k:
            out[("fitness_coach_goal_progress_ratio", labels)] = (
                coach("goal_progress_sum")[labels] / coach("clients_with_goal")[labels])
        if coach("clients_with_ai")[labels] >= k:
            out[("fitness_coach_ai_acceptance_ratio", labels)] = (
                coach("ai_accepted")[labels] / coach("ai_recommendations")[labels])
    return out
