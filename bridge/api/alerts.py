"""GET /api/analytics/alerts, test notifications and incidents (acknowledge)."""

from __future__ import annotations

from collections.abc import Mapping

from flask import Blueprint, current_app, request

from bridge.auth import current_principal, require
from bridge.errors import ApiError, bad_request
from bridge.services import ALERTMANAGER, DELIVERY, INCIDENTS, PROMETHEUS, service
from bridge.services.delivery import alert_fields
from bridge.services.notifier import NotifyType
from bridge.validation import request_body

bp = Blueprint("alerts_overview", __name__, url_prefix="/api/analytics/alerts")

TEST_SEVERITIES = {"info": NotifyType.INFO, "warning": NotifyType.WARNING,
                   "critical": NotifyType.FAILURE, "resolved": NotifyType.SUCCESS}


def alert_view(alert: Mapping) -> dict:
    """An Alertmanager v2 alert as the API's Alert."""
    status = alert.get("status") or {}
    return {
        **alert_fields(alert, status.get("state", "active")),
        "receivers": [r.get("name") for r in alert.get("receivers") or []],
        "silencedBy": list(status.get("silencedBy") or []),
        "inhibitedBy": list(status.get("inhibitedBy") or []),
    }


def rule_view(group: Mapping, rule: Mapping) -> dict:
    """A Prometheus alerting rule (from /api/v1/rules) as the API's AlertRule."""
    return {
        "name": rule.get("name"),
        "group": group.get("name"),
        "file": group.get("file"),
        "query": rule.get("query"),
        "duration": rule.get("duration", 0),
        "labels": dict(rule.get("labels") or {}),
        "annotations": dict(rule.get("annotations") or {}),
        "state": rule.get("state"),
        "health": rule.get("health"),
        "lastError": rule.get("lastError") or None,
        "activeAlerts": len(rule.get("alerts") or []),
    }


@bp.get("")
@require("alerts:read")
def overview():
    """AlertsResponse: active (Alertmanager), recent (delivery history), alertRules (Prometheus)."""
    limit = request.args.get("limit", "50")
    if not limit.isdigit() or not 1 <= int(limit) <= 500:
        raise bad_request("limit must be an integer from 1 to 500", "limit", "out of range")
    am = service(current_app, ALERTMANAGER)
    prom = service(current_app, PROMETHEUS)
    active = [alert_view(a) for a in am.alerts(active=True)]
    rules = [rule_view(g, r) for g in prom.rules() for r in g.get("rules") or []
             if r.get("type") == "alerting"]
    recent = service(current_app, DELIVERY).history.recent(int(limit))
    return {"active": active, "recent": recent, "alertRules": rules}


@bp.post("/test")
@require("alerts:test")
def send_test():
    """Send a test notification to one named channel; which of its targets got it."""
    body = request_body()
    channel = body["channel"]
    severity = body.get("severity", "info")
    title = body.get("title", "Pulse test notification")
    message = body.get("message", "This is a test notification from Pulse. No action needed.")
    targets, delivered = service(current_app, DELIVERY).send_test(
        channel, title, message, TEST_SEVERITIES[severity])
    return {"channel": channel, "targets": targets, "delivered": delivered}


@bp.get("/incidents")
@require("alerts:read")
def list_incidents():
    """Incidents (open ones first by default: ?status=open|resolved|all)."""
    status = request.args.get("status", "open")
    if status not in ("open", "resolved", "all"):
        raise bad_request("status must be open, resolved or all", "status", "unknown value")
    items = service(current_app, INCIDENTS).list(None if status == "all" else status)
    return {"incidents": items}


@bp.post("/incidents/<iid>/acknowledge")
@require("incidents:ack")
def acknowledge(iid: str):
    """Acknowledge an incident (idempotent; the first acknowledgement is kept)."""
    record = service(current_app, INCIDENTS).acknowledge(iid, current_principal().name)
    if record is None:
        raise ApiError(404, "not_found", f"no incident {iid[:40]!r}",
                       [{"field": "id", "problem": "unknown incident"}])
    return record
