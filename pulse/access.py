"""Who may do what, for every Pulse process: roles -> permissions, tokens, credentials.

Every Pulse process authenticates with these (seed NF-009): the bridge through its
`require`, the others through pulse.service's `guard`; each maps a refusal (`AccessDenied`)
to a JSON error. Every process records its guarded requests and its refusals in the data
dir's one audit chain (pulse.audit).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from pulse.grants import MAX_STEP_UP_SECONDS, GrantFile, grants_path

# Role -> permissions. The one place that says who may do what (seed NF-009).
ROLE_PERMISSIONS: dict[str, frozenset[str]] = {
    # admin holds every permission, among them privacy:withdraw (consent withdrawal).
    "admin": frozenset({"*"}),
    "engineer": frozenset({
        "rules:read", "rules:write", "rules:expr", "alerts:read", "alerts:test", "incidents:ack",
        "health:read",
        "metrics:read", "dashboards:read", "ai:read", "experiments:read", "experiments:write",
        "prometheus:read",
        # The intake's dead letters (scrubbed rejected events): admin and engineer only.
        "events:dead_letters",
        # Reporting to the AI exporter (evaluations, drift, inference: model-ops jobs), and
        # the integrations exporter's /probe (it makes the host connect wherever it is told).
        "ai:write", "integrations:probe",
        "runbooks:read",
    }),
    "analyst": frozenset({
        "alerts:read", "health:read", "metrics:read", "dashboards:read", "reports:generate",
        "ai:read", "experiments:read", "datasets:generate", "prometheus:read",
        "runbooks:read",
        # A step-up token keeps the caller's role; datasets need one (personal_data).
        "access:step_up",
    }),
    "executive": frozenset({
        "health:read", "metrics:read", "dashboards:read", "reports:generate", "ai:read",
        "experiments:read",
    }),
    # A coach sees aggregates of their own clients only: every query a coach sends gets
    # coach="<coach_id>" on each selector (bridge/services/promql_scope.py). prometheus:read
    # is the Prometheus-compatible read API (/prometheus/api/v1/query..., Grafana's).
    "coach": frozenset({"dashboards:read", "metrics:read", "prometheus:read"}),
    # Read-only, time-limited (tokens of auditors must carry an expiry).
    "auditor": frozenset({
        "rules:read", "alerts:read", "health:read", "metrics:read", "dashboards:read",
        "ai:read", "experiments:read", "audit:read", "prometheus:read", "runbooks:read",
    }),
}

# Permissions no role but admin holds (admin's "*" grants them): named here so a route
# guarded by one is known to be in the table on purpose.
ADMIN_ONLY_PERMISSIONS = frozenset({
    "privacy:withdraw",
    # Grants: issue, list, revoke.
    "access:grants",
    # The privacy-budget ledger: who released what, and what budget is left.
    "privacy:budget",
    # The raw pulse_profiles_* series (groups under k) through /prometheus/api/v1
    # (bridge.services.promql_scope.RAW_GUARD hides them from every other role).
    "prometheus:raw",
})


def known_permission(permission: str) -> bool:
    """True when the permission is in the role table (held by a role, or admin-only)."""
    return permission in ADMIN_ONLY_PERMISSIONS or any(
        permission in perms for perms in ROLE_PERMISSIONS.values())


@dataclass(frozen=True)
class Principal:
    """Who is calling: the token's name, role and (for coaches) their coach id."""

    name: str
    role: str
    coach_id: str | None = None
    # Ruler tenants this token may use (None: all).
    tenants: frozenset[str] | None = None
    # Set for a token issued at run time (pulse.grants): its grant, when it was issued and
    # its scopes (a step-up token carries personal_data).
    grant_id: str | None = None
    issued_at: float | None = None
    expires_at: float | None = None
    scopes: frozenset[str] = frozenset()

    def can(self, permission: str) -> bool:
        """True when the role grants the permission."""
        perms = ROLE_PERMISSIONS.get(self.role, frozenset())
        return "*" in perms or permission in perms


def hash_token(token: str) -> str:
    """The stored form of a token (tokens are never kept in clear after load)."""
    return hashlib.sha256(token.encode()).hexdigest()


class TokenStore:
    """Configured tokens, kept as hashes, with their role and optional expiry; plus the
    grants of the data dir (pulse.grants), re-read when their file changes."""

    def __init__(self, tokens, grants_path: str | Path | None = None, clock=time.time):
        self.clock = clock  # Unix seconds; a test may stop it
        self.grants = GrantFile(grants_path) if grants_path is not None else None
        self._by_hash: dict[str, tuple[Principal, float | None]] = {}
        for t in tokens:
            if t["role"] == "auditor" and not t.get("expires"):
                # The schema refuses this too; a token built in code must not bypass it.
                raise ValueError(f"token {t['name']!r}: auditor tokens need an expiry")
            expires = None
            if t.get("expires"):
                expires = datetime.fromisoformat(t["expires"].replace("Z", "+00:00")).timestamp()
            self._by_hash[hash_token(t["token"])] = (
                Principal(t["name"], t["role"], t.get("coach_id"),
                          frozenset(t["tenants"]) if t.get("tenants") is not None else None,
                          expires_at=expires),
                expires)

    def authenticate(self, token: str, now: float | None = None) -> Principal | None:
        """The principal of a valid, unexpired (and, for a grant, unrevoked) token, or None."""
        digest = hash_token(token)
        now = self.clock() if now is None else now
        for known, (principal, expires) in self._by_hash.items():
            if hmac.compare_digest(known, digest):
                if expires is not None and now >= expires:
                    return None
                return principal
        for grant in self.grants.grants() if self.grants is not None else ():
            if hmac.compare_digest(grant.token_hash, digest):
                if not grant.active(now):
                    return None
                return Principal(
                    grant.subject, grant.role, grant.coach_id,
                    frozenset(grant.tenants) if grant.tenants is not None else None,
                    grant.id, grant.issued_at, grant.expires_at, frozenset(grant.scopes))
        return None


