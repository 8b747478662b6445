"""PSI against hand-computed values."""

import pytest

from exporters.ai.psi import EPSILON, bin_values, compare, proportions, psi


def test_psi_matches_hand_computation():
    # e = .25 each; a = .1 .2 .3 .4
    # (.1-.25)ln(.4) = -.15 * -0.916290731874155 = 0.137443609781123
    # (.2-.25)ln(.8) = -.05 * -0.223143551314210 = 0.011157177565710
    # (.3-.25)ln(1.2) = .05 *  0.182321556793955 = 0.009116077839698
    # (.4-.25)ln(1.6) = .15 *  0.470003629245736 = 0.070500544386860
    value, terms = psi([25, 25, 25, 25], [10, 20, 30, 40])
    assert terms == pytest.approx([0.137443609781123, 0.011157177565710,
                                   0.009116077839698, 0.070500544386860], abs=1e-12)
    assert value == pytest.approx(0.228217409573391, abs=1e-12)


def test_identical_distributions_have_zero_psi():
    assert psi([1, 2, 3], [10, 20, 30])[0] == pytest.approx(0.0, abs=1e-15)


def test_psi_is_symmetric():
    assert psi([25, 25, 25, 25], [10, 20, 30, 40])[0] == pytest.approx(
        psi([10, 20, 30, 40], [25, 25, 25, 25])[0], abs=1e-12)


def test_empty_bin_is_floored_at_epsilon():
    # e = .5 .5 1e-4 (floored); a = .4 .4 .2
    # 2 * (-.1)ln(.8) = 0.044628710262842; (.2-.0001)ln(2000) = .1999*7.600902459542082
    value, terms = psi([50, 50, 0], [40, 40, 20])
    assert EPSILON == 1e-4
    assert terms[2] == pytest.approx(1.519420401662462, abs=1e-12)
    assert value == pytest.approx(1.564049111925304, abs=1e-12)


def test_insufficient_data_gives_no_psi():
    result = compare([25, 25, 25, 25], [1, 2, 3, 3], min_observations=10)
    assert result.psi is None and not result.sufficient and result.observations == 9
    result = compare([25, 25, 25, 25], [1, 2, 3, 4], min_observations=10)
    assert result.sufficient and result.psi == pytest.approx(0.228217409573391, abs=1e-12)


def test_mismatched_bins_and_empty_counts_raise():
    with pytest.raises(ValueError):
        psi([1, 2], [1, 2, 3])
    with pytest.raises(ValueError):
        proportions([0, 0])


def test_values_are_binned_with_open_ended_edges():
    assert bin_values([0.0, 0.5, 1.0], [-3, 0.0, 0.49, 0.5, 0.99, 1.0, 7]) == [3, 4]
