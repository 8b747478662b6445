"""Notification delivery: channels, templates, apprise and incident-tool sends, no duplicates.

`deliver` takes a validated webhook payload and sends it to every target of its
channels not yet served for this notification, through apprise or the incident
tools (bridge/services/pagers.py). What was delivered is kept in the delivery
log (bridge/services/delivery_log.py), which also drops what other
Alertmanager peers send again. While a target failed, deliver raises
Unavailable, so the webhook answers 503 and Alertmanager retries only what failed.
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
from bridge.services.delivery_log import DeliveryState, History, group_id, notification_key
from bridge.services.errors import NotFound, Unavailable
from bridge.services.notifier import (
    Notifier,
    Target,
    channels_for,
    entry_secrets,
    notify_type,
    targets_for,
)
from bridge.services.pagers import Pagers, incident_key
from bridge.services.templates import Rendered, Renderer
from pulse.config import parse_duration
from pulse.links import links
from pulse.log import register_secrets

log = logging.getLogger(__name__)

class Delivery:
    """Channels, renderer, senders, state, history, metrics and a sender pool."""

    def __init__(self, app: Flask):
        cfg = app.config["PULSE"]
        bridge = cfg.bridge
        data = Path(cfg.data_dir) / "delivery"
        self.channels: dict[str, list] = {k: list(v) for k, v in bridge.channels.items()}
        register_secrets(part for entries in self.channels.values() for entry in entries
                         for part in entry_secrets(entry))
        register_secrets([bridge.webhook_token])
        self.receivers: dict[str, list[str]] = {k: list(v) for k, v in bridge.receivers.items()}
        self.token: str = bridge.webhook_token or ""
        for receiver, names in self.receivers.items():
            for name in names:
                if name not in self.channels:
                    log.warning("bridge.receivers.%s names channel %r, which bridge.channels "
                                "does not define; it is skipped", receiver, name)
        timeout = parse_duration(bridge.delivery.timeout)
        self.notifier = Notifier(timeout=timeout)
        self.pagers = Pagers(timeout=timeout)
        bases = links(cfg)  # silence links on Alertmanager's, dashboards on Grafana's
        self.renderer = Renderer(bases.alertmanager, bases.grafana)
        self.state = DeliveryState(data / "state.jsonl",
                                   replay_window=parse_duration(bridge.delivery.replay_window),
                                   pending_ttl=parse_duration(bridge.delivery.pending_ttl))
        self.history = History(data / "history.jsonl", bridge.delivery.history_size)
        self.incidents = service(app, INCIDENTS)
        self.pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="deliver")
        registry = app.config["REGISTRY"]
        self.sent = Counter(
            "pulse_notifications", "Notifications per channel and result (success, failure, "
            "rejected: refused for good by an incident tool, skipped: already delivered, "
            "dropped: no such channel).",
            ["channel", "result"], registry=registry)
        self.latency = Histogram(
            "pulse_notification_delivery_duration_seconds",
            "Time to deliver one notification to one channel target.",
            ["channel"], registry=registry,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))
        self.webhooks = Counter(
            "pulse_alertmanager_webhooks", "Alertmanager webhook requests by outcome "
            "(delivered, partial: answered 5xx, duplicate: already delivered, from this or "
            "another Alertmanager peer, invalid, unauthorized).",
            ["outcome"], registry=registry)
        self.template_failures = Counter(
            "pulse_notification_template_failures",
            "Notifications sent with the plain fallback text: the templates did not render.",
            registry=registry)
        for name in self.channels:
            for result in ("success", "failure"):
                self.sent.labels(name, result)

    def render(self, payload: Mapping) -> Rendered:
        """The notification's text from the templates (counted when it fell back)."""
        page = self.renderer.render(payload)
        if page.fallback:
            self.template_failures.inc()
        return page

    def send_one(self, key: str, target: Target, payload: Mapping, page: Rendered,
                 paged: bool, record: bool = True) -> bool:
        """Deliver to one target, record success durably (unless record=False), count it.

        An incident tool's permanent refusal counts as done (retrying cannot help).
        """
        start = time.perf_counter()
        if target.kind == "apprise":
            result = "success" if self.notifier.send(
                target, page.title, page.text,
                notify_type(payload["status"], payload["alerts"])) else "failure"
        else:
            result = self.pagers.send(target.kind, target.url, target.secret,
                                      incident_key(payload["receiver"], payload["groupKey"]),
                                      payload, page, update=paged)
        self.latency.labels(target.channel).observe(time.perf_counter() - start)
        self.sent.labels(target.channel, result).inc()
        ok = result != "failure"
        if ok and record:
            self.state.record_success(key, target.id)
        return ok


    def send_test(self, channel: str, title: str, message: str, kind) -> tuple[int, int]:
        """Send a test message to every apprise target of one channel: (targets, delivered).

        A test must not open an incident on someone's pager: incident tools are left out.
        NotFound when no such channel is configured, Unavailable when a target failed.
        """
        if channel not in self.channels:
            raise NotFound(f"no channel named {channel[:64]!r}",
                           [{"field": "channel", "problem": "not configured in bridge.channels"}],
                           code="unknown_channel")
        targets = [t for t in targets_for([channel], self.channels) if t.kind == "apprise"]
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
    group = group_id(payload)
    with delivery.state.lock(key):
        if delivery.state.recently_done(key):
            delivery.webhooks.labels("duplicate").inc()
            return {"status": "duplicate", "key": key}, 200
        alerts, news = delivery.state.sort_alerts(group, payload["alerts"])
        already = delivery.state.succeeded(key)
        if not news and not already:
            # Every alert was delivered with this status (another peer's copy, or a
            # lagging peer's firing after the resolve): nothing to tell anyone.
            delivery.webhooks.labels("duplicate").inc()
            return {"status": "duplicate", "key": key}, 200
        status = "firing" if any(a.get("status") == "firing" for a in alerts) else "resolved"
        payload = dict(payload, alerts=alerts, status=status)
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
        page = delivery.render(payload)
        paged = delivery.state.paged(group)
        todo = [t for t in targets if t.id not in already]
        for t in targets:
            if t.id in already:
                delivery.sent.labels(t.channel, "skipped").inc()
        results = _send_all(delivery, key, todo, payload, page, paged)
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
        delivery.state.record_done(key, group, alerts)
        delivery.webhooks.labels("delivered").inc()
        return {"status": "delivered", "key": key, "channels": per_channel}, 200


def _send_all(delivery: Delivery, key: str, todo: list[Target], payload: Mapping,
              page: Rendered, paged: bool) -> dict[Target, bool]:
    """Send to every target in parallel; durably record each success that must be.

    A success is recorded at once while other targets are still in flight (a
    kill -9 before they finish must not make the retry repeat it). The last
    target to finish is not recorded when everything succeeded: record_done
    covers it, which saves one fsync per notification.
    """
    if len(todo) == 1:
        return {todo[0]: delivery.send_one(key, todo[0], payload, page, paged, record=False)}
    lock = threading.Lock()
    finished: dict[Target, bool] = {}

    def one(target: Target) -> None:
        ok = delivery.send_one(key, target, payload, page, paged, record=False)
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
