"""POST /hooks/alertmanager: Alertmanager's webhook (version 4) delivered to apprise channels.

The view validates the payload (400 naming the field, nothing sent), works out
the channels, sends to every target not yet served for this notification, and
answers 5xx while any target failed so Alertmanager retries; targets that
succeeded are remembered (bridge/services/delivery_log.py) and not sent again.
"""

from __future__ import annotations

import hmac
import logging
import threading
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

from flask import Blueprint, Flask, current_app, request
from prometheus_client import Counter, Histogram

from bridge.errors import ApiError, bad_request
from bridge.services import incidents
from bridge.services.delivery_log import DeliveryState, History, notification_key
from bridge.services.errors import Invalid
from bridge.services.notifier import (
    Notifier,
    Target,
    channels_for,
    notify_type,
    render,
    targets_for,
    url_secrets,
)
from pulse.config import parse_duration
from pulse.log import register_secrets

log = logging.getLogger(__name__)
bp = Blueprint("hooks", __name__)

EXTENSION = "pulse.delivery"
MAX_BODY = 4 * 1024 * 1024
STATUSES = ("firing", "resolved")


class Delivery:
    """What the webhook needs: channels, notifier, state, history, metrics, a sender pool."""

    def __init__(self, app: Flask):
        cfg = app.config["PULSE"]
        bridge = cfg.bridge
        data = Path(cfg.data_dir) / "delivery"
        self.channels: dict[str, list[str]] = {k: list(v) for k, v in bridge.channels.items()}
        register_secrets(part for urls in self.channels.values() for url in urls
                         for part in url_secrets(url))
        register_secrets([bridge.webhook_token])
        self.receivers: dict[str, list[str]] = {k: list(v) for k, v in bridge.receivers.items()}
        self.token: str = bridge.webhook_token or ""
        for receiver, names in self.receivers.items():
            for name in names:
                if name not in self.channels:
                    log.warning("bridge.receivers.%s names channel %r, which bridge.channels "
                                "does not define; it is skipped", receiver, name)
        self.notifier = Notifier(timeout=parse_duration(bridge.delivery.timeout))
        self.state = DeliveryState(data / "state.jsonl",
                                   replay_window=parse_duration(bridge.delivery.replay_window),
                                   pending_ttl=parse_duration(bridge.delivery.pending_ttl))
        self.history = History(data / "history.jsonl", bridge.delivery.history_size)
        self.incidents = incidents.store(app)
        self.pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="apprise")
        registry = app.config["REGISTRY"]
        self.sent = Counter(
            "pulse_notifications", "Notifications per channel and result (success, failure, "
            "skipped: already delivered, dropped: no such channel).",
            ["channel", "result"], registry=registry)
        self.latency = Histogram(
            "pulse_notification_delivery_duration_seconds",
            "Time to deliver one notification to one channel target through apprise.",
            ["channel"], registry=registry,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))
        self.webhooks = Counter(
            "pulse_alertmanager_webhooks", "Alertmanager webhook requests by outcome "
            "(delivered, partial: answered 5xx, duplicate, invalid, unauthorized).",
            ["outcome"], registry=registry)
        for name in self.channels:
            for result in ("success", "failure"):
                self.sent.labels(name, result)

    def send_one(self, key: str, target: Target, title: str, body: str, kind,
                 record: bool = True) -> bool:
        """Deliver to one target, record success durably (unless record=False), count it."""
        start = time.perf_counter()
        ok = self.notifier.send(target, title, body, kind)
        self.latency.labels(target.channel).observe(time.perf_counter() - start)
        self.sent.labels(target.channel, "success" if ok else "failure").inc()
        if ok and record:
            self.state.record_success(key, target.id)
        return ok


def setup(app: Flask) -> Delivery:
    """Create the app's delivery machinery (once)."""
    if EXTENSION not in app.extensions:
        app.extensions[EXTENSION] = Delivery(app)
    return app.extensions[EXTENSION]


bp.record_once(lambda state: setup(state.app))


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


def _check_token(delivery: Delivery) -> None:
    if not delivery.token:
        return
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(),
                                                               delivery.token.encode()):
        delivery.webhooks.labels("unauthorized").inc()
        raise ApiError(401, "unauthorized", "the webhook needs the bridge's webhook token "
                       "(Authorization: Bearer <bridge.webhook_token>)")


