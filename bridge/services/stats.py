"""Statistics for experiments on units (users): each function checked against scipy/statsmodels.

Everything takes counts or per-unit values and works on numpy arrays as well as scalars, so
the simulation tests (tests/bridge/services/test_stats_simulation.py) run thousands of
experiments at once through the same code the API uses.

- `newcombe_difference`: the difference of two rates with Newcombe's hybrid score interval
  (built from two Wilson intervals; good at small n, unlike the Wald interval).
- `relative_lift`: rate ratio - 1 with the log (Katz) interval.
- `z_test`: the pooled two-proportion z-test (fixed horizon: valid for ONE look only).
- `msprt`: the mixture sequential probability ratio test (normal mixture, Johari et al. 2017)
  with its always-valid p-value and confidence sequence: read it every day, the chance of a
  false positive stays below alpha.
- `cuped`: CUPED / ANCOVA variance reduction with each unit's pre-experiment value.
- `beta_binomial`: chance to beat control and expected loss under Beta(1, 1) priors.
- `sample_ratio_mismatch`: chi-square goodness of fit of units to the split.
- `holm`: Holm's step-down adjustment across success metrics.
- `required_sample`: units per arm to detect a relative lift with the given power.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np
from scipy import stats as sps

# Conventional SRM threshold: a split this unlikely is a broken assignment, not chance.
SRM_P_THRESHOLD = 0.001
# The mixing scale of the mSPRT: the standard deviation of the rate differences it is tuned
# to find quickly (an absolute difference of 5 percentage points). Any fixed value keeps the
# test valid; it only moves where the test is most powerful.
MSPRT_TAU = 0.05


def _z(confidence: float) -> float:
    return float(sps.norm.ppf(0.5 + confidence / 2))


def wilson(k, n, confidence: float = 0.95):
    """Wilson score interval of k successes in n trials: (low, high)."""
    k, n = np.asarray(k, float), np.asarray(n, float)
    z = _z(confidence)
    with np.errstate(invalid="ignore", divide="ignore"):
        p = k / n
        centre = (p + z * z / (2 * n)) / (1 + z * z / n)
        half = z / (1 + z * z / n) * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return centre - half, centre + half


def newcombe_difference(k_v, n_v, k_c, n_c, confidence: float = 0.95):
    """rate_v - rate_c with Newcombe's hybrid score interval: (difference, low, high)."""
    k_v, n_v, k_c, n_c = (np.asarray(x, float) for x in (k_v, n_v, k_c, n_c))
    p_v, p_c = k_v / n_v, k_c / n_c
    l_v, u_v = wilson(k_v, n_v, confidence)
    l_c, u_c = wilson(k_c, n_c, confidence)
    d = p_v - p_c
    low = d - np.sqrt((p_v - l_v) ** 2 + (u_c - p_c) ** 2)
    high = d + np.sqrt((u_v - p_v) ** 2 + (p_c - l_c) ** 2)
    return d, low, high


def relative_lift(k_v, n_v, k_c, n_c, confidence: float = 0.95):
    """rate_v / rate_c - 1 with the log (Katz) interval: (lift, low, high); nan without data."""
    k_v, n_v, k_c, n_c = (np.asarray(x, float) for x in (k_v, n_v, k_c, n_c))
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = (k_v / n_v) / (k_c / n_c)
        se = np.sqrt(1 / k_v - 1 / n_v + 1 / k_c - 1 / n_c)
        z = _z(confidence)
        return ratio - 1, ratio * np.exp(-z * se) - 1, ratio * np.exp(z * se) - 1


def z_test(k_v, n_v, k_c, n_c):
    """Pooled two-sided two-proportion z-test: (z, p-value); valid for one look only."""
    k_v, n_v, k_c, n_c = (np.asarray(x, float) for x in (k_v, n_v, k_c, n_c))
    pooled = (k_v + k_c) / (n_v + n_c)
    se = np.sqrt(pooled * (1 - pooled) * (1 / n_v + 1 / n_c))
    with np.errstate(invalid="ignore", divide="ignore"):
        z = np.where(se > 0, (k_v / n_v - k_c / n_c) / np.where(se > 0, se, 1), 0.0)
    return z, 2 * sps.norm.sf(np.abs(z))


