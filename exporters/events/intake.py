"""The two ingest endpoints: decode, check limits, consent, checksums and schema, map, commit.

`Intake.handle(kind, environ)` is a plain function of the WSGI environ returning
(status, body bytes, headers); the WSGI middleware in `exporters.events.gateway` routes the two
POST paths to it, and the Segment-compatible ones to `_build` and `commit`, without Flask's
per-request overhead (this is the hot path: see bench/ingest.py).
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import time
import uuid
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import jsonschema_rs
import orjson

from exporters.events.mapping import OTHER, Mapping
from exporters.events.segment import Refused
from exporters.events.sources import retry_after
from exporters.events.store import Batch, Committed, EventStore, NoRoom, StoreError
from pulse.rfc3339 import parse_time

log = logging.getLogger(__name__)
EVENT_SCHEMA = Path(__file__).resolve().parent / "schemas" / "analytics-event.schema.json"
DEAD_LETTER_EVENT_BYTES = 4096
BATCH_ID_MAX = 128
CONTENT_TYPES = ("application/json", "text/plain")
UNMAPPED, LATENESS, LATE = ("pulse_events_unmapped_total", "pulse_event_lateness_seconds",
                            "pulse_events_late_total")
CODES = {"required": "missing_field", "type": "invalid_type", "enum": "invalid_value",
         "format": "invalid_format", "additionalProperties": "unknown_field",
         "minLength": "invalid_value", "maxLength": "invalid_value", "pattern": "invalid_value"}


@dataclass(frozen=True)
class Limits:
    """Request limits; exceeding one answers 413 naming it."""

    max_body_bytes: int = 1 << 20
    max_events_per_batch: int = 500
    max_event_bytes: int = 32 << 10
    max_properties_depth: int = 5


class Sink(Protocol):
    """Something that wants each accepted event after it is durable (e.g. user profiling).

    `consume` is called in the request thread with the events counted for the first time in
    one batch (consented: canTrack is true; and, when `requires_profile_consent` is true, only
    those with canProfile true). It may return what waits for its own commit: every sink is
    fed before any is waited for. It must be quick and must not raise; an exception is
    logged and never affects the acknowledgement.
    """

    requires_profile_consent: bool

    def consume(self, events: list[dict], batch_id: str) -> Callable[[], None] | None:
        """Take the events; return None when done, or what waits until they are written."""


class RequestError(Exception):
    """A whole request refused: 400 (malformed) or 413 (a limit)."""

    def __init__(self, status: int, code: str, message: str, field: str = "body",
                 limit: str | None = None):
        super().__init__(message)
        self.status, self.code, self.message, self.field, self.limit = (
            status, code, message, field, limit)

    def body(self) -> bytes:
        """The JSON error document of the house style."""
        error: dict[str, Any] = {"code": self.code, "message": self.message,
                                 "details": [{"field": self.field, "problem": self.message}]}
        if self.limit:
            error["limit"] = self.limit
        return orjson.dumps({"error": error})


def event_id_hash(event_id: str) -> int:
    """A stable 60-bit hash of an event id (what the idempotency window keeps)."""
    digest = hashlib.blake2b(event_id.encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 4


def canonical_json(value: Any) -> bytes:
    """The canonical JSON a checksum covers: sorted keys, no whitespace, UTF-8."""
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)


def checksum_matches(event: Any, checksum: str, canonical: bytes | None = None) -> bool:
    """True when checksum is the SHA-256 of the event's canonical JSON (given, or computed).

    Numbers are accepted in both common spellings (JavaScript's JSON.stringify, which orjson
    follows, and Python's json.dumps, which writes 1e-05 for 0.00001).
    """
    if canonical is None:
        try:
            canonical = canonical_json(event)
        except (TypeError, orjson.JSONEncodeError):
            canonical = b""
    if canonical and hashlib.sha256(canonical).hexdigest() == checksum:
        return True
    text = json.dumps(event, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest() == checksum


def _depth(value: Any, limit: int, level: int = 1) -> bool:
    """True when value nests deeper than limit (an object is one level)."""
    if level > limit:
        return True
    items = value.values() if isinstance(value, dict) else value
    for item in items:
        if isinstance(item, dict | list) and _depth(item, limit, level + 1):
            return True
    return False


def _schema_error(exc: jsonschema_rs.ValidationError) -> tuple[str, str, str]:
    """(field, code, message) of the first schema violation of an event."""
    kind = exc.kind
    name = kind.name
    path = [str(p) for p in exc.instance_path]
    if name == "required":
        path.append(str(kind.property))
    elif name == "additionalProperties" and kind.unexpected:
        path.append(str(kind.unexpected[0]))
    field = ".".join(path) or "event"
    if name == "required":
        message = f"{field} is required"
    elif name == "additionalProperties":
        message = f"{field} is not a field of this object"
    else:
        message = f"{field}: {exc.message}"
    return field, CODES.get(name, "invalid_value"), message


class Intake:
    """Validates, maps and durably commits batches of analytics events."""

    def __init__(self, store: EventStore, mapping: Mapping, limits: Limits,
                 observe_duration: Callable[[float], None] | None = None,
                 count_request_rejection: Callable[[str], None] | None = None,
                 late_after: float = 3600.0, categories: frozenset[str] = frozenset(),
                 pii_patterns: dict[str, str] | None = None):
        self.store = store
        # What a rejected event may carry of a person is scrubbed before it is answered or
        # kept: values matching privacy.pii_patterns become a marker naming the pattern.
        self.pii = tuple((name, re.compile(p)) for name, p in (pii_patterns or {}).items())
        self.late_after = late_after
        # The label values pulse_events_unmapped_total may take (bounded): other for the rest.
        self.categories = categories | {c for c, _ in mapping.index}
        self.mapping = mapping
        # Histograms among what an event feeds: their observations are kept one by one.
        self.histograms = frozenset({LATENESS} | {
            name for name, d in mapping.metrics.items() if d.type == "histogram"})
        self.limits = limits
        schema = json.loads(EVENT_SCHEMA.read_text())
        # One compiled validator of the published schema (draft 7, formats checked): it
        # answers and explains in one pass.
        self.validate = jsonschema_rs.validator_for(schema, validate_formats=True).validate
        self.sinks: list[Sink] = []
        self._observe_duration = observe_duration or (lambda s: None)
        self._count_request_rejection = count_request_rejection or (lambda r: None)

    def add_sink(self, sink: Sink) -> None:
        """Register a consumer of accepted events (called after they are durable)."""
        self.sinks.append(sink)

    # ---- HTTP -------------------------------------------------------------------------------

    def handle(self, kind: str, environ: dict, admit: Callable[[int], None] | None = None
               ) -> tuple[int, bytes, list[tuple[str, str]]]:
        """Answer POST /api/analytics/events (kind 'events') or /events/batch (kind 'batch'):
        (status, body, extra headers). `admit(n)` is asked before n events are looked at
        (the source's rate limit) and may raise to refuse the request."""
        started = time.perf_counter()
        try:
            body = self._read_body(environ)
            doc = self._decode(body)
            if admit is not None:
                events = doc.get("events") if isinstance(doc, dict) else None
                admit(len(events) if isinstance(events, list) else 1)
            batch, events = self.process(kind, doc, len(body))
        except RequestError as exc:
            self._count_request_rejection(exc.code)
            return exc.status, exc.body(), []
        status, answer, wait = self.commit(batch, events, started)
        return status, answer, [("Retry-After", retry_after(wait))] if wait else []

    def commit(self, batch: Batch, events: list, started: float) -> tuple[int, bytes, float]:
        """Make a built batch durable and feed the sinks: (200, the answer, 0) once it is,
        else (503, the error, Retry-After seconds): nothing acknowledged."""
        try:
            committed = self.store.commit(batch, events)
        except NoRoom as exc:
            # Backpressure, not loss: nothing was queued, the client keeps the batch.
            self._count_request_rejection(exc.reason)
            return 503, RequestError(503, exc.reason, str(exc)).body(), exc.retry_after
        except StoreError as exc:
            log.error("batch %s not acknowledged: %s", batch.batch_id, exc)
            self._count_request_rejection("unavailable")
            return 503, RequestError(
                503, "unavailable", "the event log could not be written; retry with the same "
                "batchId").body(), 1
        if self.sinks and committed.counted:
            self._feed_sinks(batch.batch_id, committed, events)
        self._observe_duration(time.perf_counter() - started)
        return 200, committed.body, 0

    def _read_body(self, environ: dict, limit: int | None = None) -> bytes:
        ctype = (environ.get("CONTENT_TYPE") or "").split(";", 1)[0].strip().lower()
        # text/plain: what navigator.sendBeacon sends for a string (no CORS preflight).
        if ctype not in CONTENT_TYPES:
            raise RequestError(400, "unsupported_content_type",
                               "Content-Type must be application/json or text/plain, not "
                               f"{ctype or 'empty'}", "Content-Type")
        limit = limit or self.limits.max_body_bytes
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            raise RequestError(400, "invalid_request", "Content-Length is not a number",
                               "Content-Length") from None
        if length > limit:
            raise RequestError(413, "payload_too_large",
                               f"body of {length} bytes exceeds max_body_bytes={limit}",
                               "body", "max_body_bytes")
        stream = environ["wsgi.input"]
        body = stream.read(length) if length else stream.read(limit + 1)
        if len(body) > limit:
            raise RequestError(413, "payload_too_large",
                               f"body exceeds max_body_bytes={limit}", "body", "max_body_bytes")
        encoding = (environ.get("HTTP_CONTENT_ENCODING") or "identity").strip().lower()
        if encoding == "gzip":
            body = self._gunzip(body, limit)
        elif encoding != "identity":
            raise RequestError(400, "unsupported_content_encoding",
                               f"Content-Encoding must be gzip or identity, not {encoding}",
                               "Content-Encoding")
        return body

    @staticmethod
    def _gunzip(body: bytes, limit: int) -> bytes:
        inflater = zlib.decompressobj(wbits=31)
        try:
            out = inflater.decompress(body, limit + 1)
            if len(out) > limit or inflater.unconsumed_tail:
                raise RequestError(413, "payload_too_large",
                                   f"decompressed body exceeds max_body_bytes={limit}",
                                   "body", "max_body_bytes")
            out += inflater.flush()
        except zlib.error as exc:
            raise RequestError(400, "invalid_gzip", f"the body is not a valid gzip stream: {exc}",
                               "body") from None
        if not inflater.eof:
            raise RequestError(400, "invalid_gzip", "the gzip stream is truncated", "body")
        if len(out) > limit:
            raise RequestError(413, "payload_too_large",
                               f"decompressed body exceeds max_body_bytes={limit}",
                               "body", "max_body_bytes")
        return out

    @staticmethod
    def _decode(body: bytes) -> Any:
        try:
            return orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            first = str(exc)
        # orjson is stricter than the JSON grammar in corners (e.g. very long numbers): the
        # stdlib decides, but what cannot be written back as UTF-8 JSON (lone surrogates) is
        # refused here, so nothing downstream (the log, the dead letters) ever chokes on it.
        try:
            doc = json.loads(body.decode("utf-8"), parse_constant=_reject_constant)
            orjson.dumps(doc)
            return doc
        except (ValueError, TypeError, UnicodeDecodeError, RecursionError):
            raise RequestError(400, "invalid_json", f"the body is not valid JSON: {first}",
                               "body") from None

    # ---- the batch --------------------------------------------------------------------------

    def process(self, kind: str, doc: Any, body_len: int | None = None
                ) -> tuple[Batch, list]:
        """Check a decoded request and build its batch (nothing is committed here)."""
        if not isinstance(doc, dict):
            raise RequestError(400, "invalid_request", "the body must be a JSON object")
        events = doc.get("events")
        if not isinstance(events, list):
            raise RequestError(400, "invalid_request", "events must be an array", "events")
        if len(events) > self.limits.max_events_per_batch:
            raise RequestError(413, "too_many_events",
                               f"{len(events)} events exceed max_events_per_batch="
                               f"{self.limits.max_events_per_batch}", "events",
                               "max_events_per_batch")
        batch_id = doc.get("batchId")
        if batch_id is None:
            batch_id = str(uuid.uuid4())
        elif not isinstance(batch_id, str) or not 0 < len(batch_id) <= BATCH_ID_MAX:
            raise RequestError(400, "invalid_request",
                               f"batchId must be a string of 1 to {BATCH_ID_MAX} characters",
                               "batchId")
        checksums = None
        if kind == "events":
            stamp = doc.get("clientTimestamp")
            if not isinstance(stamp, str | int | float) or isinstance(stamp, bool):
                raise RequestError(400, "invalid_request",
                                   "clientTimestamp is required (an RFC 3339 date-time)",
                                   "clientTimestamp")
        else:
            compression = doc.get("compressionType", "none")
            if compression not in ("gzip", "none"):
                raise RequestError(400, "invalid_request",
                                   "compressionType must be 'gzip' or 'none'", "compressionType")
            checksums = doc.get("checksums")
            if (not isinstance(checksums, list) or len(checksums) != len(events)
                    or not all(isinstance(c, str) for c in checksums)):
                raise RequestError(400, "invalid_request",
                                   "checksums must be an array of strings, one per event",
                                   "checksums")
        # An event cannot be bigger than the body that carries it: skip measuring then.
        check_size = body_len is None or body_len > self.limits.max_event_bytes
        return self._build(batch_id, events, checksums, check_size)

    def _build(self, batch_id: str, events: list, checksums: list | None, check_size: bool):
        limits = self.limits
        accepted_events: list[tuple[int, list]] = []
        accepted_raw: list[dict] = []
        errors: list[dict] = []
        dead: list[dict] = []
        rejected = {"invalid": 0, "checksum_mismatch": 0, "no_consent": 0}
        validate, observe = self.validate, self.mapping.observe
        categories, late_after = self.categories, self.late_after
        histograms = self.histograms
        # What the accepted events feed, summed per series (the log's writer takes these when
        # every event turns out to be new, instead of going through each event again).
        totals: dict[tuple[str, tuple], float] = {}
        hists: dict[tuple[str, tuple], list[float]] = {}
        received = datetime.now(UTC)
        now = None
        for index, event in enumerate(events):
            if event.__class__ is dict:
                flags = event.get("privacyFlags")
                if flags.__class__ is dict and flags.get("canTrack") is False:
                    # No consent: counted, never stored, not even as a dead letter.
                    rejected["no_consent"] += 1
                    errors.append({"index": index, "field": "privacyFlags.canTrack",
                                   "code": "no_consent",
                                   "message": "the user did not consent to tracking"})
                    continue
                props = event.get("properties")
                if props.__class__ is dict and props and _depth(props,
                                                                limits.max_properties_depth):
                    raise RequestError(
                        413, "properties_too_deep",
                        f"events[{index}].properties nest deeper than max_properties_depth="
                        f"{limits.max_properties_depth}", f"events[{index}].properties",
                        "max_properties_depth")
            # Serialised at most once: the checksum's canonical form measures the size too
            # (sorting the keys does not change the length).
            canonical = None
            if checksums is not None:
                try:
                    canonical = canonical_json(event)
                except (TypeError, orjson.JSONEncodeError):
                    canonical = b""
            if check_size:
                size = len(canonical) if canonical else _size(event)
                if size > limits.max_event_bytes:
                    raise RequestError(
                        413, "event_too_large",
                        f"events[{index}] is {size} bytes, over max_event_bytes="
                        f"{limits.max_event_bytes}", f"events[{index}]", "max_event_bytes")
            error = None
            if event.__class__ is Refused:
                reason = "invalid"
                error, event = (event.field, event.code, event.message), event.raw
            elif checksums is not None and not checksum_matches(
                    event, checksums[index], canonical):
                reason = "checksum_mismatch"
                error = ("event", "checksum_mismatch",
                         "checksums[i] is not the SHA-256 of the event's canonical JSON")
            else:
                try:
                    validate(event)
                except jsonschema_rs.ValidationError as exc:
                    reason = "invalid"
                    error = _schema_error(exc)
            if error is not None:
                rejected[reason] += 1
                item = {"index": index, "field": error[0], "code": error[1],
                        "message": scrub_pii(error[2], self.pii)}
                errors.append(item)
                if now is None:
                    now = received.isoformat(timespec="milliseconds")
                dead.append(_dead_letter(now, batch_id, index, reason, item,
                                         scrub_pii(event, self.pii)))
                continue
            fed = observe(event)
            if not fed:
                category = event["category"]
                fed = [(UNMAPPED, (event["eventType"],
                                   category if category in categories else OTHER), 1.0)]
            stamp = parse_time(event["timestamp"])
            if stamp is not None:
                platform = (event["deviceInfo"]["platform"],)
                late = (received - stamp).total_seconds()
                fed.append((LATENESS, platform, late if late > 0 else 0.0))
                if late > late_after:
                    fed.append((LATE, platform, 1.0))
            for name, labels, amount in fed:
                if name in histograms:
                    values = hists.get((name, labels))
                    if values is None:
                        hists[(name, labels)] = [amount]
                    else:
                        values.append(amount)
                else:
                    totals[(name, labels)] = totals.get((name, labels), 0.0) + amount
            accepted_events.append((event_id_hash(event["id"]), fed))
            accepted_raw.append(event)
        response = {"accepted": len(accepted_events), "rejected": len(events) -
                    len(accepted_events), "errors": errors, "batchId": batch_id}
        batch = Batch(batch_id=batch_id, response=orjson.dumps(response),
                      events=tuple(accepted_events), rejected=tuple(rejected.items()),
                      dead_letters=tuple(dead), received=len(events), totals=totals,
                      hists=hists)
        return batch, accepted_raw

    def _feed_sinks(self, batch_id: str, committed: Committed, events: list[dict]) -> None:
        fresh = [events[i] for i in committed.counted]
        profiled = None
        # A sink may return what waits for its own commit: every sink is fed first, then
        # waited for, so their commits (each in its own thread or file) overlap.
        waits = []
        for sink in self.sinks:
            chosen = fresh
            if getattr(sink, "requires_profile_consent", True):
                if profiled is None:
                    profiled = [e for e in fresh if e["privacyFlags"]["canProfile"]]
                chosen = profiled
            if not chosen:
                continue
            try:
                wait = sink.consume(chosen, batch_id)
                if wait is not None:
                    waits.append((sink, wait))
            except Exception:  # noqa: BLE001 - a sink never breaks the acknowledgement
                log.exception("sink %s failed on batch %s", type(sink).__name__, batch_id)
        for sink, wait in waits:
            try:
                wait()
            except Exception:  # noqa: BLE001 - a sink never breaks the acknowledgement
                log.exception("sink %s failed on batch %s", type(sink).__name__, batch_id)


def _size(event: Any) -> int:
    try:
        return len(orjson.dumps(event))
    except (TypeError, orjson.JSONEncodeError):
        return len(json.dumps(event).encode("utf-8", "surrogatepass"))


def _reject_constant(name: str):
    raise ValueError(f"{name} is not JSON")


# Fields naming a person or their session: never kept in a dead letter, whatever they hold.
PERSON_FIELDS = frozenset({"userId", "sessionId"})


def scrub_pii(value: Any, patterns: tuple[tuple[str, re.Pattern], ...]) -> Any:
    """value with every match of a PII pattern replaced by <pii:NAME> (in keys and strings at
    any depth) and every userId/sessionId replaced by <redacted>. A whole RFC 3339 time is
    kept: it names no one, and the phone pattern would take its date for a number."""
    if isinstance(value, str):
        if parse_time(value) is not None:
            return value
        for name, pattern in patterns:
            value = pattern.sub(f"<pii:{name}>", value)
        return value
    if isinstance(value, dict):
        return {scrub_pii(k, patterns): "<redacted>" if k in PERSON_FIELDS
                else scrub_pii(v, patterns) for k, v in value.items()}
    if isinstance(value, list):
        return [scrub_pii(v, patterns) for v in value]
    return value


def _dead_letter(now: str, batch_id: str, index: int, reason: str, error: dict,
                 event: Any) -> dict:
    """A bounded record of a rejected event (already scrubbed by scrub_pii)."""
    entry = {"receivedAt": now, "batchId": batch_id, "index": index, "reason": reason,
             "error": error}
    try:
        text = orjson.dumps(event)
    except (TypeError, orjson.JSONEncodeError):
        text = json.dumps(event).encode("utf-8", "surrogatepass")
    if len(text) <= DEAD_LETTER_EVENT_BYTES:
        entry["event"] = event
    else:
        entry["eventPreview"] = text[:DEAD_LETTER_EVENT_BYTES].decode("utf-8", "replace")
        entry["truncated"] = True
    return entry
