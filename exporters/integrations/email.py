"""Email delivery outcomes from the email provider's webhooks -> integration_email_messages_total.

Counts survive a restart (and kill -9): each accepted webhook is written to the
data directory (temp + fsync + rename) before it is acknowledged.
"""

from __future__ import annotations

import json
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

from prometheus_client.core import CounterMetricFamily, Metric

from pulse.fileio import write_atomic

STATUSES = ("delivered", "bounced", "complained", "deferred")
# Providers' own event names (SendGrid, Postmark, Mailgun, SES) -> our status.
ALIASES = {"delivery": "delivered", "bounce": "bounced", "spamreport": "complained",
           "complaint": "complained", "spamcomplaint": "complained", "deferral": "deferred"}
MAX_EVENTS = 1000


class WebhookError(Exception):
    """A webhook body that cannot be accepted: the field and what is wrong with it."""

    def __init__(self, field: str, problem: str):
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem


def parse_outcomes(body) -> Counter[str]:
    """Count statuses in a webhook body; raise WebhookError (nothing counted) if any is bad.

    Accepted shapes: {"status": s}, [{"status": s}, ...] or {"events": [...]}; an item
    may say "event" instead of "status". Other fields are ignored and never stored.
    """
    if isinstance(body, dict) and "events" in body:
        items, prefix = body["events"], "events"
        if not isinstance(items, list):
            raise WebhookError("events", "must be a list of event objects")
    elif isinstance(body, list):
        items, prefix = body, ""
    elif isinstance(body, dict):
        items, prefix = [body], None
    else:
        raise WebhookError("<body>", "must be a JSON object or a list of objects")
    if not items:
        raise WebhookError(prefix or "<body>", "holds no events")
    if len(items) > MAX_EVENTS:
        raise WebhookError(prefix or "<body>", f"more than {MAX_EVENTS} events")
    counts: Counter[str] = Counter()
    for index, item in enumerate(items):
        where = f"{prefix}[{index}]" if prefix is not None else ""
        field = f"{where}.status" if where else "status"
        if not isinstance(item, dict):
            raise WebhookError(where or "<body>", "must be an object")
        raw = item.get("status", item.get("event"))
        if raw is None:
            raise WebhookError(field, "is required")
        if not isinstance(raw, str):
            raise WebhookError(field, "must be a string")
        status = ALIASES.get(raw.lower(), raw.lower())
        if status not in STATUSES:
            raise WebhookError(field, f"must be one of {', '.join(STATUSES)}")
        counts[status] += 1
    return counts


class EmailOutcomes:
    """Durable per-status counts, kept in a JSON file in the data directory."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._lock = threading.Lock()
        self._counts = Counter({s: 0 for s in STATUSES})
        try:
            stored = json.loads(self.path.read_text())
            for status in STATUSES:
                self._counts[status] = int(stored.get(status, 0))
        except FileNotFoundError:
            pass

    def add(self, counts: Counter[str]) -> None:
        """Add counts and make them durable before returning."""
        with self._lock:
            updated = self._counts + counts
            write_atomic(self.path, json.dumps({s: updated[s] for s in STATUSES}))
            self._counts = Counter({s: updated[s] for s in STATUSES})

    def counts(self) -> dict[str, int]:
        """The current counts, every status present."""
        with self._lock:
            return {s: self._counts[s] for s in STATUSES}


class EmailCollector:
    """integration_email_messages_total{status}."""

    def __init__(self, store: EmailOutcomes):
        self.store = store

    def collect(self) -> Iterator[Metric]:
        """The durable counts."""
        family = CounterMetricFamily("integration_email_messages_total",
                                     "Email messages by delivery outcome reported by the provider.",
                                     labels=["status"])
        for status, count in self.store.counts().items():
            family.add_metric([status], count)
        yield family