def deliver(delivery: Delivery, payload: dict) -> tuple[dict, int]:
    """Deliver a validated payload; (response body, HTTP status)."""
    key = notification_key(payload)
    alerts = payload["alerts"]
    with delivery.state.lock(key):
        if delivery.state.recently_done(key):
            delivery.webhooks.labels("duplicate").inc()
            return {"status": "duplicate", "key": key}, 200
        known, unknown = channels_for(payload["receiver"], alerts, delivery.channels,
                                      delivery.receivers)
        for name in unknown:
            delivery.sent.labels("unknown", "dropped").inc()
            log.warning("receiver %s: channel %r is not configured in bridge.channels",
                        payload["receiver"], name[:64])
        targets = targets_for(known, delivery.channels)
        if not targets:
            delivery.sent.labels("none", "dropped").inc()
            log.warning("receiver %s has no channel (set bridge.receivers or a `default` "
                        "channel); notification dropped", payload["receiver"])
        title, body = render(payload)
        kind = notify_type(payload["status"], alerts)
        already = delivery.state.succeeded(key)
        todo = [t for t in targets if t.id not in already]
        for t in targets:
            if t.id in already:
                delivery.sent.labels(t.channel, "skipped").inc()
        results = _send_all(delivery, key, todo, title, body, kind)
        per_channel: dict[str, str] = {}
        for t in targets:
            ok = results.get(t, True)
            previous = per_channel.get(t.channel, "sent")
            per_channel[t.channel] = "sent" if ok and previous == "sent" else "failed"
        failed = sorted(c for c, r in per_channel.items() if r == "failed")
        delivered = [c for c, r in per_channel.items() if r == "sent"]
        delivery.incidents.observe(alerts, delivered)
        now = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        delivery.history.add(_history_entry(payload, a, now, per_channel, unknown)
                             for a in alerts)
        if failed:
            delivery.webhooks.labels("partial").inc()
            raise ApiError(503, "delivery_failed",
                           f"delivery failed on {len(failed)} channel(s); Alertmanager "
                           f"will retry them (the others are not sent again)",
                           [{"field": "channel", "problem": f"{c}: delivery failed"}
                            for c in failed])
        delivery.state.record_done(key)
        delivery.webhooks.labels("delivered").inc()
        return {"status": "delivered", "key": key, "channels": per_channel}, 200


def _send_all(delivery: Delivery, key: str, todo: list[Target], title: str, body: str,
              kind) -> dict[Target, bool]:
    """Send to every target in parallel; durably record each success that must be.

    A success is recorded at once while other targets are still in flight (a
    kill -9 before they finish must not make the retry repeat it). The last
    target to finish is not recorded when everything succeeded: record_done
    covers it, which saves one fsync per notification.
    """
    if len(todo) == 1:
        return {todo[0]: delivery.send_one(key, todo[0], title, body, kind, record=False)}
    lock = threading.Lock()
    finished: dict[Target, bool] = {}

    def one(target: Target) -> None:
        ok = delivery.send_one(key, target, title, body, kind, record=False)
        with lock:
            finished[target] = ok
            last = len(finished) == len(todo)
            record = ok and (not last or not all(finished.values()))
        if record:
            delivery.state.record_success(key, target.id)

    for future in [delivery.pool.submit(one, t) for t in todo]:
        future.result()
    return finished


def alert_fields(alert: Mapping, state) -> dict:
    """The API's Alert fields every view of an alert shares (webhook or Alertmanager API)."""
    labels = alert.get("labels") or {}
    ann = alert.get("annotations") or {}
    return {
        "id": alert.get("fingerprint", ""),
        "name": labels.get("alertname", ""),
        "severity": labels.get("severity"),
        "team": labels.get("team"),
        "state": state,
        "labels": dict(labels),
        "summary": ann.get("summary", ""),
        "description": ann.get("description", ""),
        "runbookUrl": ann.get("runbook_url"),
        "dashboardUrl": ann.get("dashboard_url"),
        "startsAt": alert.get("startsAt"),
    }


def _history_entry(payload: Mapping, alert: Mapping, now: str, channels: dict[str, str],
                   unknown: list[str]) -> dict:
    return {
        **alert_fields(alert, alert.get("status")),
        "endsAt": alert.get("endsAt") if alert.get("status") == "resolved" else None,
        "receiver": payload.get("receiver"),
        "notifiedAt": now,
        "channels": dict(channels, **{name[:64]: "unknown" for name in unknown}),
    }


@bp.post("/hooks/alertmanager")
def alertmanager_webhook():
    """Deliver an Alertmanager notification (webhook payload version 4) to its channels."""
    delivery = setup(current_app)
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
