"""GET /api/analytics/audit: the audit log, for admins and auditors."""

from __future__ import annotations

from datetime import UTC, datetime

from flask import Blueprint, current_app, request

from bridge.auth import require
from bridge.errors import bad_request

bp = Blueprint("audit", __name__, url_prefix="/api/analytics")
OUTCOMES = ("allowed", "refused", "error")
METHODS = ("GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS")


@bp.get("/audit")
@require("audit:read")
def audit():
    """The newest audit entries of every process (filters: who, role, method, outcome,
    process, path prefix, since)."""
    args = request.args
    raw_limit = args.get("limit", "100")
    if not raw_limit.isdigit() or not 1 <= int(raw_limit) <= 1000:
        raise bad_request("limit must be an integer from 1 to 1000", "limit",
                          f"{raw_limit!r} is out of range")
    filters = {k: args.get(k) for k in ("who", "role", "method", "outcome", "process",
                                         "path")}
    if filters["outcome"] is not None and filters["outcome"] not in OUTCOMES:
        raise bad_request("unknown outcome", "outcome", f"one of {', '.join(OUTCOMES)}")
    if filters["method"] is not None:
        filters["method"] = filters["method"].upper()
        if filters["method"] not in METHODS:
            raise bad_request("unknown method", "method", f"one of {', '.join(METHODS)}")
    since = args.get("since")
    if since is not None:
        try:
            parsed = datetime.fromisoformat(since.replace("Z", "+00:00"))
        except ValueError:
            raise bad_request("since must be an ISO 8601 time", "since",
                              f"{since!r} is not a time") from None
        if parsed.tzinfo is None:
            raise bad_request("since needs a time zone", "since", "add Z or +00:00")
        filters["since"] = parsed.astimezone(UTC).isoformat(timespec="milliseconds")
    entries = current_app.extensions["pulse.audit"].read(int(raw_limit), **filters)
    return {"entries": entries, "count": len(entries)}
