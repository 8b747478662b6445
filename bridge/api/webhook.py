"""POST /hooks/alertmanager: Alertmanager's webhook (version 4) delivered to apprise channels.

The view checks the token and validates the payload (400 naming the field, nothing
sent); bridge.services.delivery works out the channels, sends to every target not yet
served for this notification and fails (503) while any target failed, so Alertmanager
retries; targets that succeeded are remembered and not sent again.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping

from flask import Blueprint, current_app, request

from bridge.errors import ApiError, bad_request
from bridge.services import DELIVERY, service
from bridge.services.delivery import deliver
from bridge.services.errors import Invalid

bp = Blueprint("hooks", __name__)

MAX_BODY = 4 * 1024 * 1024
STATUSES = ("firing", "resolved")


def _require_str(obj: Mapping, field: str, where: str, choices: tuple[str, ...] = ()) -> str:
    value = obj.get(field)
    if not isinstance(value, str):
        raise bad_request(f"{where}{field} must be a string", f"{where}{field}",
                          "missing" if value is None else "not a string")
    if choices and value not in choices:
        raise bad_request(f"{where}{field} must be one of {', '.join(choices)}",
                          f"{where}{field}", f"{value[:40]!r} is not one of {list(choices)}")
    return value


def _require_labels(obj: Mapping, field: str, where: str, required: bool) -> None:
    value = obj.get(field)
    if value is None and not required:
        return
    if not isinstance(value, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise bad_request(f"{where}{field} must be an object of strings", f"{where}{field}",
                          "missing" if value is None else "not an object of string values")


def validate_payload(body) -> dict:
    """The webhook payload if it is a version 4 Alertmanager notification; else a 400."""
    if not isinstance(body, dict):
        raise bad_request("the body must be a JSON object", "body", "not a JSON object")
    version = body.get("version")
    if version != "4":
        raise bad_request("only Alertmanager webhook payload version 4 is accepted", "version",
                          "missing" if version is None else f"{str(version)[:20]!r} is not '4'")
    _require_str(body, "receiver", "")
    _require_str(body, "groupKey", "")
    _require_str(body, "status", "", STATUSES)
    for field in ("groupLabels", "commonLabels", "commonAnnotations"):
        _require_labels(body, field, "", required=False)
    alerts = body.get("alerts")
    if not isinstance(alerts, list) or not alerts:
        raise bad_request("alerts must be a non-empty list", "alerts",
                          "missing" if alerts is None else "empty or not a list")
    for i, alert in enumerate(alerts):
        where = f"alerts[{i}]."
        if not isinstance(alert, dict):
            raise bad_request(f"alerts[{i}] must be an object", f"alerts[{i}]", "not an object")
        _require_str(alert, "status", where, STATUSES)
        _require_labels(alert, "labels", where, required=True)
        _require_labels(alert, "annotations", where, required=False)
        if "alertname" not in alert["labels"]:
            raise bad_request("every alert needs an alertname label", f"{where}labels",
                              "no alertname")
        _require_str(alert, "startsAt", where)
        for field in ("endsAt", "fingerprint"):
            if field in alert and not isinstance(alert[field], str):
                raise bad_request(f"{where}{field} must be a string", f"{where}{field}",
                                  "not a string")
    return body


def _check_token(delivery) -> None:
    if not delivery.token:
        return
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(),
                                                               delivery.token.encode()):
        delivery.webhooks.labels("unauthorized").inc()
        raise ApiError(401, "unauthorized", "the webhook needs the bridge's webhook token "
                       "(Authorization: Bearer <bridge.webhook_token>)")


@bp.post("/hooks/alertmanager")
def alertmanager_webhook():
    """Deliver an Alertmanager notification (webhook payload version 4) to its channels."""
    delivery = service(current_app, DELIVERY)
    _check_token(delivery)
    if (request.content_length or 0) > MAX_BODY:
        delivery.webhooks.labels("invalid").inc()
        raise ApiError(413, "too_large", f"the body exceeds {MAX_BODY} bytes")
    body = request.get_json(force=True, silent=True)
    try:
        payload = validate_payload(body)
    except Invalid:
        delivery.webhooks.labels("invalid").inc()
        raise
    return deliver(delivery, payload)
