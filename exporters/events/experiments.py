"""The intake's experiment sink: exposures and conversions per unit (pulse.profiles.experiments).

Called after a batch is durable and before it is acknowledged, with profile-consented
events only (a per-unit record is profiling). Writing is idempotent, so an event the intake
never re-delivers is in the store at most once and a retried one changes nothing.
"""

from __future__ import annotations

from pulse.config import Config
from pulse.profiles.experiments import UnitStore, db_path, project


class ExperimentSink:
    """Projects experiment events of a batch onto per-unit rows and commits them."""

    requires_profile_consent = True

    def __init__(self, store: UnitStore, salt: str):
        self.store = store
        self._salt = salt

    def consume(self, events: list[dict], batch_id: str) -> None:
        """Write the batch's exposure and conversion rows in one transaction."""
        self.store.add(*project(events, self._salt))

    def close(self) -> None:
        """Close the store."""
        self.store.close()


def experiment_sink(cfg: Config) -> ExperimentSink:
    """The sink of an intake on the config's data directory."""
    return ExperimentSink(UnitStore(db_path(cfg.data_dir)), cfg.privacy.salt)
