"""JSON errors for every bridge response: {"error": {"code", "message", "details"}}."""

from __future__ import annotations

import logging

from flask import Flask, jsonify
from werkzeug.exceptions import HTTPException

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


def bad_request(message: str, field: str | None = None, problem: str | None = None,
                code: str = "invalid_request") -> ApiError:
    """A 400 naming the field and the problem."""
    details = [{"field": field, "problem": problem or message}] if field else []
    return ApiError(400, code, message, details)


def from_prom(exc: PromError) -> ApiError:
    """The answer to a Prometheus/Alertmanager failure: 422 when the request was at fault
    (a bad query, a refused reload), else 503 (the server is down or in trouble)."""
    return ApiError(prom_status(exc), exc.code, exc.message)


def prom_status(exc: PromError) -> int:
    """The HTTP status a Prometheus/Alertmanager failure is answered with."""
    return 422 if exc.invalid else 503


def error_body(code: str, message: str, details: list[dict] | None = None) -> dict:
    """The JSON body of an error."""
    return {"error": {"code": code, "message": message, "details": details or []}}


def register_error_handlers(app: Flask) -> None:
    """Answer ApiError, Prometheus/Alertmanager failures, HTTP errors and the unexpected in JSON."""

    @app.errorhandler(ApiError)
    def api_error(exc: ApiError):
        return jsonify(error_body(exc.code, exc.message, exc.details)), exc.status

    @app.errorhandler(PromError)
    def prom_error(exc: PromError):
        return api_error(from_prom(exc))

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        code = (exc.name or "error").lower().replace(" ", "_")
        return jsonify(error_body(code, exc.description or exc.name)), exc.code

    @app.errorhandler(Exception)
    def unexpected(exc: Exception):
        log.exception("unhandled error")
        return jsonify(error_body("internal", "internal error; see the bridge log")), 500
