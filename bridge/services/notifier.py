"""Alertmanager notifications -> apprise channels: which channels, what text, how it is sent.

Pure functions decide (channels_for, render, notify_type); `Notifier.send` does
the I/O through apprise. Channel URLs are secrets: they are only ever handed to
apprise, never logged or returned; a URL is named by its channel and a short
hash (`target_id`).
"""

from __future__ import annotations

import hashlib
import logging
import threading
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

with warnings.catch_warnings():
    # apprise imports the deprecated imghdr module; that warning only is silenced.
    warnings.filterwarnings("ignore", message="'imghdr' is deprecated",
                            category=DeprecationWarning)
    import apprise
    from apprise.common import NotifyType, OverflowMode

log = logging.getLogger(__name__)
# apprise and urllib3 log full service URLs (tokens in paths) and payloads at
# INFO/DEBUG; only their warnings are wanted, and those name no URL.
logging.getLogger("apprise").setLevel(logging.WARNING)
logging.getLogger("urllib3").setLevel(logging.WARNING)

DEFAULT_RECEIVER = "default"
# Locating labels shown on the "Where:" line; the rest are routing labels.
ROUTING_LABELS = frozenset({"alertname", "severity", "team", "channels"})
SEVERITY_TYPES = {
    "critical": NotifyType.FAILURE,
    "warning": NotifyType.WARNING,
    "info": NotifyType.INFO,
    "none": NotifyType.INFO,
}


@dataclass(frozen=True)
class Target:
    """One apprise URL of one channel; `id` names it without revealing the URL."""

    channel: str
    id: str
    url: str

    def __repr__(self) -> str:  # never show the URL, even in a traceback
        return f"Target({self.channel!r}, {self.id!r})"


def target_id(channel: str, url: str) -> str:
    """A stable, non-secret name for one URL of a channel."""
    return f"{channel}#{hashlib.sha256(url.encode()).hexdigest()[:12]}"


def channels_for(receiver: str, alerts: Sequence[Mapping], channels: Mapping[str, Sequence[str]],
                 receivers: Mapping[str, Sequence[str]]) -> tuple[list[str], list[str]]:
    """(configured channel names, unknown names) a notification to receiver goes to.

    The receiver's channels are `receivers[receiver]` when configured, else the
    channel named like the receiver, else the `default` receiver's channels
    (`receivers.default`, else the channel `default`). Each alert's `channels`
    label (comma-separated) adds channels.
    """
    def of(name: str) -> list[str] | None:
        if name in receivers:
            return list(receivers[name])
        if name in channels:
            return [name]
        return None

    wanted = of(receiver)
    if wanted is None:
        wanted = of(DEFAULT_RECEIVER) or []
    for alert in alerts:
        extra = (alert.get("labels") or {}).get("channels", "")
        wanted += [c.strip() for c in extra.split(",") if c.strip()]
    known: list[str] = []
    unknown: list[str] = []
    for name in wanted:
        bucket = known if name in channels else unknown
        if name not in bucket:
            bucket.append(name)
    return known, unknown


def targets_for(names: Sequence[str], channels: Mapping[str, Sequence[str]]) -> list[Target]:
    """Every apprise URL of the named channels."""
    return [Target(name, target_id(name, url), url) for name in names for url in channels[name]]


def notify_type(status: str, alerts: Sequence[Mapping]) -> NotifyType:
    """apprise's type for a notification: resolved -> success, else by the worst severity."""
    if status == "resolved":
        return NotifyType.SUCCESS
    order = [NotifyType.FAILURE, NotifyType.WARNING, NotifyType.INFO]
    found = [SEVERITY_TYPES.get((a.get("labels") or {}).get("severity", ""), NotifyType.INFO)
             for a in alerts if a.get("status", "firing") == "firing"] or [NotifyType.INFO]
    return min(found, key=order.index)


def _alert_text(alert: Mapping) -> str:
    labels = alert.get("labels") or {}
    ann = alert.get("annotations") or {}
    where = " ".join(f"{k}={v}" for k, v in sorted(labels.items()) if k not in ROUTING_LABELS)
    lines = [ann.get("summary") or labels.get("alertname", "alert")]
    if where:
        lines.append(f"Where: {where}")
    if ann.get("value"):
        lines.append(f"Value: {ann['value']}")
    if ann.get("description"):
        lines.append(ann["description"])
    since = f"Since: {alert.get('startsAt', '')}"
    if alert.get("status") == "resolved":
        since += f", resolved {alert.get('endsAt', '')}"
    lines.append(since)
    if ann.get("runbook_url"):
        lines.append(f"Runbook: {ann['runbook_url']}")
    if ann.get("dashboard_url"):
        lines.append(f"Dashboard: {ann['dashboard_url']}")
    if alert.get("generatorURL"):
        # Prometheus's graph of the expression, on its --web.external-url.
        lines.append(f"Source: {alert['generatorURL']}")
    return "\n".join(lines)


