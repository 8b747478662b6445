"""The HTTP front of the intake: routes, write keys, rate limits, CORS and Segment's endpoints.

`IngestMiddleware` answers the ingest paths itself (without Flask's per-request overhead: this
is the hot path, see bench/ingest.py) and hands everything else to Flask:

- POST /api/analytics/events and /events/batch: the seed's batches (`Intake.handle`); a write
  key is optional there (Basic auth; with one, the source's rate limit and origins apply).
- POST /v1/batch, /v1/{track,identify,page,screen,group,alias} and analytics.js's short paths
  /v1/{b,t,i,p,s,g,a}: the Segment HTTP Tracking API, translated (exporters/events/segment.py)
  into AnalyticsEvents that then take exactly the seed's path (`Intake._build`, `commit`).
- OPTIONS on all of them: the CORS preflight.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import orjson

from exporters.events.intake import Intake, RequestError
from exporters.events.segment import SHORT_TYPES, TYPES, Translator
from exporters.events.sources import (
    PREFLIGHT_HEADERS,
    Source,
    Sources,
    basic_user,
    cors_headers,
    retry_after,
)
from pulse.audit import request_record

SEED_PATHS = {"/api/analytics/events": "events", "/api/analytics/events/batch": "batch"}
SEGMENT_PATHS: dict[str, str | None] = {"/v1/batch": None, "/v1/b": None}
SEGMENT_PATHS.update({f"/v1/{t}": t for t in TYPES})
SEGMENT_PATHS.update({f"/v1/{s}": t for s, t in SHORT_TYPES.items()})
# Segment's own limits (its SDKs cut their batches below them): 400, not 413, above them.
SEGMENT_MAX_BATCH_BYTES = 500 * 1024
SEGMENT_MAX_MESSAGE_BYTES = 32 * 1024
SEGMENT_MAX_MESSAGES = 2500
SUCCESS = b'{"success":true}'
JSON = ("Content-Type", "application/json")
STATUS = {200: "200 OK", 204: "204 No Content", 400: "400 Bad Request",
          401: "401 Unauthorized", 403: "403 Forbidden", 405: "405 Method Not Allowed",
          413: "413 Payload Too Large", 429: "429 Too Many Requests",
          503: "503 Service Unavailable"}


class Refusal(Exception):
    """A request refused before anything is counted (401, 403, 429)."""

    def __init__(self, status: int, code: str, message: str, field: str,
                 headers: tuple[tuple[str, str], ...] = (), who: str | None = None):
        super().__init__(message)
        self.status, self.code, self.message, self.field, self.headers = (
            status, code, message, field, headers)
        # The source refused, when known (its name, never its key), for the audit record.
        self.who = who


def _segment_error(status: int, code: str, message: str, field: str) -> bytes:
    # Segment's answer (the Python SDK reads code and message), plus the field at fault.
    return orjson.dumps({"success": False, "code": code, "message": message, "field": field})


def _house_error(status: int, code: str, message: str, field: str) -> bytes:
    return orjson.dumps({"error": {"code": code, "message": message,
                                   "details": [{"field": field, "problem": message}]}})


class IngestMiddleware:
    """Routes the ingest paths to the intake; everything else goes to the Flask app."""

    def __init__(self, app, intake: Intake, sources: Sources, translator: Translator,
                 audit: Callable[[dict], object] | None = None):
        self.app = app
        self.intake = intake
        self.sources = sources
        self.translator = translator
        # Appends one record to the audit chain (pulse.audit): every 401/403 of ingest.
        self.audit = audit

    def __call__(self, environ, start_response):
        path = environ.get("PATH_INFO", "")
        seed = SEED_PATHS.get(path)
        segment = path in SEGMENT_PATHS
        if seed is None and not segment:
            return self.app(environ, start_response)
        error = _segment_error if segment else _house_error
        origin = environ.get("HTTP_ORIGIN")
        method = environ.get("REQUEST_METHOD")
        if method == "OPTIONS":
            status, headers, body = self._preflight(origin)
        elif method != "POST":
            status, headers = 405, [JSON, ("Allow", "POST, OPTIONS")]
            body = error(405, "method_not_allowed", "use POST", "method")
        else:
            try:
                if segment:
                    status, headers, body = self._segment(SEGMENT_PATHS[path], environ, origin)
                else:
                    status, headers, body = self._seed(seed, environ, origin)
            except Refusal as exc:
                self.intake._count_request_rejection(exc.code)
                status, body = exc.status, error(exc.status, exc.code, exc.message, exc.field)
                headers = [JSON, *exc.headers, *cors_headers(origin, exc.status != 403)]
                self._audit(environ, status, exc.code, exc.who)
        if method == "OPTIONS" and status == 403:
            self._audit(environ, status, "origin_not_allowed", None)
        headers.append(("Content-Length", str(len(body))))
        start_response(STATUS[status], headers)
        return [body]

    def _audit(self, environ: dict, status: int, cause: str, who: str | None) -> None:
        if self.audit is None or status not in (401, 403):
            return  # accepted or rate-limited ingest is counted by metrics, not audited
        path = environ.get("PATH_INFO", "")
        self.audit(request_record(
            # No name for a key that matches no source: "unknown-write-key" (never the key).
            "exporters.events", who=who or ("unknown-write-key" if status == 401
                                            else "anonymous"),
            role=None, method=environ.get("REQUEST_METHOD", ""), route=path, path=path,
            status=status, cause=cause))

    # ---- checks shared by both APIs ---------------------------------------------------------

    def _preflight(self, origin: str | None):
        if origin is None:
            return 204, [("Allow", "POST, OPTIONS")], b""
        if origin not in self.sources.origins:
            # No CORS headers: the browser refuses to send.
            self.intake._count_request_rejection("origin_not_allowed")
            return 403, [("Vary", "Origin")], b""
        return 204, [*cors_headers(origin, True), *PREFLIGHT_HEADERS], b""

    def _check_origin(self, origin: str | None, source: Source | None) -> None:
        # Browsers send a beacon or a simple text/plain POST even to an origin they will not
        # let the page read the answer of: the intake itself must refuse it.
        if origin is None:
            return
        allowed = source.cors_origins if source is not None else self.sources.origins
        if origin not in allowed:
            raise Refusal(403, "origin_not_allowed",
                          "this Origin is not in the source's cors_origins", "Origin",
                          who=f"source:{source.name}" if source is not None else None)

    @staticmethod
    def _admit(source: Source | None, events: int) -> None:
        if source is None:
            return
        wait = source.wait(events)
        if wait:
            raise Refusal(429, "rate_limited",
                          f"source {source.name} is over its rate_limit; retry after the "
                          "Retry-After seconds", "rate_limit",
                          (("Retry-After", retry_after(wait)),
                           ("X-RateLimit-Reset", str(int(time.time() + wait) + 1))))

    def _source(self, key: str | None) -> Source:
        source = self.sources.by_key(key)
        if source is None:
            raise Refusal(401, "unauthorized",
                          "unknown or missing write key (HTTP Basic user or writeKey)",
                          "writeKey")
        return source

    # ---- the seed's endpoints ---------------------------------------------------------------

    def _seed(self, kind: str, environ: dict, origin: str | None):
        key = basic_user(environ)
        source = self._source(key) if key is not None else None
        self._check_origin(origin, source)
        status, body, extra = self.intake.handle(
            kind, environ, admit=(lambda n: self._admit(source, n)) if source else None)
        return status, [JSON, *extra, *cors_headers(origin, True)], body

    # ---- Segment's ------------------------------------------------------------------------

    def _segment(self, kind: str | None, environ: dict, origin: str | None):
        started = time.perf_counter()
        intake = self.intake
        key = basic_user(environ)
        if key is not None:
            source = self._source(key)
            self._check_origin(origin, source)
        try:
            body = intake._read_body(environ, SEGMENT_MAX_BATCH_BYTES)
            doc = intake._decode(body)
        except RequestError as exc:
            intake._count_request_rejection(exc.code)
            return 400, [JSON, *cors_headers(origin, True)], _segment_error(
                400, exc.code, _segment_message(exc), exc.field)
        if not isinstance(doc, dict):
            return self._bad(origin, "invalid_request", "the body must be a JSON object", "body")
        if key is None:
            source = self._source(_text_key(doc.get("writeKey")))
            self._check_origin(origin, source)
        if kind is None:
            messages = doc.get("batch")
            if not isinstance(messages, list):
                return self._bad(origin, "invalid_request", "batch must be an array", "batch")
            if len(messages) > SEGMENT_MAX_MESSAGES:
                return self._bad(origin, "too_many_events",
                                 f"{len(messages)} messages exceed {SEGMENT_MAX_MESSAGES} in "
                                 "one batch", "batch")
            envelope = doc
        else:
            messages, envelope = [doc], {}
        if len(body) > SEGMENT_MAX_MESSAGE_BYTES:
            for index, message in enumerate(messages):
                size = len(orjson.dumps(message))
                if size > SEGMENT_MAX_MESSAGE_BYTES:
                    where = f"batch[{index}]" if kind is None else "body"
                    return self._bad(origin, "event_too_large",
                                     f"{where} is {size} bytes, over the "
                                     f"{SEGMENT_MAX_MESSAGE_BYTES}-byte message limit", where)
        self._admit(source, len(messages))
        received = datetime.now(UTC)
        translate = self.translator.translate
        events = [translate(m, envelope, source, received, kind) for m in messages]
        # The same messages again (a resend after a lost answer) are the same batch.
        ids = "\n".join(e["id"] if e.__class__ is dict else "" for e in events)
        batch_id = "segment:" + hashlib.blake2b(
            f"{source.name}\n{ids}".encode("utf-8", "surrogatepass"), digest_size=16).hexdigest()
        try:
            batch, accepted = intake._build(batch_id, events, None, False)
        except RequestError as exc:
            intake._count_request_rejection(exc.code)
            return self._bad(origin, exc.code, exc.message, exc.field, counted=True)
        status, answer, wait = intake.commit(batch, accepted, started)
        if status != 200:
            error = orjson.loads(answer)["error"]
            return 503, [JSON, ("Retry-After", retry_after(wait)), *cors_headers(origin, True)], \
                _segment_error(503, error["code"], error["message"], "body")
        return 200, [JSON, *cors_headers(origin, True)], SUCCESS

    def _bad(self, origin: str | None, code: str, message: str, field: str,
             counted: bool = False):
        if not counted:
            self.intake._count_request_rejection(code)
        return 400, [JSON, *cors_headers(origin, True)], _segment_error(400, code, message,
                                                                        field)


def _text_key(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _segment_message(exc: RequestError) -> str:
    if exc.code == "payload_too_large":
        return f"the body exceeds Segment's {SEGMENT_MAX_BATCH_BYTES}-byte batch limit"
    return exc.message
