"""Pseudonymous per-user profiles: the SQLite store, the k-anonymous aggregates, research data.

Shared by the events intake (which writes profiles and exports the aggregates) and the bridge
(consent withdrawal, research datasets); both open the same SQLite file in WAL mode under
`<data_dir>/profiles/`. Users are keyed by HMAC-SHA256(privacy.salt, userId): the raw id is
never stored or logged.
"""

from pulse.profiles.store import ProfileStore, db_path, pseudonymise

__all__ = ["ProfileStore", "db_path", "pseudonymise"]
