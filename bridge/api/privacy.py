"""Consent withdrawal: POST /api/analytics/privacy/withdraw deletes a user's profile.

The profile store is the SQLite file the events intake writes (pulse.profiles); the bridge
opens it directly, so a withdrawal works whether or not the intake is running, and is applied
under SQLite's write lock (a concurrent intake write cannot bring the record back). Every
stored research dataset is deleted too (it may have been computed with the user in it). The
raw userId is hashed at once and never logged or stored.
"""

from __future__ import annotations

from flask import Blueprint, current_app

from bridge.auth import require
from bridge.services import EXPERIMENTS, service
from bridge.services.errors import Unavailable
from bridge.validation import request_body
from pulse.grants import PERSONAL_DATA
from pulse.profiles import ProfileStore, db_path
from pulse.profiles.research import delete_all
from pulse.profiles.store import pseudonymise

# Seconds a client waits before retrying a withdrawal the stream could not take (NATS
# elects a stream leader in about 4 s; a restarted node rejoins within seconds).
RETRY_AFTER = 10

bp = Blueprint("privacy", __name__, url_prefix="/api/analytics/privacy")


@bp.post("/withdraw")
@require("privacy:withdraw", scope=PERSONAL_DATA)
def withdraw():
    """Delete the user's profile and every stored research dataset; later events need consent."""
    user_id = request_body()["userId"]
    cfg = current_app.config["PULSE"]
    if cfg.exporters.events.log.kind == "jetstream":
        # Profiles live in the aggregators, a user's in one partition: the withdrawal goes
        # through the stream to its owner (docs/scaling.md).
        # First, so that nothing else is deleted when the stream cannot take it (a 503 the
        # caller retries; a withdrawal applied twice deletes nothing more).
        from pulse.profiles.stream import LogUnavailable, publish_withdrawal

        try:
            existed = publish_withdrawal(cfg, user_id)
        except LogUnavailable as exc:
            raise Unavailable(
                f"consent withdrawal not applied: the events stream (NATS JetStream) is "
                f"unavailable: {exc}; nothing was deleted, retry later",
                [{"field": "exporters.events.log.servers", "problem": str(exc)}],
                code="dependency_unavailable", retry_after=RETRY_AFTER) from exc
    else:
        store = ProfileStore(db_path(cfg.data_dir), cfg.privacy.salt)
        try:
            existed = store.withdraw(user_id)
        finally:
            store.close()
    datasets = delete_all(cfg.data_dir)
    # The experiment rows of the unit go too (they are per-user records).
    service(current_app, EXPERIMENTS).units.forget(pseudonymise(cfg.privacy.salt, user_id))
    return {"withdrawn": True, "profileDeleted": existed, "researchFilesDeleted": datasets,
            "note": "aggregates exclude the user from the intake's next refresh "
                    "(exporters.events.profiles.refresh_interval)"}
