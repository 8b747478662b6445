"""The exported aggregates equal the truth of a synthetic population; what the rules publish
from them (tests/pulse/profiles/published.py) respects k."""

from __future__ import annotations

import statistics
from datetime import timedelta

import pytest

from pulse.profiles.aggregates import STEP_BUCKETS, compute
from pulse.profiles.store import DEFAULT_FUNNELS, ProfileStore
from tests.pulse.profiles.population import NOW, ONBOARDING, TODAY, event, population
from tests.pulse.profiles.published import histogram_quantile, published

K = 5
SALT = "test-salt-0123456789abcdef"


def samples(fams) -> dict:
    """What the rules publish from one process's families."""
    return published([fams], K)


def raw(fams) -> dict:
    return {(f.name, labels): value for f in fams for labels, value in f.samples}


def load(tmp_path, events, chunk=50) -> ProfileStore:
    store = ProfileStore(tmp_path / "p.db", SALT, clock=NOW.timestamp)
    for i in range(0, len(events), chunk):
        store.apply(store.project(events[i:i + chunk]))
    return store


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    users, events = population()
    store = load(tmp_path_factory.mktemp("pop"), events)
    fams = compute(store.conn, NOW.timestamp(), DEFAULT_FUNNELS)
    return users, events, store, {**samples(fams), **raw(fams)}


def iso(day) -> str:
    y, w, _ = day.isocalendar()
    return f"{y}-W{w:02d}"


def test_distinct_active_users_by_platform_and_in_total(world):
    users, _, _, out = world
    for window, n in (("1d", 1), ("7d", 7), ("30d", 30)):
        since = TODAY - timedelta(days=n - 1)
        for platform in ("ios", "android", "web", "all"):
            truth = sum(1 for u in users if any(
                d >= since and (platform == "all" or platform in p) for d, p in u.active.items()))
            got = out.get(("fitness_active_users", (window, platform)))
            assert got == (truth if truth == 0 or truth >= K else None), (window, platform)
    # A user on two platforms counts once in "all" and once per platform.
    multi = [u for u in users if len(set().union(*u.active.values())) > 1]
    assert multi
    assert out[("fitness_active_users", ("30d", "all"))] < sum(
        out.get(("fitness_active_users", ("30d", p)), 0) for p in ("ios", "android", "web"))


def test_weekly_cohort_retention_is_exact(world):
    users, _, _, out = world
    monday = TODAY - timedelta(days=TODAY.weekday())
    checked = 0
    for c in range(12):
        start = monday - timedelta(weeks=c)
        cohort = [u for u in users if start <= min(u.active) < start + timedelta(weeks=1)]
        label = iso(start)
        if len(cohort) < K:
            assert ("fitness_cohort_users", (label,)) not in out
            continue
        assert out[("fitness_cohort_users", (label,))] == len(cohort)
        for w in range(c + 1):
            lo = start + timedelta(weeks=w)
            kept = sum(1 for u in cohort if any(lo <= d < lo + timedelta(weeks=1)
                                                for d in u.active))
            got = out.get(("fitness_cohort_retention_ratio", (label, str(w))))
            if 0 < kept < K:
                assert got is None
            else:
                assert got == pytest.approx(kept / len(cohort), abs=1e-12), (label, w)
                checked += 1
        assert out[("fitness_cohort_retention_ratio", (label, "0"))] == 1.0
    assert checked >= 20
    assert not any(name == "fitness_cohort_retention_ratio" and int(lbl[1]) > 11
                   for name, lbl in out)


def test_funnel_conversion_and_median_step_time_are_exact(world):
    users, _, _, out = world
    since = NOW.replace(hour=0, minute=0, second=0) - timedelta(days=29)
    entered = [u for u in users if 0 in u.funnel and u.funnel[0] >= since]
    assert len(entered) >= K
    for s, step in enumerate(ONBOARDING):
        reached = [u for u in entered if s in u.funnel]
        got = out.get(("fitness_funnel_conversion_ratio", ("onboarding", step)))
        if 0 < len(reached) < K:
            assert got is None
        else:
            assert got == pytest.approx(len(reached) / len(entered), abs=1e-12), step
        if s:
            gaps = [(u.funnel[s] - u.funnel[s - 1]).total_seconds() for u in reached]
            counts, total = out[("pulse_profiles_funnel_step_seconds", ("onboarding", step))]
            # The histogram is exact; the published median is its estimate, in the
            # bucket that holds the true median.
            assert counts == [sum(1 for g in gaps if g <= le) for le in STEP_BUCKETS] + [
                len(gaps)]
            assert total == pytest.approx(sum(gaps))
            got = out.get(("fitness_funnel_step_median_seconds", ("onboarding", step)))
            if len(gaps) < K:
                assert got is None
                continue
            assert got == histogram_quantile(0.5, STEP_BUCKETS, counts)
            median = statistics.median(gaps)
            i = next((i for i, le in enumerate(STEP_BUCKETS) if median <= le), None)
            if i is not None:
                assert (STEP_BUCKETS[i - 1] if i else 0) <= got <= STEP_BUCKETS[i], step


