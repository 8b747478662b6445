"""The experiment statistics validated by simulation (vectorised: thousands of runs at once)."""

import numpy as np
import pytest

from bridge.services.stats import cuped, newcombe_difference, relative_lift, sequential, z_test

RUNS, DAYS, PER_DAY = 1000, 14, 150


def daily_counts(rng, rate, runs=RUNS):
    """Cumulative (conversions, units) per day of `runs` experiments arms."""
    units = np.full((runs, DAYS), PER_DAY)
    conversions = rng.binomial(units, rate)
    return conversions.cumsum(axis=1), units.cumsum(axis=1)


def test_aa_read_daily_sequential_stays_under_alpha_naive_does_not():
    rng = np.random.default_rng(2024)
    k_c, n_c = daily_counts(rng, 0.1)
    k_v, n_v = daily_counts(rng, 0.1)
    p_seq, low, high = sequential(k_v, n_v, k_c, n_c, alpha=0.05)
    sequential_fpr = float(np.mean(p_seq < 0.05))
    # The confidence sequence excludes 0 exactly when the always-valid p-value is below alpha.
    assert np.array_equal(p_seq < 0.05, (low > 0) | (high < 0))
    _, p_naive = z_test(k_v, n_v, k_c, n_c)
    naive_fpr = float(np.mean((p_naive < 0.05).any(axis=1)))
    assert sequential_fpr <= 0.055, sequential_fpr
    assert naive_fpr > 0.055, naive_fpr


def test_ab_intervals_cover_the_known_lift():
    rng = np.random.default_rng(99)
    base, lift = 0.12, 0.15
    k_c = rng.binomial(2000, base, RUNS)
    k_v = rng.binomial(2000, base * (1 + lift), RUNS)
    _, low, high = newcombe_difference(k_v, 2000, k_c, 2000)
    true_diff = base * lift
    assert np.mean((low <= true_diff) & (true_diff <= high)) >= 0.93
    _, low, high = relative_lift(k_v, 2000, k_c, 2000)
    assert np.mean((low <= lift) & (lift <= high)) >= 0.93
    # Small samples too (where a Wald interval under-covers).
    k_c = rng.binomial(60, base, RUNS)
    k_v = rng.binomial(60, base * (1 + lift), RUNS)
    _, low, high = newcombe_difference(k_v, 60, k_c, 60)
    assert np.mean((low <= true_diff) & (true_diff <= high)) >= 0.93
    # And the sequential confidence sequence covers after 14 daily looks.
    k_c, n_c = daily_counts(rng, base)
    k_v, n_v = daily_counts(rng, base * (1 + lift))
    _, low, high = sequential(k_v, n_v, k_c, n_c)
    assert np.mean((low <= true_diff) & (true_diff <= high)) >= 0.93


def test_cuped_shrinks_the_interval_and_keeps_coverage():
    rng = np.random.default_rng(5)
    n, effect, covered, ratios, expected = 2000, 0.2, 0, [], []
    for _ in range(200):
        pre = rng.poisson(3.0, n).astype(float)
        treated = rng.random(n) < 0.5
        post = rng.poisson(0.7 * pre + 1.0 + effect * treated).astype(float)
        r = cuped(post, pre, treated)
        low, high = r["confidenceInterval"]
        covered += low <= effect <= high
        ratios.append((high - low) / np.subtract(*r["unadjustedConfidenceInterval"][::-1]))
        # Theory: the interval shrinks by sqrt(1 - rho^2), rho = corr(pre, post).
        expected.append(np.sqrt(1 - np.corrcoef(pre, post)[0, 1] ** 2))
    assert np.median(ratios) < 0.9
    assert np.median(ratios) == pytest.approx(np.median(expected), rel=0.02)
    assert covered / 200 >= 0.93
