"""Fixtures of the blueprint tests: the analytics engine on a fake Prometheus."""

import pytest

from tests.bridge.analytics_fake import NOW, FakeProm


@pytest.fixture
def fake(app):
    """The app's Prometheus replaced by a FakeProm, its clock stopped at NOW."""
    prom = FakeProm()
    app.extensions["pulse.prometheus"] = prom
    app.extensions["pulse.clock"] = lambda: NOW
    return prom
