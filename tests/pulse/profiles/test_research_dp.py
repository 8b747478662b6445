"""The DP research release does what its metadata says: noise at the stated scale, and a
combination of one user released with probability at most the stated delta.

OpenDP draws its noise from a CSPRNG seeded by the system and cannot be seeded, so these
tests are not seeded: each bound sits at least 5 standard deviations from the expected
value, a chance of a spurious failure under 1e-6 per run.
"""

from __future__ import annotations

import math

import pytest

from pulse.profiles.research import MEASURES, count_threshold, dp_rows

ATTRS = ("goal_category",)


def _lone_users(n: int) -> dict[tuple, list[float]]:
    return {(f"g{i}",): [1.0, 30.0, 60.0, 1.0, 1.0, 1.0] for i in range(n)}


def test_a_group_of_one_user_is_released_with_probability_at_most_delta():
    # epsilon 6 puts scale 1 on the counts: a threshold of a few users, so the rare event
    # is frequent enough to count in one release of many one-user groups.
    n, delta = 200_000, 1e-3
    charged = []
    rows, noise = dp_rows(_lone_users(n), 2, ATTRS, 6.0, delta,
                          lambda e, d: charged.append((e, d)))
    assert charged == [(6.0, noise["delta"])]
    spent = noise["delta"]
    assert spent <= delta
    expected, sd = n * spent, math.sqrt(n * spent * (1 - spent))
    assert len(rows) <= expected + 5 * sd
    # The stated delta is the true chance, not a loose bound: the release rate is close to
    # it (OpenDP 0.16's own figure, one threshold step smaller, would be e times too low).
    assert len(rows) >= expected - 5 * sd
    assert all(r["users"] >= noise["counts"]["threshold"] for r in rows)


def test_the_threshold_follows_delta_and_k():
    t, d = count_threshold(1.0, 1e-3, 2)
    a = math.exp(-1.0)
    assert a ** (t - 1) / (1 + a) == pytest.approx(d) and d <= 1e-3
    assert a ** (t - 2) / (1 + a) > 1e-3  # the smallest such threshold
    t_k, d_k = count_threshold(1.0, 1e-3, 50)
    assert t_k == 50 and d_k < d


def test_noise_scale_matches_epsilon():
    n, epsilon, users = 20_000, 1.0, 10_000
    means = {"active_days_30_mean": 15.0, "workouts_completed_mean": 30.0,
             "workout_completion_mean": 0.5, "goal_achieved_share": 0.5,
             "ai_acceptance_mean": 0.5}
    groups = {(f"g{i}",): [float(users)] + [m * users for m in means.values()]
              for i in range(n)}
    rows, noise = dp_rows(groups, 5, ATTRS, epsilon, 1e-6)
    assert len(rows) == n  # 10,000 users are far above any threshold
    part = epsilon / (1 + len(MEASURES))
    assert noise["epsilonPerValue"] == pytest.approx(part)
    assert noise["counts"]["epsilon"] + sum(s["epsilon"] for s in noise["sums"].values()) \
        == pytest.approx(epsilon)
    # Counts: discrete Laplace with scale 1/part, E|Z| = 2a/(1-a^2), sd(|Z|) about that.
    scale = 1 / part
    a = math.exp(-1 / scale)
    mad = sum(abs(r["users"] - users) for r in rows) / n
    assert mad == pytest.approx(2 * a / (1 - a * a), rel=5 / math.sqrt(n))
    # Sums: Laplace with scale bound/part, E|L| = scale and sd(|L|) = scale. A row's noisy
    # sum is its mean times its noisy count (the 4-decimal rounding is far below the noise).
    for name, (_, bound) in MEASURES.items():
        noisy = [r[name] * r["users"] - means[name] * users for r in rows]
        assert noise["sums"][name]["scale"] == pytest.approx(bound / part)
        assert sum(map(abs, noisy)) / n == pytest.approx(bound / part, rel=5 / math.sqrt(n))


def test_a_refused_charge_draws_no_noise():
    class Refused(Exception):
        pass

    def refuse(epsilon, delta):
        raise Refused

    with pytest.raises(Refused):
        dp_rows(_lone_users(3), 2, ATTRS, 1.0, 1e-6, refuse)
