"""Logging for every Pulse process: one line per record, secrets redacted."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable

_SECRETS: set[str] = set()


def register_secrets(values: Iterable[str | None]) -> None:
    """Remember values (tokens, channel URLs) that must never appear in a log line."""
    for value in values:
        if value and len(value) >= 6:
            _SECRETS.add(value)


def redact(text: str) -> str:
    """text with every registered secret replaced by '***'."""
    for secret in sorted(_SECRETS, key=len, reverse=True):
        if secret in text:
            text = text.replace(secret, "***")
    return text


class RedactingFormatter(logging.Formatter):
    """A formatter that removes registered secrets from the finished line."""

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


def setup(component: str, level: str = "info") -> logging.Logger:
    """Configure the root logger for a Pulse process and return the component's logger."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(RedactingFormatter(
        f"%(asctime)s %(levelname)s {component} %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # Request lines of the WSGI server carry query strings; keep them at debug.
    logging.getLogger("waitress.queue").setLevel(logging.ERROR)
    return logging.getLogger(component)
