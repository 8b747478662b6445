"""RFC 3339 date-times: the one parser and formatter of event times (intake, profiles)."""

from __future__ import annotations

import functools
from datetime import UTC, datetime
from typing import Any

__all__ = ["parse_time", "rfc3339"]


def parse_time(value: Any) -> datetime | None:
    """An RFC 3339 date-time as an aware datetime; None when it is not one.

    Lower-case t/z and the leap second 23:59:60 are valid RFC 3339 that Python's parser refuses,
    so the string is upper-cased and :60 clamped to :59 first.
    """
    if value.__class__ is not str or not 10 <= len(value) <= 40:
        return None
    return _parse(value)


@functools.lru_cache(maxsize=4096)  # the messages of a batch mostly share their stamps
def _parse(value: str) -> datetime | None:
    text = value.upper()
    if len(text) > 18 and text[16:19] == ":60":
        text = text[:17] + "59" + text[19:]
    try:
        stamp = datetime.fromisoformat(text)
    except ValueError:
        return None
    if stamp.tzinfo is None or "T" not in text:
        return None
    return stamp


@functools.lru_cache(maxsize=4096)
def rfc3339(stamp: datetime) -> str:
    """UTC, milliseconds, Z (the form the intake writes event times in)."""
    return stamp.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
