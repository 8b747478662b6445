"""Segment HTTP Tracking API messages -> the seed's AnalyticsEvent (a pure translation).

`Translator.translate(message, envelope, source, received)` returns the event the seed
endpoints would have received, or a `Refused` naming the field that made it impossible; either
then goes through the same validation, consent, mapping, log and profiles as the seed's
batches (exporters/events/intake.py). The table (segment.yml) says which track event names
become which category/action; docs/events.md#segment describes every field.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
import yaml

from exporters.events.sources import Source
from pulse.rfc3339 import parse_time, rfc3339

DEFAULT_TABLE = Path(__file__).resolve().parent / "segment.yml"
TYPES = ("track", "identify", "page", "screen", "group", "alias")
SHORT_TYPES = {t[0]: t for t in TYPES}  # analytics.js posts /v1/t, /v1/i, ... (and /v1/b)
EVENT_TYPES = ("user_action", "system_event", "ai_interaction", "business_event")
MESSAGE_ID_MAX = 128
IOS = {"ios", "iphone os", "ipados", "iphone", "ipad"}
WEB_LIBRARIES = ("analytics.js", "analytics-next", "@segment/analytics-next")
_WORD = re.compile(r"[A-Za-z0-9]+")


class TableError(ValueError):
    """A translation table that cannot be used, naming where."""


@dataclass(frozen=True)
class Refused:
    """A message that cannot become an AnalyticsEvent: dead-lettered as invalid."""

    field: str
    code: str
    message: str
    raw: Any


@dataclass(frozen=True)
class Rule:
    """The seed fields one Segment event becomes."""

    event_type: str
    category: str
    action: str
    value: tuple[str, ...] | None = None


def _rule(spec: Any, where: str, category: str | None = None) -> Rule:
    if not isinstance(spec, dict):
        raise TableError(f"{where}: must be a mapping of eventType, category, action, value")
    unknown = set(spec) - {"eventType", "category", "action", "value"}
    if unknown:
        raise TableError(f"{where}: unknown key {sorted(unknown)[0]!r}")
    event_type = spec.get("eventType", "user_action")
    if event_type not in EVENT_TYPES:
        raise TableError(f"{where}.eventType: must be one of {', '.join(EVENT_TYPES)}")
    for key in ("category", "action"):
        text = spec.get(key, category if key == "category" else None)
        if not isinstance(text, str) or not 0 < len(text) <= 64:
            raise TableError(f"{where}.{key}: must be a string of 1 to 64 characters")
    value = spec.get("value")
    if value is not None and (not isinstance(value, str) or not value):
        raise TableError(f"{where}.value: must be a dotted path such as properties.duration")
    return Rule(event_type, spec["category"], spec["action"],
                tuple(value.split(".")) if value else None)


@dataclass(frozen=True)
class Table:
    """A loaded translation table."""

    track: dict[str, Rule]
    verbs: dict[str, str]
    others: dict[str, Rule]  # page, screen, identify, group, alias


def load_table(path: str | Path | None = None) -> Table:
    """Load and check a translation table (the shipped segment.yml when path is empty)."""
    path = Path(path or DEFAULT_TABLE)
    try:
        raw = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise TableError(f"{path}: {exc}") from None
    if not isinstance(raw, dict):
        raise TableError(f"{path}: must be a mapping")
    unknown = set(raw) - {"track", "verbs", *TYPES}
    if unknown:
        raise TableError(f"{path}: unknown key {sorted(unknown)[0]!r}")
    track = {str(name): _rule(spec, f"track.{name}") for name, spec in
             (raw.get("track") or {}).items()}
    verbs = raw.get("verbs") or {}
    if not all(isinstance(k, str) and isinstance(v, str) and v for k, v in verbs.items()):
        raise TableError(f"{path}: verbs must map words to actions")
    others = {}
    for kind in TYPES[1:]:
        if kind not in raw:
            raise TableError(f"{path}: {kind} is required")
        others[kind] = _rule(raw[kind], kind)
    return Table(track, dict(verbs), others)


def corrected_time(message: dict, envelope: dict, received: datetime) -> datetime:
    """When the event happened, on the server's clock (Segment's clock-skew correction).

    timestamp = receivedAt - (sentAt - originalTimestamp): the device clock's error cancels
    out, and a message kept offline for a day still gets its own time. Never after receipt.
    """
    orig = parse_time(message.get("originalTimestamp")) or parse_time(message.get("timestamp"))
    if orig is None:
        return received
    sent = parse_time(message.get("sentAt")) or parse_time(envelope.get("sentAt"))
    try:
        stamp = received - (sent - orig) if sent is not None else orig
    except OverflowError:  # a skew that leaves the calendar (year 1..9999): no usable time
        return received
    return min(stamp, received)


def _get(doc: Any, path: tuple[str, ...]) -> Any:
    for key in path:
        if not isinstance(doc, dict):
            return None
        doc = doc.get(key)
    return doc


def _text(value: Any, limit: int) -> str | None:
    if value.__class__ is str:
        return value if 0 < len(value) <= limit else None
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        value = str(value)
    return value if isinstance(value, str) and 0 < len(value) <= limit else None


def _platform(context: dict, source: Source) -> str:
    device = context.get("device")
    kind = device.get("type") if isinstance(device, dict) else None
    os_ = context.get("os")
    os_name = os_.get("name") if isinstance(os_, dict) else None
    for name in (kind, os_name):
        if isinstance(name, str):
            low = name.lower()
            if low in IOS:
                return "ios"
            if low == "android":
                return "android"
    library = context.get("library")
    lib_name = library.get("name") if isinstance(library, dict) else None
    if context.get("userAgent") or (isinstance(lib_name, str) and lib_name in WEB_LIBRARIES):
        return "web"
    return source.platform


PERSONAL = ("userId", "anonymousId", "previousId", "traits", "writeKey")


def redacted(message: Any) -> Any:
    """A refused message as the dead letters keep it: no ids, traits, IP or user agent."""
    if not isinstance(message, dict):
        return message
    out = {k: ("<redacted>" if k in PERSONAL else v) for k, v in message.items()}
    context = out.get("context")
    if isinstance(context, dict):
        out["context"] = {k: ("<redacted>" if k in ("ip", "userAgent", "traits") else v)
                          for k, v in context.items()}
    return out


def message_id(message: dict) -> str | Refused:
    """The message's idempotency key: messageId, else a digest of the message itself (so an
    exact resend is still recognised; sentAt is left out, the SDKs renew it each attempt)."""
    value = message.get("messageId")
    if value is None:
        body = {k: v for k, v in message.items() if k not in ("sentAt", "writeKey")}
        try:
            digest = hashlib.sha256(orjson.dumps(body, option=orjson.OPT_SORT_KEYS)).hexdigest()
        except TypeError:
            digest = hashlib.sha256(repr(sorted(body.items())).encode()).hexdigest()
        return "sha256:" + digest
    if not isinstance(value, str) or not value:
        return Refused("messageId", "invalid_type", "messageId must be a non-empty string",
                       message)
    if len(value) > MESSAGE_ID_MAX:
        return Refused("messageId", "invalid_value",
                       f"messageId is longer than {MESSAGE_ID_MAX} characters", message)
    return value


class Translator:
    """Turns one Segment message into one AnalyticsEvent under a table and a consent field."""

    def __init__(self, table: Table, consent_field: str = "context.consent"):
        self.table = table
        self.consent_path = tuple(consent_field.split("."))

    def rule_for(self, kind: str, message: dict) -> Rule | Refused:
        """The rule of a message (track events by name, the other types by type)."""
        if kind != "track":
            return self.table.others[kind]
        name = message.get("event")
        if not isinstance(name, str) or not name.strip():
            return Refused("event", "missing_field", "event is required for a track message",
                           message)
        rule = self.table.track.get(name)
        if rule is not None:
            return rule
        words = _WORD.findall(name)
        if not words:
            return Refused("event", "invalid_value", "event has no letters or digits", message)
        last = words[-1]
        action = self.table.verbs.get(last) or self.table.verbs.get(last.capitalize()) \
            or last.lower()
        category = "_".join(w.lower() for w in words[:-1]) or action
        return Rule("user_action", category[:64], action[:64])

    def translate(self, message: Any, envelope: dict, source: Source, received: datetime,
                  kind: str | None = None) -> dict | Refused:
        """The AnalyticsEvent of one message (kind: the endpoint's type; None for a batch)."""
        out = self._translate(message, envelope, source, received, kind)
        if out.__class__ is Refused:
            return Refused(out.field, out.code, out.message, redacted(out.raw))
        return out

    def _translate(self, message: Any, envelope: dict, source: Source, received: datetime,
                   kind: str | None) -> dict | Refused:
        if not isinstance(message, dict):
            return Refused("message", "invalid_type", "a message must be a JSON object",
                           message)
        kind = kind or message.get("type")
        if kind not in TYPES:
            return Refused("type", "invalid_value" if kind is not None else "missing_field",
                           f"type must be one of {', '.join(TYPES)}", message)
        event_id = message_id(message)
        if isinstance(event_id, Refused):
            return event_id
        user_id = _text(message.get("userId"), 256)
        anonymous_id = _text(message.get("anonymousId"), 256)
        if user_id is None and anonymous_id is None:
            return Refused("userId", "missing_field",
                           "userId or anonymousId is required (a string of 1 to 256 "
                           "characters)", message)
        rule = self.rule_for(kind, message)
        if isinstance(rule, Refused):
            return rule
        context = message.get("context")
        context = context if isinstance(context, dict) else {}
        shared = envelope.get("context")
        if isinstance(shared, dict) and shared:
            context = {**shared, **context}
        # identify/group traits (names, emails) are never kept: only properties are.
        props = message.get("properties") if kind not in ("identify", "group") else None
        props = props if isinstance(props, dict) else {}
        session = (_text(context.get("sessionId"), 256) or _text(props.get("sessionId"), 256)
                   or anonymous_id or user_id)
        event: dict[str, Any] = {
            "id": event_id,
            "timestamp": rfc3339(corrected_time(message, envelope, received)),
            "sessionId": session,
            "eventType": rule.event_type, "category": rule.category, "action": rule.action,
            "properties": props,
            "deviceInfo": self._device(context, source),
            "privacyFlags": self._consent(message, source, received),
        }
        if user_id is not None:
            event["userId"] = user_id
        label = message.get("event") if kind == "track" else message.get("name")
        if isinstance(label, str) and label:
            event["label"] = label[:256]
        value = _get(message, rule.value) if rule.value else props.get("value")
        if isinstance(value, int | float) and not isinstance(value, bool):
            event["value"] = value
        return event

    @staticmethod
    def _device(context: dict, source: Source) -> dict:
        app, os_, device = context.get("app"), context.get("os"), context.get("device")
        info = {
            "platform": _platform(context, source),
            "appVersion": (_text(app.get("version"), 64) if app.__class__ is dict else None)
            or "unknown",
            "osVersion": (_text(os_.get("version"), 64) if os_.__class__ is dict else None)
            or "unknown",
        }
        model = _text(device.get("model"), 128) if device.__class__ is dict else None
        if model:
            info["deviceModel"] = model
        screen = context.get("screen")
        if screen.__class__ is dict and isinstance(screen.get("width"), int) \
                and isinstance(screen.get("height"), int):
            info["screenSize"] = f"{screen['width']}x{screen['height']}"
        network = context.get("network")
        if network.__class__ is dict:
            if network.get("wifi") is True:
                info["connectionType"] = "wifi"
            elif network.get("cellular") is True:
                info["connectionType"] = "cellular"
        return info

    def _consent(self, message: dict, source: Source, received: datetime) -> dict:
        given = _get(message, self.consent_path)
        if isinstance(given, dict) and isinstance(given.get("canTrack"), bool):
            date, version = given.get("consentDate"), given.get("consentVersion")
            return {"canTrack": given["canTrack"],
                    "canProfile": given.get("canProfile") is True,
                    "canShare": given.get("canShare") is True,
                    "consentDate": date if parse_time(date) else rfc3339(received),
                    "consentVersion": _text(version, 64) or f"source:{source.name}"}
        return {"canTrack": source.can_track, "canProfile": source.can_profile,
                "canShare": False, "consentDate": rfc3339(received),
                "consentVersion": f"source:{source.name}"}
