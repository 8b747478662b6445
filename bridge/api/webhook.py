"""POST /hooks/alertmanager: Alertmanager's webhook (version 4) delivered to apprise channels.

The view checks the token and validates the payload against its schema (the one
validator, bridge/validation.py: 400 naming the field, nothing sent);
bridge.services.delivery works out the channels, sends to every target not yet served
for this notification and fails (503) while any target failed, so Alertmanager retries;
targets that succeeded are remembered and not sent again.
"""

from __future__ import annotations

import hmac

from flask import Blueprint, current_app, request

from bridge.errors import ApiError
from bridge.services import DELIVERY, service
from bridge.services.delivery import deliver
from bridge.services.errors import Invalid
from bridge.validation import request_body

bp = Blueprint("hooks", __name__)

MAX_BODY = 4 * 1024 * 1024


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
    try:
        payload = request_body()  # the AlertmanagerWebhook schema (bridge/validation.py)
    except Invalid:
        delivery.webhooks.labels("invalid").inc()
        raise
    return deliver(delivery, payload)
