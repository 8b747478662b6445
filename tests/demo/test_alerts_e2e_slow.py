"""The slow demo scenarios end to end, on a stack of their own (see test_alerts_e2e.py)."""

import pytest

from tests.demo.test_alerts_e2e import SLOW, check_scenario, stack  # noqa: F401

pytestmark = [pytest.mark.integration, pytest.mark.e2e]


@pytest.mark.parametrize("scenario", SLOW)
def test_slow_scenario_pages_the_demo_channel_and_normal_resolves_it(scenario, stack):  # noqa: F811
    check_scenario(scenario, stack)