def test_stickiness_and_subscriptions(world):
    users, _, _, out = world
    dau = sum(1 for u in users if TODAY in u.active)
    mau = sum(1 for u in users if any(d > TODAY - timedelta(days=30) for d in u.active))
    assert out[("fitness_stickiness_ratio", ())] == pytest.approx(dau / mau)
    assert out[("business_subscriptions_active", ("monthly",))] == sum(
        1 for u in users if u.plan == "monthly")


def test_streaks_segments_and_churn_are_exact(world):
    users, _, _, out = world
    month = [u for u in users if max(u.active) > TODAY - timedelta(days=30)]
    truth: dict[str, int] = {}
    for u in month:
        streak, day = 0, max(u.active)
        if day >= TODAY - timedelta(days=1):
            while day in u.active:
                streak, day = streak + 1, day - timedelta(days=1)
        label = next(lbl for hi, lbl in ((0, "0"), (1, "1"), (3, "2-3"), (7, "4-7"),
                                         (14, "8-14"), (29, "15-29"), (10**6, "30+"))
                     if streak <= hi)
        truth[label] = truth.get(label, 0) + 1
    for label in ("0", "1", "2-3", "4-7", "8-14", "15-29", "30+"):
        n = truth.get(label, 0)
        assert out.get(("fitness_streak_users", (label,))) == (n if n == 0 or n >= K else None)
    assert truth.get("8-14", 0) + truth.get("15-29", 0) + truth.get("30+", 0) >= K
    segments: dict[tuple, int] = {}
    for u in users:
        days = sum(1 for d in u.active if d > TODAY - timedelta(days=30))
        level = "high" if days >= 12 else "medium" if days >= 4 else "low" if days else "dormant"
        key = (level, u.plan or "free", "none")
        segments[key] = segments.get(key, 0) + 1
    got = {lbl: v for (name, lbl), v in out.items() if name == "fitness_segment_users"}
    assert got == {key: n for key, n in segments.items() if n >= K}
    for n in (7, 14, 30):
        idle = sum(1 for u in users
                   if n <= (TODAY - max(u.active)).days < 90)
        assert out.get(("fitness_churn_risk_users", (str(n),))) == (
            idle if idle == 0 or idle >= K else None)


def test_coaches_under_k_are_not_exported(world):
    users, _, _, out = world
    coaches = {name[1][0] for name in out if name[0].startswith("fitness_coach_")}
    assert coaches == {"coach-a", "coach-b"}
    since = TODAY - timedelta(days=6)
    for coach in coaches:
        truth = sum(1 for u in users if u.coach == coach and max(u.active) >= since)
        assert out[("fitness_coach_clients_active", (coach,))] == truth


def test_no_exported_group_describes_fewer_than_k_users(world):
    _, _, _, out = world
    counts = {"fitness_active_users", "fitness_cohort_users", "fitness_segment_users",
              "fitness_streak_users", "fitness_churn_risk_users", "business_subscriptions_active",
              "fitness_coach_clients_active"}
    for (name, labels), value in out.items():
        if name in counts:
            assert value == 0 or value >= K, (name, labels, value)
    assert any(name == "fitness_segment_users" for name, _ in out)


def test_small_groups_vanish_and_large_ones_appear(tmp_path):
    # k-1 users of one coach, goal and cohort: nothing about them is exported.
    few = [event(f"x{i}", NOW - timedelta(hours=1), "goal", "set",
                 props={"goalCategory": "sleep", "coachId": "coach-z"}) for i in range(K - 1)]
    store = load(tmp_path, few)
    out = samples(compute(store.conn, NOW.timestamp(), DEFAULT_FUNNELS))
    assert all(v == 0 for v in out.values()), out
    store.apply(store.project([event("x-last", NOW - timedelta(hours=1), "goal", "set",
                                      props={"goalCategory": "sleep", "coachId": "coach-z"})]))
    out = samples(compute(store.conn, NOW.timestamp(), DEFAULT_FUNNELS))
    assert out[("fitness_active_users", ("1d", "all"))] == K
    assert out[("fitness_segment_users", ("low", "free", "sleep"))] == K
    assert out[("fitness_coach_clients_active", ("coach-z",))] == K
    assert out[("fitness_coach_goal_progress_ratio", ("coach-z",))] == 0.0
