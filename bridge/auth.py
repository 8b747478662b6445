"""Tokens (bearer or Basic-auth password), roles and permissions, and the audit log."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import wraps
from pathlib import Path

from flask import Flask, current_app, g, request

from bridge.errors import ApiError

# Role -> permissions. The one place that says who may do what (seed NF-009).
ROLE_PERMISSIONS: dict[str, frozenset[str]] = {
    # admin holds every permission, among them privacy:withdraw (consent withdrawal).
    "admin": frozenset({"*"}),
    "engineer": frozenset({
        "rules:read", "rules:write", "rules:expr", "alerts:read", "alerts:test", "incidents:ack",
        "health:read",
        "metrics:read", "dashboards:read", "ai:read", "experiments:read", "experiments:write",
    }),
    "analyst": frozenset({
        "alerts:read", "health:read", "metrics:read", "dashboards:read", "reports:generate",
        "ai:read", "experiments:read", "datasets:generate",
    }),
    "executive": frozenset({
        "health:read", "metrics:read", "dashboards:read", "reports:generate", "ai:read",
        "experiments:read",
    }),
    # A coach sees aggregates of their own clients only; views narrow by g.principal.coach_id.
    "coach": frozenset({"dashboards:read", "metrics:read"}),
    # Read-only, time-limited (tokens of auditors must carry an expiry).
    "auditor": frozenset({
        "rules:read", "alerts:read", "health:read", "metrics:read", "dashboards:read",
        "ai:read", "experiments:read", "audit:read",
    }),
}


@dataclass(frozen=True)
class Principal:
    """Who is calling: the token's name, role and (for coaches) their coach id."""

    name: str
    role: str
    coach_id: str | None = None
    # Ruler tenants this token may use (None: all).
    tenants: frozenset[str] | None = None

    def can(self, permission: str) -> bool:
        """True when the role grants the permission."""
        perms = ROLE_PERMISSIONS.get(self.role, frozenset())
        return "*" in perms or permission in perms


def hash_token(token: str) -> str:
    """The stored form of a token (tokens are never kept in clear after load)."""
    return hashlib.sha256(token.encode()).hexdigest()


class TokenStore:
    """Configured tokens, kept as hashes, with their role and optional expiry."""

    def __init__(self, tokens):
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
                          frozenset(t["tenants"]) if t.get("tenants") is not None else None),
                expires)

    def authenticate(self, token: str, now: float | None = None) -> Principal | None:
        """The principal of a valid, unexpired token, or None."""
        digest = hash_token(token)
        for known, (principal, expires) in self._by_hash.items():
            if hmac.compare_digest(known, digest):
                if expires is not None and (now or time.time()) >= expires:
                    return None
                return principal
        return None


class AuditLog:
    """Append-only JSON lines: who, role, method, path, outcome, time. Never a token."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()

    def append(self, entry: dict) -> None:
        """Write one entry and flush it to the OS."""
        line = json.dumps(entry, sort_keys=True) + "\n"
        with self._lock, open(self.path, "a") as fh:
            fh.write(line)

    def read(self, limit: int = 100, **filters) -> list[dict]:
        """The newest entries matching filters, newest first.

        filters: who, role, method, outcome (exact), path (prefix), since (ISO time, inclusive).
        """
        try:
            lines = self.path.read_text().splitlines()
        except FileNotFoundError:
            return []
        since = filters.pop("since", None)
        prefix = filters.pop("path", None)
        out = []
        for line in reversed(lines):
            if len(out) >= limit:
                break
            try:
                entry = json.loads(line)
            except ValueError:
                continue  # a line torn by a kill mid-write is skipped, not fatal
            if since and entry.get("time", "") < since:
                continue
            if prefix and not entry.get("path", "").startswith(prefix):
                continue
            if all(entry.get(k) == v for k, v in filters.items() if v is not None):
                out.append(entry)
        return out


def init_app(app: Flask) -> None:
    """Attach the token store and audit log, and audit every request after it is answered."""
    cfg = app.config["PULSE"]
    app.extensions["pulse.tokens"] = TokenStore(cfg.bridge.tokens)
    app.extensions["pulse.audit"] = AuditLog(Path(cfg.data_dir) / "audit" / "audit.log")

    @app.after_request
    def audit(response):
        if request.path.startswith(("/api/", "/prometheus/")):
            principal = g.get("principal")
            app.extensions["pulse.audit"].append({
                "time": datetime.now(UTC).isoformat(timespec="milliseconds"),
                "who": principal.name if principal else g.get("auth_failure", "anonymous"),
                "role": principal.role if principal else None,
                "method": request.method,
                "path": request.path,
                "status": response.status_code,
                "outcome": "allowed" if response.status_code < 400 else "refused"
                if response.status_code in (401, 403) else "error",
            })
        return response


def _credentials() -> str | None:
    """The token of a bearer header, or the password of a Basic one (mimirtool's --key);
    the Basic user is kept in g.basic_user (it may name the tenant)."""
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    if scheme.lower() == "basic" and value.strip():
        try:
            user, sep, password = base64.b64decode(value.strip(), validate=True) \
                .decode("utf-8").partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return None
        if sep and password:
            g.basic_user = user
            return password
    return None


def current_principal() -> Principal:
    """Authenticate the request's bearer token, or Basic auth with the token as password
    (401 when missing, invalid or expired)."""
    if "principal" in g:
        return g.principal
    token = _credentials()
    if token is None:
        g.auth_failure = "anonymous"
        raise ApiError(401, "unauthorized", "a bearer token is required "
                       "(Authorization: Bearer <token>, or Basic auth with the token as "
                       "password)")
    principal = current_app.extensions["pulse.tokens"].authenticate(token)
    if principal is None:
        g.auth_failure = "invalid-token"
        raise ApiError(401, "unauthorized", "the token is not valid or has expired")
    g.principal = principal
    return principal


def current_tenant() -> str:
    """The ruler tenant of the request: X-Scope-OrgID, else the Basic-auth user, else
    `default`; 403 naming it when the token is limited to other tenants."""
    from bridge.services.ruler import DEFAULT_TENANT, check_tenant

    principal = current_principal()
    header = request.headers.get("X-Scope-OrgID")
    if header is not None:
        tenant = check_tenant(header.strip())
    elif g.get("basic_user"):
        tenant = check_tenant(g.basic_user)
    else:
        tenant = DEFAULT_TENANT
    if principal.tenants is not None and tenant not in principal.tenants:
        raise ApiError(403, "forbidden", f"this token may not use tenant {tenant!r}",
                       [{"field": "X-Scope-OrgID", "problem": f"tenant {tenant!r} not allowed "
                         "for this token (bridge.tokens[].tenants)"}])
    return tenant


def require(permission: str) -> Callable:
    """Decorator: the view needs an authenticated principal holding permission (403 names it)."""
    def decorate(view):
        @wraps(view)
        def wrapper(*args, **kwargs):
            principal = current_principal()
            if not principal.can(permission):
                raise ApiError(403, "forbidden",
                               f"role {principal.role!r} lacks the permission {permission!r}",
                               [{"field": "permission", "problem": f"{permission} required"}])
            return view(*args, **kwargs)
        wrapper.permission = permission
        return wrapper
    return decorate

