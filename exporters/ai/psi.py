"""Population Stability Index between a reference histogram and current observations."""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence
from dataclasses import dataclass

# Proportions are floored at this value so an empty bin contributes a large but
# finite term instead of ln(0) (the usual guard; 1e-4 keeps one empty bin of a
# well-populated histogram below the 0.2 "significant" line only if it was tiny).
EPSILON = 1e-4


@dataclass(frozen=True)
class PsiResult:
    """PSI, each bin's contribution, and whether enough observations backed it."""

    psi: float | None
    contributions: tuple[float, ...]
    observations: int
    sufficient: bool


def proportions(counts: Sequence[float], epsilon: float = EPSILON) -> list[float]:
    """counts / total, each floored at epsilon (total must be positive)."""
    total = float(sum(counts))
    if total <= 0:
        raise ValueError("counts must not all be zero")
    return [max(c / total, epsilon) for c in counts]


def psi(expected: Sequence[float], actual: Sequence[float],
        epsilon: float = EPSILON) -> tuple[float, list[float]]:
    """PSI = sum_i (a_i - e_i) * ln(a_i / e_i) over bin proportions; also per-bin terms."""
    if len(expected) != len(actual):
        raise ValueError(f"bin counts differ: {len(expected)} expected, {len(actual)} actual")
    e = proportions(expected, epsilon)
    a = proportions(actual, epsilon)
    terms = [(ai - ei) * math.log(ai / ei) for ai, ei in zip(a, e, strict=True)]
    return sum(terms), terms


def compare(reference: Sequence[float], current: Sequence[float], min_observations: int,
            epsilon: float = EPSILON) -> PsiResult:
    """PSI of current against reference, or psi=None below min_observations."""
    n = int(sum(current))
    if n < max(min_observations, 1):
        return PsiResult(None, (), n, False)
    value, terms = psi(reference, current, epsilon)
    return PsiResult(value, tuple(terms), n, True)


def bin_values(edges: Sequence[float], values: Sequence[float]) -> list[int]:
    """Counts of values per bin [edges[i], edges[i+1]); outside values go to the end bins."""
    counts = [0] * (len(edges) - 1)
    last = len(counts) - 1
    for v in values:
        # The first and last bins are open-ended, as a deployed score can leave
        # the reference range; that is drift and must be counted, not dropped.
        i = bisect.bisect_right(edges, v) - 1
        counts[min(max(i, 0), last)] += 1
    return counts