def msprt(diff, variance, alpha: float = 0.05, tau: float = MSPRT_TAU):
    """Normal-mixture SPRT at one look: (likelihood ratio, always-valid p, CS low, CS high).

    `diff` is the estimated difference, `variance` its variance. The mixture likelihood
    ratio is  sqrt(V / (V + tau^2)) * exp(tau^2 diff^2 / (2 V (V + tau^2))), and
    {theta : ratio(theta) < 1/alpha} is the confidence sequence. Across looks the p-value is
    the running minimum of 1/ratio and the sequence the running intersection (`sequential`).
    """
    d, v = np.asarray(diff, float), np.asarray(variance, float)
    t2 = tau * tau
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        log_ratio = 0.5 * np.log(v / (v + t2)) + t2 * d * d / (2 * v * (v + t2))
        ratio = np.exp(log_ratio)
        half = np.sqrt(v * (v + t2) / t2 * (np.log((v + t2) / v) + 2 * np.log(1 / alpha)))
    p = np.minimum(1.0, np.exp(-log_ratio))
    return ratio, p, d - half, d + half


def proportion_variance(k_v, n_v, k_c, n_c):
    """Unpooled variance of rate_v - rate_c (what the mSPRT and the CS use)."""
    k_v, n_v, k_c, n_c = (np.asarray(x, float) for x in (k_v, n_v, k_c, n_c))
    p_v, p_c = k_v / n_v, k_c / n_c
    return p_v * (1 - p_v) / n_v + p_c * (1 - p_c) / n_c


def sequential(k_v, n_v, k_c, n_c, alpha: float = 0.05, tau: float = MSPRT_TAU):
    """The mSPRT read at every look (last axis = looks, cumulative counts).

    Returns (always-valid p-value, CS low, CS high) after the last look: the running minimum
    of the per-look p-values and the running intersection of the per-look intervals. Looks
    where a variance is zero (no data or all-or-nothing rates) are skipped.
    """
    k_v, n_v, k_c, n_c = (np.atleast_1d(np.asarray(x, float)) for x in (k_v, n_v, k_c, n_c))
    with np.errstate(invalid="ignore", divide="ignore"):
        d = k_v / n_v - k_c / n_c
    v = proportion_variance(k_v, n_v, k_c, n_c)
    _, p, low, high = msprt(d, v, alpha, tau)
    usable = np.isfinite(v) & (v > 0)
    p = np.where(usable, p, 1.0)
    low = np.where(usable, low, -np.inf)
    high = np.where(usable, high, np.inf)
    return p.min(axis=-1), low.max(axis=-1), high.min(axis=-1)


def cuped(y, x, treated, confidence: float = 0.95) -> dict:
    """CUPED (ANCOVA form): difference of means of y adjusted by the pre-period value x.

    theta is the within-arm pooled slope of y on x, so the estimate equals the treatment
    coefficient of OLS y ~ 1 + treated + x; its standard error is the unpooled (Welch) one of
    the adjusted values. Returns both the adjusted and the unadjusted difference and intervals.
    """
    y, x, t = np.asarray(y, float), np.asarray(x, float), np.asarray(treated, bool)
    xc = np.where(t, x - x[t].mean(), x - x[~t].mean())
    yc = np.where(t, y - y[t].mean(), y - y[~t].mean())
    sxx = float(xc @ xc)
    theta = float(xc @ yc) / sxx if sxx > 0 else 0.0
    adj = y - theta * (x - x.mean())
    z = _z(confidence)

    def diff(values):
        a, b = values[t], values[~t]
        d = a.mean() - b.mean()
        se = np.sqrt(a.var(ddof=1) / a.size + b.var(ddof=1) / b.size)
        return float(d), float(se), [float(d - z * se), float(d + z * se)]

    d, se, ci = diff(adj)
    d0, se0, ci0 = diff(y)
    return {"theta": theta, "difference": d, "standardError": se, "confidenceInterval": ci,
            "unadjustedDifference": d0, "unadjustedStandardError": se0,
            "unadjustedConfidenceInterval": ci0,
            "varianceReduction": 1 - (se * se) / (se0 * se0) if se0 > 0 else 0.0}


