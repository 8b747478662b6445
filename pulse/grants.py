"""Grants: tokens issued at run time, each with an expiry, kept in one small file of the data dir.

An admin grants a role to a subject until a time (a consultant, an auditor), or steps up to
a short-lived token carrying the `personal_data` scope; either is a `Grant`. The token is
shown once and only its hash (`pulse.access.hash_token`, as for pulse.yml tokens) is kept,
in `<data_dir>/access/grants.json`, replaced whole by `pulse.fileio.write_atomic` (a kill -9
leaves the old file or the new). Every process that authenticates tokens reads the same file
and re-reads it when its stat changes, so a grant made or revoked on the bridge is honoured
by the intake and the aggregators at their next request, without a restart.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import threading
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from pulse.fileio import file_lock, write_atomic

log = logging.getLogger(__name__)
GRANTS_FILE = "grants.json"
TOKEN_PREFIX = "pg_"  # tells a reader (and a secret scanner) what the string is
# How long a grant may run, and a step-up token (seed: time-limited access; issue 18).
MAX_GRANT_SECONDS = 90 * 86400
MAX_STEP_UP_SECONDS = 3600
DEFAULT_STEP_UP_SECONDS = 900
PERSONAL_DATA = "personal_data"
# Expired and revoked grants stay listed this long, then are dropped at the next write.
KEEP_ENDED_SECONDS = 7 * 86400


def grants_path(data_dir: str | Path) -> Path:
    """Where the grants of a data dir are kept."""
    return Path(data_dir) / "access" / GRANTS_FILE


@dataclass(frozen=True)
class Grant:
    """One issued token: its hash, never the token; times are Unix seconds."""

    id: str
    token_hash: str
    role: str
    subject: str
    issued_at: float
    expires_at: float
    issued_by: str
    coach_id: str | None = None
    tenants: tuple[str, ...] | None = None  # ruler tenants (None: all), as bridge.tokens
    scopes: tuple[str, ...] = ()
    reason: str | None = None
    revoked_at: float | None = None
    revoked_by: str | None = None

    def active(self, now: float) -> bool:
        """True while the grant is neither revoked nor expired."""
        return self.revoked_at is None and now < self.expires_at

    def ended(self, now: float) -> float | None:
        """When the grant stopped being valid, or None while it is."""
        if self.revoked_at is not None:
            return self.revoked_at
        return self.expires_at if now >= self.expires_at else None


def _from_record(record: dict) -> Grant:
    values = {k: v for k, v in record.items() if k in Grant.__dataclass_fields__}
    values["scopes"] = tuple(values.get("scopes") or ())
    if values.get("tenants") is not None:
        values["tenants"] = tuple(values["tenants"])
    return Grant(**values)


def _to_record(grant: Grant) -> dict:
    record = asdict(grant)
    record["scopes"] = list(grant.scopes)
    if grant.tenants is not None:
        record["tenants"] = sorted(grant.tenants)
    return record


class GrantFile:
    """The grants of one data dir: read when the file changed, written whole under a lock.

    Writers (the bridge's views) hold an flock on a lock file beside it, so two bridge
    threads or replicas never lose each other's grant; readers need no lock (the file is
    only ever replaced whole)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._lock = threading.Lock()
        self._stamp: tuple | None = None
        self._grants: tuple[Grant, ...] = ()

    def _stat(self) -> tuple | None:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return None
        # The inode changes at every os.replace; mtime and size catch an edit in place.
        return st.st_ino, st.st_mtime_ns, st.st_size

    def grants(self) -> tuple[Grant, ...]:
        """Every grant in the file (re-read only when the file's stat changed)."""
        stamp = self._stat()
        if stamp != self._stamp:
            with self._lock:
                self._grants, self._stamp = self._read(), stamp
        return self._grants

    def _read(self) -> tuple[Grant, ...]:
        try:
            doc = json.loads(self.path.read_text())
            return tuple(_from_record(r) for r in doc.get("grants", ()))
        except FileNotFoundError:
            return ()
        except (ValueError, TypeError, AttributeError) as exc:
            # Only a hand edit can break the file (it is replaced whole): fail closed, no
            # grant is valid until it is fixed or the next grant rewrites it.
            log.error("%s is not a valid grant file (%s): every grant is refused",
                      self.path, type(exc).__name__)
            return ()

    def _update(self, change) -> object:
        """Apply change(list of grants) -> result under the write lock; write the list back."""
        with self._lock, file_lock(self.path.with_name(f".{self.path.name}.lock")):
            grants = list(self._read())
            result = change(grants)
            doc = {"grants": [_to_record(g) for g in grants]}
            # 0600: hashes only, but nobody else on the host needs to read them.
            write_atomic(self.path, json.dumps(doc, indent=1, sort_keys=True) + "\n",
                         mode=0o600, sync_dir=True)
            self._stamp = None  # the next read picks the new file up
            return result

    def issue(self, *, role: str, subject: str, issued_at: float, expires_at: float,
              issued_by: str, coach_id: str | None = None,
              tenants: frozenset[str] | None = None, scopes: tuple[str, ...] = (),
              reason: str | None = None) -> tuple[Grant, str]:
        """(the new grant, its token): the token is returned this once and kept hashed."""
        # Imported here: pulse.access builds its TokenStore on this module.
        from pulse.access import hash_token

        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        grant = Grant(id="g-" + secrets.token_hex(8), token_hash=hash_token(token), role=role,
                      subject=subject, issued_at=issued_at, expires_at=expires_at,
                      issued_by=issued_by, coach_id=coach_id,
                      tenants=tuple(sorted(tenants)) if tenants is not None else None,
                      scopes=tuple(scopes),
                      reason=reason)

        def add(grants: list[Grant]) -> None:
            grants[:] = [g for g in grants
                         if (g.ended(issued_at) or issued_at) > issued_at - KEEP_ENDED_SECONDS]
            grants.append(grant)

        self._update(add)
        return grant, token

    def revoke(self, grant_id: str, *, at: float, by: str) -> Grant | None:
        """Revoke a grant (idempotent); the grant as now stored, or None for an unknown id."""
        def mark(grants: list[Grant]) -> Grant | None:
            for i, g in enumerate(grants):
                if g.id == grant_id:
                    if g.revoked_at is None:
                        grants[i] = replace(g, revoked_at=at, revoked_by=by)
                    return grants[i]
            return None

        return self._update(mark)
