"""Experiment statistics against hand-checked numbers."""

import math
from collections import Counter

import pytest

from bridge.services.stats import (
    assign,
    chi2_sf,
    norm_cdf,
    norm_ppf,
    sample_ratio_mismatch,
    two_proportion_test,
    unit_position,
)


def test_normal_cdf_and_inverse():
    assert norm_cdf(0) == 0.5
    assert norm_cdf(1.959963984540054) == pytest.approx(0.975, abs=1e-12)
    assert norm_cdf(-1.0) == pytest.approx(0.158655253931457, abs=1e-12)
    assert norm_ppf(0.975) == pytest.approx(1.959963984540054, abs=1e-9)
    assert norm_ppf(0.995) == pytest.approx(2.575829303548901, abs=1e-9)


@pytest.mark.parametrize("x, df, expected", [
    (3.841458820694124, 1, 0.05),              # the textbook 5 % critical value, df 1
    (5.991464547107979, 2, 0.05),              # df 2: sf = exp(-x/2) = exp(-2.9957) = 0.05
    (2.0, 2, math.exp(-1.0)),                  # 0.36787944...
    (6.0, 4, math.exp(-3.0) * (1 + 3.0)),      # df 4: exp(-x/2)(1 + x/2) = 0.19914827
    (10.827566170662733, 1, 0.001),            # df 1: erfc(sqrt(x/2))
    (0.0, 3, 1.0),
    # df 3: erfc(sqrt(x/2)) + sqrt(2x/pi) exp(-x/2) = 4.3e-8 + 4.3702 * 3.059e-7
    (30.0, 3, 1.3800570312932e-06),
])
def test_chi_square_survival(x, df, expected):
    assert chi2_sf(x, df) == pytest.approx(expected, rel=1e-4)


def test_two_proportion_test_by_hand():
    # control 200/1000 = .20, variant 250/1000 = .25
    # pooled p = 450/2000 = .225; se = sqrt(.225 * .775 * (1/1000 + 1/1000)) = sqrt(.00034875)
    #   = 0.018674849; z = .05 / 0.018674849 = 2.677398; p = erfc(2.677398 / sqrt 2) = 0.007419
    # Wald se = sqrt(.2*.8/1000 + .25*.75/1000) = sqrt(.0003475) = 0.018641352
    # CI = .05 -/+ 1.959964 * 0.018641352 = [0.013464, 0.086536]
    r = two_proportion_test(200, 1000, 250, 1000)
    assert r["absoluteDifference"] == pytest.approx(0.05)
    assert r["relativeLift"] == pytest.approx(0.25)
    assert r["zScore"] == pytest.approx(2.677398, abs=1e-6)
    assert r["pValue"] == pytest.approx(0.007419, abs=1e-6)
    assert r["confidenceInterval"] == pytest.approx([0.013464, 0.086536], abs=1e-6)
    assert r["significant"] is True


def test_no_difference_is_not_significant():
    r = two_proportion_test(100, 1000, 100, 1000)
    assert r["zScore"] == 0 and r["pValue"] == pytest.approx(1.0) and not r["significant"]
    r = two_proportion_test(0, 500, 0, 500)
    assert r["pValue"] == 1.0 and not r["significant"]


def test_srm_by_hand():
    # 50/50 split, 5100 vs 4900: E = 5000 each; chi2 = 100²/5000 * 2 = 4.0; df 1
    # p = erfc(sqrt(2)) = 0.0455003 -> not a mismatch at the 0.001 threshold
    r = sample_ratio_mismatch([5100, 4900], [50, 50])
    assert r["chiSquare"] == pytest.approx(4.0)
    assert r["pValue"] == pytest.approx(0.0455003, abs=1e-6)
    assert r["mismatch"] is False
    # 5300 vs 4700: chi2 = 300²/5000 * 2 = 36; p = erfc(sqrt(18)) = 1.97e-9 -> mismatch
    r = sample_ratio_mismatch([5300, 4700], [50, 50])
    assert r["chiSquare"] == pytest.approx(36.0)
    assert r["pValue"] == pytest.approx(1.9731752e-09, rel=1e-5)
    assert r["mismatch"] is True


def test_assignment_is_stable_and_uniform():
    assert unit_position("exp", "unit-1") == unit_position("exp", "unit-1")
    assert 0 <= unit_position("exp", "unit-1") < 1
    split = [("control", 50.0), ("b", 30.0), ("c", 20.0)]
    assert assign("exp", "u", split) == assign("exp", "u", split)
    counts = Counter(assign("exp_split", f"user-{i}", split) for i in range(100_000))
    # Chi-square goodness of fit of the 100 000 assignments to 50/30/20 (df 2):
    # a correct hash fails this only 1 time in 1000.
    r = sample_ratio_mismatch([counts["control"], counts["b"], counts["c"]], [50, 30, 20])
    assert r["pValue"] > 0.001, (counts, r)
    assert abs(counts["control"] / 100_000 - 0.5) < 0.01
