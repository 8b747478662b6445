"""The bridge's domain errors: plain exceptions naming the fields at fault, no HTTP status.

A service raises one of these kinds; `bridge.errors` alone decides what each becomes on the
wire. `details` is a list of {field, problem}, so every answer can name the field.
"""

from __future__ import annotations

from pulse.promapi import PromError


class ServiceError(Exception):
    """A domain failure: a stable code, a message and the fields at fault."""

    code = "error"

    def __init__(self, message: str, details: list[dict] | None = None,
                 code: str | None = None):
        super().__init__(message)
        self.message = message
        self.details = list(details or [])
        if code is not None:
            self.code = code

    def __str__(self) -> str:  # the message as amended by whoever added context
        return self.message


class Invalid(ServiceError):
    """The caller's input is wrong (a field is missing, malformed or out of range)."""

    code = "invalid_request"


class Forbidden(ServiceError):
    """The caller may not see or do this (a coach asking for another coach's clients)."""

    code = "forbidden"


class NotFound(ServiceError):
    """What the caller named does not exist."""

    code = "not_found"


class Conflict(ServiceError):
    """The input is valid but clashes with what exists (a taken name, a deleted version)."""

    code = "conflict"


class Refused(ServiceError):
    """Well-formed input that a checker refused (promtool, a Prometheus reload, a query)."""

    code = "rule_check_failed"


class Upstream(ServiceError):
    """A service we hand work to answered with a failure (an email delivery)."""

    code = "delivery_failed"


class Unavailable(ServiceError):
    """A dependency did not do its part (down, missing, or not confirming in time)."""

    code = "unavailable"

    def __init__(self, message: str, details: list[dict] | None = None,
                 code: str | None = None, retry_after: int | None = None):
        super().__init__(message, details, code)
        self.retry_after = retry_after  # seconds: sent as Retry-After when set


def invalid(message: str, field: str | None = None, problem: str | None = None,
            code: str = "invalid_request") -> Invalid:
    """An Invalid naming the field and the problem."""
    details = [{"field": field, "problem": problem or message}] if field else []
    return Invalid(message, details, code)


def from_prom(exc: PromError) -> Refused | Unavailable:
    """A Prometheus/Alertmanager failure as a domain error: refused when the request was at
    fault (a bad query, a refused reload), unavailable when the server is in trouble."""
    kind = Refused if exc.invalid else Unavailable
    return kind(exc.message, code=exc.code)
