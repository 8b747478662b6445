"""Fixtures of the events intake tests: an in-process app on a temporary data directory."""

from __future__ import annotations

from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from exporters.events import create_app
from pulse.config import validate

ENV = {"PULSE_PRIVACY_SALT": "test-salt-0123456789abcdef"}
# One token per role that matters to the intake's admin endpoints (pulse.access).
TOKENS = {role: f"{role}-token-0123456789" for role in ("admin", "engineer", "analyst")}


def events_config(data_dir: Path, **section) -> object:
    """A validated Config whose events section carries the given keys."""
    raw = {"data_dir": str(data_dir), "privacy": {"salt": "${PULSE_PRIVACY_SALT}"},
           "bridge": {"tokens": [{"name": role, "role": role, "token": token}
                                 for role, token in TOKENS.items()]},
           "exporters": {"events": {"listen": "127.0.0.1:1",
                                    # profiling has its own tests (tests/exporters/profiles)
                                    "profiles": {"enabled": False}, **section}}}
    return validate(raw, "test", ENV)


class Intake:
    """An intake app, its test client and registry; `restart()` builds a new one on the same dir."""

    def __init__(self, data_dir: Path, **section):
        self.data_dir = data_dir
        self.section = section
        self.apps = []
        self.start()

    def start(self):
        """Build (or rebuild, restoring from disk) the app."""
        if self.apps:
            self.close()
        self.registry = CollectorRegistry()
        self.app = create_app(events_config(self.data_dir, **self.section), self.registry)
        self.apps.append(self.app)
        self.client = self.app.test_client()
        self.intake = self.app.extensions["pulse.events"]
        return self

    restart = start

    def close(self):
        """Stop the log writer and release the data directory."""
        self.intake.store.close()

    def value(self, name: str, **labels) -> float | None:
        """One sample of the app's registry."""
        return self.registry.get_sample_value(name, labels)

    def dead_letters(self, query: str = "", role: str | None = "engineer"):
        """GET the dead letters (as role; None sends no token) and return the response."""
        headers = {"Authorization": f"Bearer {TOKENS[role]}"} if role else {}
        return self.client.get(f"/api/analytics/events/rejected{query}", headers=headers)

    def post(self, events, path="/api/analytics/events", **body):
        """POST a batch (clientTimestamp filled in) and return the response."""
        doc = {"events": events, **body}
        if path.endswith("/events"):
            doc.setdefault("clientTimestamp", "2026-11-25T10:00:00Z")
        return self.client.post(path, json=doc)


@pytest.fixture
def intake(tmp_path):
    """A fresh in-process intake with the default mapping."""
    app = Intake(tmp_path / "data")
    yield app
    app.close()


@pytest.fixture
def make_intake(tmp_path):
    """Build intakes with custom events-section keys: make_intake(**section)."""
    made = []

    def make(**section):
        app = Intake(tmp_path / f"data{len(made)}", **section)
        made.append(app)
        return app
    yield make
    for app in made:
        app.close()