def render(payload: Mapping) -> tuple[str, str]:
    """(title, body) of a webhook payload: the layout of alertmanager/templates/pulse.tmpl."""
    alerts = payload.get("alerts") or []
    firing = [a for a in alerts if a.get("status") == "firing"]
    resolved = [a for a in alerts if a.get("status") == "resolved"]
    common = payload.get("commonLabels") or {}
    group = payload.get("groupLabels") or {}
    name = common.get("alertname") or group.get("alertname") or "alerts"
    status = payload.get("status", "firing")
    title = f"[{status.upper()}{f':{len(firing)}' if status == 'firing' else ''}] {name}"
    if common.get("severity"):
        title += f" ({common['severity']})"
    parts = []
    if firing:
        parts.append("Firing:\n" + "\n\n".join(_alert_text(a) for a in firing))
    if resolved:
        parts.append("Resolved:\n" + "\n\n".join(_alert_text(a) for a in resolved))
    if payload.get("externalURL"):
        # Alertmanager's own page of the alerts (silence them there), on its external URL.
        parts.append(f"Alertmanager: {payload['externalURL']}/#/alerts")
    return title, "\n\n".join(parts)


class Notifier:
    """Sends one message to one apprise target; long messages are split to the service's limit."""

    def __init__(self, timeout: float = 10.0):
        self.timeout = timeout
        self._plugins: dict[str, tuple[threading.Lock, object]] = {}
        self._lock = threading.Lock()

    def _cached(self, target: Target) -> tuple[threading.Lock, object]:
        # Parsing a URL costs about as much as a local delivery: keep one plugin per
        # target, used by one thread at a time (plugins keep throttling state).
        with self._lock:
            if target.id not in self._plugins:
                self._plugins[target.id] = (threading.Lock(), self.plugin(target))
            return self._plugins[target.id]

    def plugin(self, target: Target):
        """The apprise plugin for a target's URL (None when apprise cannot parse it)."""
        plugin = apprise.Apprise.instantiate(target.url, suppress_exceptions=True)
        if not plugin:
            return None
        # Never reject a message for its length: split it to the service's limit, unless
        # the URL chose its own overflow mode (?overflow=truncate).
        if "overflow=" not in target.url:
            plugin.overflow_mode = OverflowMode.SPLIT
        for attr in ("socket_connect_timeout", "socket_read_timeout"):
            if hasattr(plugin, attr):
                setattr(plugin, attr, self.timeout)
        return plugin

    def send(self, target: Target, title: str, body: str, kind: NotifyType) -> bool:
        """Deliver to one target; True on success. Failures are logged by channel, not URL."""
        lock, plugin = self._cached(target)
        if plugin is None:
            log.error("channel %s: an apprise URL (%s) cannot be parsed", target.channel,
                      target.id)
            return False
        try:
            with lock:
                ok = bool(plugin.notify(body=body, title=title, notify_type=kind))
        except Exception as exc:  # a plugin bug must not lose the other channels
            log.error("channel %s (%s): apprise raised %s", target.channel, target.id,
                      type(exc).__name__)
            return False
        if not ok:
            log.warning("channel %s (%s): delivery failed", target.channel, target.id)
        return ok


def url_secrets(url: str) -> list[str]:
    """The parts of an apprise URL that may be credentials, for log redaction.

    Service tokens sit in the user info, the path or the query of apprise URLs
    (slack://T0/B0/XXXX, json://host/token, ?apikey=...); every such part long
    enough to be a credential is returned besides the whole URL.
    """
    from urllib.parse import parse_qsl, unquote, urlsplit

    parts = [url]
    try:
        split = urlsplit(url)
    except ValueError:
        return parts
    if split.password:
        parts += [split.password, f"{split.username}:{split.password}"]
    parts += [unquote(seg) for seg in split.path.split("/") if len(seg) >= 8]
    parts += [v for _, v in parse_qsl(split.query) if len(v) >= 8]
    return parts
