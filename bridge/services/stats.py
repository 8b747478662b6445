"""Statistics for experiments, written out so each number can be checked by hand.

Normal CDF through math.erfc, its inverse by bisection, the chi-square
survival function through the regularized incomplete gamma function (series
below a+1, Lentz's continued fraction above), the two-proportion z-test and
the sample-ratio-mismatch check. No SciPy.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence

SQRT2 = math.sqrt(2.0)
# Conventional SRM threshold: a split this unlikely is a broken assignment, not chance.
SRM_P_THRESHOLD = 0.001


def norm_cdf(z: float) -> float:
    """P(Z <= z) for a standard normal Z."""
    return 0.5 * math.erfc(-z / SQRT2)


def norm_ppf(p: float) -> float:
    """The z with norm_cdf(z) == p (0 < p < 1), by bisection to machine precision."""
    if not 0.0 < p < 1.0:
        raise ValueError("p must be in (0, 1)")
    lo, hi = -40.0, 40.0
    for _ in range(200):
        mid = (lo + hi) / 2
        if norm_cdf(mid) < p:
            lo = mid
        else:
            hi = mid
        if hi - lo < 1e-15:
            break
    return (lo + hi) / 2


def _gamma_p_series(a: float, x: float) -> float:
    term = total = 1.0 / a
    n = a
    for _ in range(10_000):
        n += 1
        term *= x / n
        total += term
        if abs(term) < abs(total) * 1e-16:
            break
    return total * math.exp(-x + a * math.log(x) - math.lgamma(a))


def _gamma_q_fraction(a: float, x: float) -> float:
    tiny = 1e-300
    b = x + 1.0 - a
    c = 1.0 / tiny
    d = 1.0 / b
    h = d
    for i in range(1, 10_000):
        an = -i * (i - a)
        b += 2.0
        d = an * d + b
        d = tiny if abs(d) < tiny else d
        c = b + an / c
        c = tiny if abs(c) < tiny else c
        d = 1.0 / d
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < 1e-16:
            break
    return math.exp(-x + a * math.log(x) - math.lgamma(a)) * h


def gamma_q(a: float, x: float) -> float:
    """Regularized upper incomplete gamma Q(a, x) = Gamma(a, x) / Gamma(a)."""
    if a <= 0 or x < 0:
        raise ValueError("need a > 0 and x >= 0")
    if x == 0:
        return 1.0
    if x < a + 1.0:
        return 1.0 - _gamma_p_series(a, x)
    return _gamma_q_fraction(a, x)


def chi2_sf(x: float, df: int) -> float:
    """P(X >= x) for X chi-square distributed with df degrees of freedom."""
    return gamma_q(df / 2.0, x / 2.0)


def two_proportion_test(conv_control: int, n_control: int, conv_variant: int, n_variant: int,
                        confidence: float = 0.95) -> dict:
    """Pooled two-sided z-test of rate_variant vs rate_control, with a Wald CI of the difference."""
    p_c = conv_control / n_control
    p_v = conv_variant / n_variant
    diff = p_v - p_c
    pooled = (conv_control + conv_variant) / (n_control + n_variant)
    se_pooled = math.sqrt(pooled * (1 - pooled) * (1 / n_control + 1 / n_variant))
    if se_pooled == 0:
        z, p_value = 0.0, 1.0
    else:
        z = diff / se_pooled
        p_value = math.erfc(abs(z) / SQRT2)
    se = math.sqrt(p_c * (1 - p_c) / n_control + p_v * (1 - p_v) / n_variant)
    crit = norm_ppf(0.5 + confidence / 2)
    return {
        "controlRate": p_c, "variantRate": p_v, "absoluteDifference": diff,
        "relativeLift": diff / p_c if p_c else None,
        "zScore": z, "pValue": p_value,
        "confidenceLevel": confidence,
        "confidenceInterval": [diff - crit * se, diff + crit * se],
        "significant": p_value < 1 - confidence,
    }


def sample_ratio_mismatch(observed: Sequence[float], weights: Sequence[float]) -> dict:
    """Chi-square goodness of fit of observed exposures to the configured split."""
    total = sum(observed)
    wsum = sum(weights)
    expected = [total * w / wsum for w in weights]
    chi2 = sum((o - e) ** 2 / e for o, e in zip(observed, expected, strict=True) if e > 0)
    df = len(observed) - 1
    p_value = chi2_sf(chi2, df)
    return {"chiSquare": chi2, "degreesOfFreedom": df, "pValue": p_value,
            "threshold": SRM_P_THRESHOLD, "mismatch": p_value < SRM_P_THRESHOLD}


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
