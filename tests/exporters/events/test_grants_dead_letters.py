"""A grant made on the bridge (written to the data dir's grant file) opens the dead letters
of the intake and of an aggregator at once, and its revocation shuts them at once."""

from __future__ import annotations

import time

from pulse.grants import GrantFile, grants_path
from tests.exporters.events.conftest import Intake

REJECTED = "/api/analytics/events/rejected"


def test_a_grant_opens_and_a_revocation_shuts_the_aggregators_dead_letters(tmp_path, nats):
    intake = Intake(tmp_path / "data", nats)
    try:
        grants = GrantFile(grants_path(intake.data_dir))  # as the bridge's view writes it
        now = time.time()
        grant, token = grants.issue(role="engineer", subject="consultant", issued_at=now,
                                    expires_at=now + 3600, issued_by="admin")
        headers = {"Authorization": f"Bearer {token}"}
        aggregator = intake.agg_app.test_client()
        assert aggregator.get(REJECTED, headers=headers).status_code == 200
        assert intake.client.get(REJECTED, headers=headers).status_code == 200
        grants.revoke(grant.id, at=time.time(), by="admin")
        assert aggregator.get(REJECTED, headers=headers).status_code == 401
        assert intake.client.get(REJECTED, headers=headers).status_code == 401
    finally:
        intake.stop()
