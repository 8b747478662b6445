"""The one place where exceptions become HTTP answers: {"error": {"code", "message", "details"}}.

Services raise `bridge.services.errors` kinds and `pulse.promapi.PromError`; views and the
auth layer may raise `ApiError` for what only HTTP knows (401, 413, 415). `http_status`
is the whole mapping.
"""

from __future__ import annotations

import logging

from flask import Flask, jsonify
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


def register_error_handlers(app: Flask) -> None:
    """Answer ApiError, domain errors, Prometheus failures, HTTP errors, the unexpected: JSON."""

    @app.errorhandler(ApiError)
    def api_error(exc: ApiError):
        return jsonify(error_body(exc.code, exc.message, exc.details)), exc.status

    @app.errorhandler(ServiceError)
    def service_error(exc: ServiceError):
        return jsonify(error_body(exc.code, exc.message, exc.details)), http_status(exc)

    @app.errorhandler(PromError)
    def prom_error(exc: PromError):
        return service_error(from_prom(exc))

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        code = (exc.name or "error").lower().replace(" ", "_")
        return jsonify(error_body(code, exc.description or exc.name)), exc.code

    @app.errorhandler(Exception)
    def unexpected(exc: Exception):
        log.exception("unhandled error")
        return jsonify(error_body("internal", "internal error; see the bridge log")), 500
