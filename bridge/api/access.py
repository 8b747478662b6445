"""Grants and step-up (issue 18): tokens issued at run time, each with an expiry.

`POST /api/analytics/access/grants` gives a role to a subject until `expiresAt` (at most 90
days ahead); `GET` lists them without secrets; `DELETE .../{id}` revokes one.
`POST /api/analytics/access/step-up` gives the caller a token of their own role carrying the
`personal_data` scope for at most 1 hour, with the reason in the audit log. Tokens are shown
once and kept hashed (pulse.grants); every process re-reads the grant file when it changes,
so a revocation is honoured everywhere at the next request.
"""

from __future__ import annotations

from datetime import UTC, datetime

from flask import Blueprint, current_app, g

from bridge.auth import current_principal, require
from bridge.errors import bad_request
from bridge.services.errors import NotFound
from bridge.validation import request_body
from pulse.access import ROLE_PERMISSIONS
from pulse.grants import (
    DEFAULT_STEP_UP_SECONDS,
    MAX_GRANT_SECONDS,
    MAX_STEP_UP_SECONDS,
    PERSONAL_DATA,
    Grant,
    GrantFile,
)
from pulse.rfc3339 import parse_time, rfc3339

bp = Blueprint("access", __name__, url_prefix="/api/analytics/access")


def _stamp(seconds: float | None) -> str | None:
    return None if seconds is None else rfc3339(datetime.fromtimestamp(seconds, UTC))


def grant_view(grant: Grant, now: float) -> dict:
    """A grant as listed: everything but its token hash."""
    status = "revoked" if grant.revoked_at is not None else (
        "active" if grant.active(now) else "expired")
    return {"id": grant.id, "role": grant.role, "subject": grant.subject,
            "coachId": grant.coach_id, "scopes": list(grant.scopes), "status": status,
            "issuedAt": _stamp(grant.issued_at), "expiresAt": _stamp(grant.expires_at),
            "issuedBy": grant.issued_by, "reason": grant.reason,
            "revokedAt": _stamp(grant.revoked_at)}


def expiry(raw: str | None, now: float, longest: float, default: float | None = None) -> float:
    """The Unix time of an `expiresAt`: in the future and at most `longest` seconds ahead."""
    if raw is None and default is not None:
        return now + default
    stamp = parse_time(raw)
    if stamp is None:
        raise bad_request("expiresAt is invalid", "expiresAt",
                          "an RFC 3339 date-time with a zone, e.g. 2027-01-31T18:00:00Z")
    at = stamp.timestamp()
    if at <= now:
        raise bad_request("expiresAt is invalid", "expiresAt", "must be in the future")
    if at - now > longest:
        limit = f"{longest / 86400:.0f} days" if longest >= 86400 else f"{longest / 60:.0f} minutes"
        raise bad_request("expiresAt is invalid", "expiresAt", f"at most {limit} ahead")
    return at


def _store() -> GrantFile:
    return current_app.extensions["pulse.tokens"].grants


def _now() -> float:
    return current_app.extensions["pulse.tokens"].clock()


def _issued(grant: Grant, token: str) -> dict:
    # The one answer that carries the token: it is not kept anywhere in clear.
    return {"id": grant.id, "token": token, "role": grant.role, "subject": grant.subject,
            "coachId": grant.coach_id, "scopes": list(grant.scopes),
            "issuedAt": _stamp(grant.issued_at), "expiresAt": _stamp(grant.expires_at)}


@bp.post("/grants")
@require("access:grants")
def create_grant():
    """Grant a role to a subject until expiresAt (at most 90 days); the token is shown once."""
    body = request_body()
    now = _now()
    if body["role"] not in ROLE_PERMISSIONS:
        raise bad_request("role is invalid", "role",
                          f"one of {', '.join(sorted(ROLE_PERMISSIONS))}")
    coach_id = body.get("coachId")
    if body["role"] == "coach" and coach_id is None:
        raise bad_request("coachId is required for the coach role", "coachId",
                          "required when role is coach (a coach sees their own clients)")
    if body["role"] != "coach" and coach_id is not None:
        raise bad_request("coachId is only for the coach role", "coachId",
                          "allowed only when role is coach")
    expires = expiry(body["expiresAt"], now, MAX_GRANT_SECONDS)
    principal = current_principal()
    if principal.expires_at is not None and expires > principal.expires_at:
        raise bad_request("expiresAt is invalid", "expiresAt",
                          "after the expiry of the token that asks (a grant may not outlive it)")
    # A grant never reaches tenants its issuer may not use.
    grant, token = _store().issue(role=body["role"], subject=body["subject"], issued_at=now,
                                  expires_at=expires, issued_by=principal.name,
                                  coach_id=coach_id, tenants=principal.tenants)
    return _issued(grant, token), 201


@bp.get("/grants")
@require("access:grants")
def list_grants():
    """Every grant (active, expired or revoked in the last 7 days), never a token or hash."""
    now = _now()
    grants = [grant_view(gr, now) for gr in sorted(_store().grants(),
                                                   key=lambda gr: gr.issued_at, reverse=True)]
    return {"grants": grants, "count": len(grants)}


@bp.delete("/grants/<grant_id>")
@require("access:grants")
def revoke_grant(grant_id: str):
    """Revoke a grant: its token is refused (401) by every process from the next request."""
    now = _now()
    grant = _store().revoke(grant_id, at=now, by=current_principal().name)
    if grant is None:
        raise NotFound(f"no grant {grant_id!r}", [{"field": "id", "problem": "unknown grant"}])
    return grant_view(grant, now)


@bp.post("/step-up")
@require("access:step_up")
def step_up():
    """A short-lived token (at most 1 h) of the caller's role carrying personal_data."""
    body = request_body()
    principal = current_principal()
    now = _now()
    # Recorded with this request in the audit log (the reason, never the token).
    g.step_up_reason = body["reason"]
    expires = expiry(body.get("expiresAt"), now, MAX_STEP_UP_SECONDS, DEFAULT_STEP_UP_SECONDS)
    if principal.expires_at is not None and expires > principal.expires_at:
        # A token may not outlive the one that asked for it.
        expires = principal.expires_at
    grant, token = _store().issue(role=principal.role, subject=principal.name, issued_at=now,
                                  expires_at=expires, issued_by=principal.name,
                                  coach_id=principal.coach_id, tenants=principal.tenants,
                                  scopes=(PERSONAL_DATA,), reason=body["reason"])
    return _issued(grant, token), 201