def token_for(tokens, permission: str) -> str | None:
    """The first configured token (bridge.tokens entries) whose role holds permission, for a
    Pulse job that calls another process (the demo's model-ops jobs); None when none does."""
    for t in tokens:
        if Principal(t["name"], t["role"]).can(permission) and not t.get("expires"):
            return t["token"]
    return None


def token_store(cfg) -> TokenStore:
    """The tokens of a loaded Config: bridge.tokens and the grants of its data dir (every
    process that authenticates builds its store here, so a grant works in all of them)."""
    return TokenStore(cfg.bridge.tokens, grants_path(cfg.data_dir))


class AccessDenied(Exception):
    """A refused request: 401 (no or bad token) or 403 (a permission missing, named)."""

    def __init__(self, status: int, reason: str, message: str,
                 details: list[dict] | None = None):
        super().__init__(message)
        self.status, self.reason, self.message = status, reason, message
        self.details = details or []


def credentials(authorization: str) -> tuple[str | None, str | None]:
    """(token, basic user) of an Authorization header: a bearer token, or the password of
    a Basic one (mimirtool's --key, whose user may name the tenant)."""
    scheme, _, value = authorization.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip(), None
    if scheme.lower() == "basic" and value.strip():
        try:
            user, sep, password = base64.b64decode(value.strip(), validate=True) \
                .decode("utf-8").partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return None, None
        if sep and password:
            return password, user
    return None, None


def authenticate(store: TokenStore, token: str | None) -> Principal:
    """The principal of a token; AccessDenied 401 when it is missing, invalid or expired."""
    if token is None:
        raise AccessDenied(401, "anonymous", "a bearer token is required "
                           "(Authorization: Bearer <token>, or Basic auth with the token as "
                           "password)",
                           [{"field": "Authorization", "problem": "missing"}])
    principal = store.authenticate(token)
    if principal is None:
        raise AccessDenied(401, "invalid-token", "the token is not valid or has expired",
                           [{"field": "Authorization", "problem": "invalid or expired token"}])
    return principal


def check(principal: Principal, permission: str) -> None:
    """AccessDenied 403 naming the permission when the principal's role lacks it."""
    if not principal.can(permission):
        raise AccessDenied(403, "forbidden",
                           f"role {principal.role!r} lacks the permission {permission!r}",
                           [{"field": "permission", "problem": f"{permission} required"}])


def check_scope(principal: Principal, scope: str, now: float,
                max_age: float = MAX_STEP_UP_SECONDS) -> None:
    """AccessDenied 403 naming the scope unless the principal's token carries it and was
    issued at most max_age seconds ago (a step-up token, pulse.grants)."""
    fresh = principal.issued_at is not None and now - principal.issued_at <= max_age
    if scope not in principal.scopes or not fresh:
        problem = (f"{scope} required: a token with the {scope!r} scope issued at most "
                   f"{max_age // 60:.0f} minutes ago (POST /api/analytics/access/step-up)")
        raise AccessDenied(403, "step-up-required",
                           f"this request needs a step-up token with the scope {scope!r}"
                           + ("" if scope not in principal.scopes else
                              " (this one was issued too long ago)"),
                           [{"field": "scope", "problem": problem}])


# Routes served without a bearer token on purpose, by (process, route template): every
# other route of every Pulse process names a permission of ROLE_PERMISSIONS
# (tests/test_route_coverage.py walks them all).
_EVERY_PROCESS = ("bridge", "exporters.events", "exporters.ai", "exporters.integrations",
                  "exporters.infrastructure")
OPEN_ROUTES: dict[tuple[str, str], str] = {
    **{(p, r): why for p in _EVERY_PROCESS for r, why in (
        ("/metrics", "Prometheus scrapes it"),
        ("/-/healthy", "liveness"),
        ("/-/ready", "readiness"),
        ("/static/<path:filename>", "Flask's static files: Pulse ships none"),
    )},
    ("bridge", "/api/analytics/health"): "health, for load balancers and status pages",
    ("bridge", "/api/openapi.json"): "the published contract, no data",
    ("exporters.events", "/api/openapi.json"): "the published contract, no data",
    ("exporters.ai", "/api/openapi.json"): "the published contract, no data",
    ("bridge", "/hooks/alertmanager"): "Alertmanager's webhook: its own token",
    ("exporters.integrations", "/webhooks/email"): "the email provider's webhook: its own "
                                                   "token",
    ("exporters.events", "/api/analytics/events"): "ingest: a write key per source",
    ("exporters.events", "/api/analytics/events/batch"): "ingest: a write key per source",
    ("exporters.events", "/v1/*"): "Segment-compatible ingest: a write key per source",
}
