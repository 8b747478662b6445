"""Notification delivery: Alertmanager's notifications to apprise channels, exactly once.

`Delivery` holds what sending needs (channels, notifier, delivery state, history, metrics,
a sender pool); `deliver` sends one validated webhook payload to every target not yet
served for it, records each success durably (delivery_log.py), feeds the incident store,
and raises Unavailable while any channel failed, so Alertmanager retries only those.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

from flask import Flask
from prometheus_client import Counter, Histogram

from bridge.services import DELIVERY, INCIDENTS, service
from bridge.services.delivery_log import DeliveryState, History, notification_key
from bridge.services.errors import NotFound, Unavailable
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
        self.incidents = service(app, INCIDENTS)
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

    def send_test(self, channel: str, title: str, message: str, kind) -> tuple[int, int]:
        """Send a test message to every target of one channel: (targets, delivered).

        NotFound when no such channel is configured, Unavailable when a target failed.
        """
        if channel not in self.channels:
            raise NotFound(f"no channel named {channel[:64]!r}",
                           [{"field": "channel", "problem": "not configured in bridge.channels"}],
                           code="unknown_channel")
        targets = targets_for([channel], self.channels)
        results = [self.notifier.send(t, title, message, kind) for t in targets]
        for ok in results:
            self.sent.labels(channel, "success" if ok else "failure").inc()
        if not all(results):
            raise Unavailable(f"{len(results) - sum(results)} of {len(results)} target(s) of "
                              f"{channel!r} failed",
                              [{"field": "channel", "problem": "delivery failed"}],
                              code="delivery_failed")
        return len(targets), sum(results)


def init_app(app: Flask) -> Delivery:
    """Build the app's delivery machinery (after the incident store, which it feeds)."""
    app.extensions[DELIVERY] = Delivery(app)
    return app.extensions[DELIVERY]


def deliver(delivery: Delivery, payload: dict) -> tuple[dict, int]:
    """Deliver a validated payload; (answer, 200), or Unavailable while a channel failed."""
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
            raise Unavailable(f"delivery failed on {len(failed)} channel(s); Alertmanager "
                              f"will retry them (the others are not sent again)",
                              [{"field": "channel", "problem": f"{c}: delivery failed"}
                               for c in failed], code="delivery_failed")
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
