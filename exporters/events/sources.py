"""Event sources: write keys, per-source rate limits and the browser origins allowed (CORS).

A source is one sender (an app, a website) configured under `exporters.events.sources`. The
Segment-compatible endpoints need its write key (HTTP Basic user, or the body's `writeKey` for
`navigator.sendBeacon`, which cannot set headers); the seed endpoints take one optionally.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import math
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

PREFLIGHT_HEADERS = (
    ("Access-Control-Allow-Methods", "POST, OPTIONS"),
    ("Access-Control-Allow-Headers",
     "Content-Type, Authorization, Content-Encoding, X-Retry-Count"),
    ("Access-Control-Max-Age", "600"),
)


class TokenBucket:
    """A rate limit that lets a request overdraw it, so a batch bigger than the burst still
    gets in once the bucket is positive; the debt then delays the next ones."""

    def __init__(self, rate: float, burst: float, clock=time.monotonic):
        self.rate, self.burst, self.clock = rate, burst, clock
        self.tokens = burst
        self.stamp = clock()
        self.lock = threading.Lock()

    def take(self, amount: int) -> float:
        """Charge `amount` and return 0, or return the seconds to wait (nothing charged)."""
        with self.lock:
            now = self.clock()
            self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
            self.stamp = now
            if self.tokens <= 0:
                return (1 - self.tokens) / self.rate
            self.tokens -= amount
            return 0.0


def parse_rate(text: str) -> float | None:
    """Events per second of `N/s` or `N/m`; None for an empty (unlimited) rate."""
    if not text:
        return None
    amount, _, unit = text.partition("/")
    return float(amount) / (60.0 if unit == "m" else 1.0)


@dataclass(frozen=True)
class Source:
    """One configured sender."""

    name: str
    platform: str
    can_track: bool
    can_profile: bool
    cors_origins: frozenset[str]
    bucket: TokenBucket | None = field(default=None, compare=False, repr=False)

    def wait(self, events: int) -> float:
        """0 when `events` more are within the rate limit, else the seconds to wait."""
        return 0.0 if self.bucket is None else self.bucket.take(max(1, events))


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).digest()


class Sources:
    """The configured sources, looked up by write key (by its SHA-256: no key comparison leaks
    timing about the keys themselves)."""

    def __init__(self, items: Iterable[Mapping]):
        self._by_digest: dict[bytes, Source] = {}
        origins: set[str] = set()
        for item in items:
            rate = parse_rate(item.get("rate_limit", ""))
            consent = item.get("consent") or {}
            source = Source(
                name=item["name"], platform=item["platform"],
                can_track=consent.get("canTrack", True),
                can_profile=consent.get("canProfile", False),
                cors_origins=frozenset(item.get("cors_origins", ())),
                bucket=TokenBucket(rate, max(rate, 1.0)) if rate else None)
            self._by_digest[_digest(item["write_key"])] = source
            origins |= source.cors_origins
        self.origins = frozenset(origins)

    def __bool__(self) -> bool:
        return bool(self._by_digest)

    def by_key(self, key: str | None) -> Source | None:
        """The source of a write key, None when it is unknown or absent."""
        if not key:
            return None
        return self._by_digest.get(_digest(key))


def basic_user(environ: Mapping) -> str | None:
    """The user of an `Authorization: Basic` header (the write key), None without one."""
    header = environ.get("HTTP_AUTHORIZATION") or ""
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "basic" or not token:
        return None
    try:
        decoded = base64.b64decode(token.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    return decoded.partition(":")[0] or None


def retry_after(seconds: float) -> str:
    """A Retry-After value: whole seconds, at least 1 (both Segment SDKs parse an integer)."""
    return str(max(1, math.ceil(seconds)))


def cors_headers(origin: str | None, allowed: bool) -> list[tuple[str, str]]:
    """The CORS headers of an answer to a request from `origin` (none for a refused one)."""
    if not origin or not allowed:
        return [("Vary", "Origin")] if origin else []
    return [("Access-Control-Allow-Origin", origin), ("Vary", "Origin")]
