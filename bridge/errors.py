"""The one place where exceptions become HTTP answers: {"error": {"code", "message", "details"}}.

Services raise `bridge.services.errors` kinds and `pulse.promapi.PromError`; views and the
auth layer may raise `ApiError` for what only HTTP knows (401, 413, 415). `http_status`
is the whole mapping.
"""

from __future__ import annotations

import json
import logging

from flask import Flask, Response, jsonify, request
from werkzeug.exceptions import HTTPException

from bridge.services.errors import (
    Conflict,
    Forbidden,
    Invalid,
    NotFound,
    Refused,
    ServiceError,
    Unavailable,
    Upstream,
    from_prom,
    invalid,
)
from pulse.promapi import PromError

log = logging.getLogger(__name__)


class ApiError(Exception):
    """An error answered to the client with a status, a code, a message and field details."""

    def __init__(self, status: int, code: str, message: str,
                 details: list[dict] | None = None):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details or []


# The request's own part in the failure decides: its input (4xx) or a dependency (5xx).
STATUS: tuple[tuple[type[ServiceError], int], ...] = (
    (Invalid, 400), (Forbidden, 403), (NotFound, 404), (Conflict, 409), (Refused, 422),
    (Upstream, 502), (Unavailable, 503),
)


def bad_request(message: str, field: str | None = None, problem: str | None = None,
                code: str = "invalid_request") -> Invalid:
    """A 400 naming the field and the problem (an Invalid, as services raise it)."""
    return invalid(message, field, problem, code)


def http_status(exc: Exception) -> int:
    """The HTTP status of an ApiError, a domain error or a Prometheus failure (500 else)."""
    if isinstance(exc, ApiError):
        return exc.status
    if isinstance(exc, PromError):
        exc = from_prom(exc)
    for kind, status in STATUS:
        if isinstance(exc, kind):
            return status
    return 500


def error_body(code: str, message: str, details: list[dict] | None = None) -> dict:
    """The JSON body of an error."""
    return {"error": {"code": code, "message": message, "details": details or []}}


def mimir_error(status: int, code: str, message: str, details: list[dict]) -> Response | None:
    """The answer Mimir gives on its routes: plain text on the ruler configuration API (the
    problems joined by ", ", each naming its field), Prometheus's JSON error on its read API
    and for a bad org id; None off those routes."""
    if request.path.startswith("/prometheus/api/") or (
            request.path.startswith("/prometheus/") and message == "no valid org id found"):
        kind = "bad_data" if status == 400 else code
        return Response(json.dumps({"status": "error", "data": None, "errorType": kind,
                                    "error": "; ".join([message] + [
                                        f"{d['field']}: {d['problem']}" for d in details])}),
                        status=status, mimetype="application/json")
    if request.path.startswith("/prometheus/config/"):
        # Mimir's 404s are the bare sentence; a 400 lists every field at fault.
        problems = ", ".join(f"{d['field']}: {d['problem']}" for d in details) \
            if status != 404 else ""
        text = f"{message}: {problems}" if problems else message
        return Response(text + "\n", status=status, mimetype="text/plain")
    return None


def _answer(status: int, code: str, message: str, details: list[dict]):
    mimir = mimir_error(status, code, message, details)
    if mimir is not None:
        return mimir
    return jsonify(error_body(code, message, details)), status


def register_error_handlers(app: Flask) -> None:
    """Answer ApiError, domain errors, Prometheus failures, HTTP errors, the unexpected: JSON
    (on Mimir's routes, as Mimir answers)."""

    @app.errorhandler(ApiError)
    def api_error(exc: ApiError):
        return _answer(exc.status, exc.code, exc.message, exc.details)

    @app.errorhandler(ServiceError)
    def service_error(exc: ServiceError):
        answer = _answer(http_status(exc), exc.code, exc.message, exc.details)
        retry_after = getattr(exc, "retry_after", None)
        if retry_after is None:
            return answer
        resp = app.make_response(answer)
        resp.headers["Retry-After"] = str(retry_after)
        return resp

    @app.errorhandler(PromError)
    def prom_error(exc: PromError):
        return service_error(from_prom(exc))

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        code = (exc.name or "error").lower().replace(" ", "_")
        return _answer(exc.code or 500, code, exc.description or exc.name, [])

    @app.errorhandler(Exception)
    def unexpected(exc: Exception):
        log.exception("unhandled error")
        return jsonify(error_body("internal", "internal error; see the bridge log")), 500
