"""Incidents: a critical alert opens one, its resolution closes it; on-call acknowledges it.

Records live in <data_dir>/incidents/incidents.json, rewritten atomically on
every change (temp + fsync + rename), so an acknowledgement survives kill -9.
`init_app` builds the app's store; `active(app)` is what the health endpoint lists.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path

from flask import Flask

from bridge.services import INCIDENTS, service
from bridge.services.delivery_log import alert_id
from pulse.fileio import write_atomic

KEEP_RESOLVED = 200


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def incident_id(alert: Mapping) -> str:
    """One incident per alert occurrence: its fingerprint and start time."""
    return "inc-" + hashlib.sha256(alert_id(alert).encode()).hexdigest()[:12]


class IncidentStore:
    """Incident records by id, persisted as one JSON document."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._lock = threading.Lock()
        try:
            self._items: dict[str, dict] = json.loads(self.path.read_text())
        except FileNotFoundError:
            self._items = {}

    def _save(self) -> None:
        resolved = sorted((i for i in self._items.values() if i["status"] == "resolved"),
                          key=lambda i: i.get("resolvedAt") or "")
        for old in resolved[:-KEEP_RESOLVED]:
            del self._items[old["id"]]
        write_atomic(self.path, json.dumps(self._items, indent=1, sort_keys=True))

    def observe(self, alerts: Iterable[Mapping], channels: Iterable[str]) -> list[str]:
        """Open an incident for each new critical firing alert, resolve the resolved ones."""
        changed: list[str] = []
        channels = sorted(set(channels))
        with self._lock:
            for alert in alerts:
                labels = alert.get("labels") or {}
                if labels.get("severity") != "critical":
                    continue
                iid = incident_id(alert)
                record = self._items.get(iid)
                if alert.get("status") == "resolved":
                    if record and record["status"] != "resolved":
                        record["status"] = "resolved"
                        record["resolvedAt"] = alert.get("endsAt") or _now()
                        changed.append(iid)
                    continue
                if record is None:
                    ann = alert.get("annotations") or {}
                    self._items[iid] = record = {
                        "id": iid,
                        "alert": labels.get("alertname", ""),
                        "severity": "critical",
                        "team": labels.get("team"),
                        "labels": dict(labels),
                        "summary": ann.get("summary", ""),
                        "startsAt": alert.get("startsAt"),
                        "runbook": ann.get("runbook_url"),
                        "dashboard": ann.get("dashboard_url"),
                        "status": "open",
                        "channelsNotified": [],
                        "acknowledged": False,
                        "acknowledgedBy": None,
                        "acknowledgedAt": None,
                        "resolvedAt": None,
                    }
                    changed.append(iid)
                if record["status"] == "open":
                    new = sorted(set(record["channelsNotified"]) | set(channels))
                    if new != record["channelsNotified"]:
                        record["channelsNotified"] = new
                        changed.append(iid)
            if changed:
                self._save()
        return changed

    def acknowledge(self, iid: str, who: str) -> dict | None:
        """Mark an incident acknowledged by who; the record, or None when unknown."""
        with self._lock:
            record = self._items.get(iid)
            if record is None:
                return None
            if not record["acknowledged"]:
                record.update(acknowledged=True, acknowledgedBy=who, acknowledgedAt=_now())
                self._save()
            return dict(record)

    def get(self, iid: str) -> dict | None:
        """One incident record."""
        with self._lock:
            record = self._items.get(iid)
            return dict(record) if record else None

    def list(self, status: str | None = None) -> list[dict]:
        """Incidents, newest first, optionally only those with a status (open, resolved)."""
        with self._lock:
            items = [dict(i) for i in self._items.values()
                     if status is None or i["status"] == status]
        return sorted(items, key=lambda i: i.get("startsAt") or "", reverse=True)


def init_app(app: Flask) -> IncidentStore:
    """Build the app's incident store under the data dir."""
    data_dir = Path(app.config["PULSE"].data_dir)
    app.extensions[INCIDENTS] = IncidentStore(data_dir / "incidents" / "incidents.json")
    return app.extensions[INCIDENTS]


def active(app: Flask) -> list[dict]:
    """Open incidents (critical alerts still firing), newest first: for the health endpoint."""
    return service(app, INCIDENTS).list("open")
