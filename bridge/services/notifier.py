"""Alertmanager notifications -> channels: which channels and targets, how apprise sends one.

Pure functions decide (channels_for, targets_for, notify_type); `Notifier.send`
does the I/O through apprise. The text comes from the templates
(bridge/services/templates.py). A channel's entries are apprise URLs and
incident-tool entries (pagerduty, opsgenie: bridge/services/pagers.py). URLs and
keys are secrets: never logged or returned; a target is named by its channel
and a short hash (`target_id`).
"""

from __future__ import annotations

import hashlib
import logging
import threading
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from bridge.services.templates import truncate

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
PAGER_URLS = {"pagerduty": "https://events.pagerduty.com/v2/enqueue",
              "opsgenie": "https://api.opsgenie.com"}
SEVERITY_TYPES = {
    "critical": NotifyType.FAILURE,
    "warning": NotifyType.WARNING,
    "info": NotifyType.INFO,
    "none": NotifyType.INFO,
}


@dataclass(frozen=True)
class Target:
    """One entry of one channel; `id` names it without revealing its URL or key.

    kind is "apprise" (url is the apprise URL) or an incident tool ("pagerduty",
    "opsgenie": url is its endpoint, secret its routing or API key).
    """

    channel: str
    id: str
    url: str
    kind: str = "apprise"
    secret: str = ""

    def __repr__(self) -> str:  # never show the URL or key, even in a traceback
        return f"Target({self.channel!r}, {self.id!r})"


def target_id(channel: str, url: str) -> str:
    """A stable, non-secret name for one URL of a channel."""
    return f"{channel}#{hashlib.sha256(url.encode()).hexdigest()[:12]}"


def entry_target(channel: str, entry) -> Target:
    """The target of one channel entry: an apprise URL or {pagerduty|opsgenie: {...}}."""
    if isinstance(entry, str):
        return Target(channel, target_id(channel, entry), entry)
    (kind, spec), = entry.items()
    secret = spec.get("routing_key") if kind == "pagerduty" else spec.get("api_key")
    url = spec.get("url") or PAGER_URLS[kind]
    return Target(channel, target_id(channel, f"{kind}|{url}|{secret}"), url, kind, secret)


def entry_secrets(entry) -> list[str]:
    """The parts of a channel entry that are credentials, for log redaction."""
    if isinstance(entry, str):
        return url_secrets(entry)
    (kind, spec), = entry.items()
    return [v for v in (spec.get("routing_key"), spec.get("api_key")) if v]


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


def targets_for(names: Sequence[str], channels: Mapping[str, Sequence]) -> list[Target]:
    """Every target (apprise URL or incident tool) of the named channels."""
    return [entry_target(name, entry) for name in names for entry in channels[name]]


def notify_type(status: str, alerts: Sequence[Mapping]) -> NotifyType:
    """apprise's type for a notification: resolved -> success, else by the worst severity."""
    if status == "resolved":
        return NotifyType.SUCCESS
    order = [NotifyType.FAILURE, NotifyType.WARNING, NotifyType.INFO]
    found = [SEVERITY_TYPES.get((a.get("labels") or {}).get("severity", ""), NotifyType.INFO)
             for a in alerts if a.get("status", "firing") == "firing"] or [NotifyType.INFO]
    return min(found, key=order.index)


class Notifier:
    """Sends one message to one apprise target, truncated (with a note) to the service's limit."""

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
        # One notification is one message: never split it (a split page is several
        # pages); the body is cut with a note in send(), apprise cuts what remains.
        plugin.overflow_mode = OverflowMode.TRUNCATE
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
        body = fit(plugin, title, body)
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


def fit(plugin, title: str, body: str) -> str:
    """The body cut (with a note) to what the service takes beside the title."""
    limit = int(getattr(plugin, "body_maxlen", 0) or 0)
    if limit <= 0:
        return body
    if not int(getattr(plugin, "title_maxlen", 0) or 0):
        limit -= len(title) + 2  # apprise puts the title into the body ("title\r\nbody")
    return truncate(body, max(limit, 1))


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


def valid_url(url: str) -> bool:
    """True when apprise understands the URL (`pulse check-config` checks every channel)."""
    return bool(apprise.Apprise.instantiate(url, suppress_exceptions=True))
