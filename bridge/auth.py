"""The bridge's side of access control: the request's principal and tenant, `require`, and
the audit of every request (pulse.access, pulse.audit)."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps

from flask import Flask, current_app, g, request

from bridge.errors import ApiError
from pulse.access import (  # noqa: F401  (re-exported: the bridge's views import them here)
    ROLE_PERMISSIONS,
    AccessDenied,
    Principal,
    TokenStore,
    authenticate,
    check,
    check_scope,
    credentials,
    hash_token,
)
from pulse.audit import AuditLog, audit_log_path  # noqa: F401  (re-exported)
from pulse.service import add_access, request_principal


def init_app(app: Flask) -> None:
    """Attach the token store and the audit chain shared by every process of the data dir
    (pulse.service.add_access: guarded requests and every 401/403 are recorded)."""
    cfg = app.config["PULSE"]
    add_access(app, cfg, "bridge")


def current_principal() -> Principal:
    """Authenticate the request's bearer token, or Basic auth with the token as password
    (401 when missing, invalid or expired)."""
    try:
        return request_principal()
    except AccessDenied as exc:
        raise ApiError(401, "unauthorized", exc.message) from None


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
    g.tenant = tenant  # for the request's audit record
    return tenant


def require(permission: str, scope: str | None = None) -> Callable:
    """Decorator: the view needs an authenticated principal holding permission (403 names it)
    and, with scope, a token carrying that scope issued at most 1 h ago (403 names it)."""
    def decorate(view):
        @wraps(view)
        def wrapper(*args, **kwargs):
            principal = current_principal()
            try:
                check(principal, permission)
                if scope is not None:
                    check_scope(principal, scope, current_app.extensions["pulse.tokens"].clock())
            except AccessDenied as exc:
                raise ApiError(403, "forbidden", exc.message, exc.details) from None
            return view(*args, **kwargs)
        wrapper.permission = permission
        wrapper.scope = scope
        return wrapper
    return decorate