def beta_binomial(k_v: int, n_v: int, k_c: int, n_c: int, points: int = 4001) -> dict:
    """Chance the variant's rate beats control's and the expected loss of shipping it.

    Posteriors Beta(1 + k, 1 + n - k). P(p_v > p_c) = E_v[F_c(p_v)] and the expected loss
    E[max(p_c - p_v, 0)] = E_v[m_c sf_{a_c+1,b_c}(p_v) - p_v sf_{a_c,b_c}(p_v)], both
    integrated over a grid that covers the variant's posterior.
    """
    a_v, b_v = 1 + k_v, 1 + n_v - k_v
    a_c, b_c = 1 + k_c, 1 + n_c - k_c
    lo, hi = sps.beta.ppf([1e-12, 1 - 1e-12], a_v, b_v)
    grid = np.linspace(lo, hi, points)
    density = sps.beta.pdf(grid, a_v, b_v)
    density /= np.trapezoid(density, grid)
    beat = np.trapezoid(density * sps.beta.cdf(grid, a_c, b_c), grid)
    mean_c = a_c / (a_c + b_c)
    loss_at = mean_c * sps.beta.sf(grid, a_c + 1, b_c) - grid * sps.beta.sf(grid, a_c, b_c)
    loss = np.trapezoid(density * loss_at, grid)
    return {"chanceToBeatControl": float(np.clip(beat, 0, 1)),
            "expectedLoss": float(max(loss, 0.0)), "prior": "Beta(1, 1)"}


def sample_ratio_mismatch(observed: Sequence[float], weights: Sequence[float]) -> dict:
    """Chi-square goodness of fit of observed units to the configured split."""
    obs = np.asarray(observed, float)
    w = np.asarray(weights, float)
    expected = obs.sum() * w / w.sum()
    chi2, p_value = sps.chisquare(obs, expected)
    return {"chiSquare": float(chi2), "degreesOfFreedom": int(obs.size - 1),
            "pValue": float(p_value), "threshold": SRM_P_THRESHOLD,
            "mismatch": bool(p_value < SRM_P_THRESHOLD)}


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values (controls the family-wise error rate)."""
    p = np.asarray(p_values, float)
    m = p.size
    if m == 0:
        return []
    order = np.argsort(p)
    stepped = np.minimum(1.0, np.maximum.accumulate((m - np.arange(m)) * p[order]))
    out = np.empty(m)
    out[order] = stepped
    return out.tolist()


def required_sample(base_rate: float, relative_mde: float, alpha: float = 0.05,
                    power: float = 0.8) -> int:
    """Units per arm for a two-sided test at alpha to find a relative lift with this power.

    Normal approximation on Cohen's h = 2 asin(sqrt p2) - 2 asin(sqrt p1), as statsmodels'
    NormalIndPower with proportion_effectsize.
    """
    p2 = min(base_rate * (1 + relative_mde), 1.0)
    h = abs(2 * np.arcsin(np.sqrt(p2)) - 2 * np.arcsin(np.sqrt(base_rate)))
    if h == 0:
        return 0
    n = 2 * ((sps.norm.ppf(1 - alpha / 2) + sps.norm.ppf(power)) / h) ** 2
    return int(np.ceil(n))


def achieved_power(base_rate: float, relative_mde: float, n_per_arm: float,
                   alpha: float = 0.05) -> float:
    """The power a fixed-horizon test with n units per arm has for this relative lift."""
    p2 = min(base_rate * (1 + relative_mde), 1.0)
    h = abs(2 * np.arcsin(np.sqrt(p2)) - 2 * np.arcsin(np.sqrt(base_rate)))
    shift = h * np.sqrt(n_per_arm / 2)
    crit = sps.norm.ppf(1 - alpha / 2)
    return float(sps.norm.sf(crit - shift) + sps.norm.cdf(-crit - shift))


def unit_position(experiment_id: str, unit: str) -> float:
    """A uniform number in [0, 1) from SHA-256 of 'experimentId:unit' (stable everywhere)."""
    digest = hashlib.sha256(f"{experiment_id}:{unit}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0 ** 64


def assign(experiment_id: str, unit: str, split: Sequence[tuple[str, float]]) -> str:
    """The variant whose cumulative weight interval holds the unit's position."""
    total = sum(w for _, w in split)
    position = unit_position(experiment_id, unit) * total
    cumulative = 0.0
    for variant, weight in split:
        cumulative += weight
        if position < cumulative:
            return variant
    return split[-1][0]
