"""Fixtures of the events intake tests: an in-process app on a temporary data directory."""

from __future__ import annotations

import threading
import uuid
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from werkzeug.serving import make_server

from exporters.events import create_app
from pulse.config import validate
from tests.harness import NatsCluster, free_port, wait_until

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


def jetstream_section(nats: NatsCluster) -> dict:
    """Events-section keys of a JetStream log on its own stream, one aggregator."""
    return {"log": {"kind": "jetstream", "servers": nats.servers,
                    "stream": f"T{uuid.uuid4().hex[:12]}", "partitions": 4,
                    "publish_timeout": "10s"},
            "aggregators": {"listen": [f"127.0.0.1:{free_port()}"], "lease_ttl": "3s"}}


class CaughtUpClient:
    """A Flask test client whose GETs first wait until the aggregator applied every message."""

    def __init__(self, client, aggregator):
        self._client = client
        self._aggregator = aggregator

    def get(self, *args, **kwargs):
        """GET once the counts are complete (what a reader of the local log sees at once)."""
        wait_until(self._aggregator.caught_up, 30, 0.05, "the aggregator to catch up")
        return self._client.get(*args, **kwargs)

    def __getattr__(self, name):
        return getattr(self._client, name)


class Intake:
    """An intake app, its test client and registry; `restart()` builds a new one on the same dir.

    With a NATS cluster given, the log is a JetStream stream and one in-process aggregator
    counts it: `value` waits until the aggregator has applied everything published.
    """

    def __init__(self, data_dir: Path, nats: NatsCluster | None = None, **section):
        self.data_dir = data_dir
        self.section = section
        self.aggregator = None
        # Where this intake's events rest: its data dir, and the stream's store with JetStream.
        self.storage = [data_dir] + ([nats.workdir] if nats is not None else [])
        if nats is not None:
            base = jetstream_section(nats)
            self.section = {**base, **section, **{k: {**base[k], **section.get(k, {})}
                                                  for k in base}}
        self.apps = []
        self.start()

    def start(self):
        """Build (or rebuild, restoring from disk) the app."""
        if self.apps:
            self.close()
        self.registry = CollectorRegistry()
        cfg = events_config(self.data_dir, **self.section)
        self.app = create_app(cfg, self.registry)
        self.apps.append(self.app)
        self.client = self.app.test_client()
        self.intake = self.app.extensions["pulse.events"]
        if cfg.exporters.events.log.kind == "jetstream" and self.aggregator is None:
            from exporters.events.aggregator import create_app as aggregator_app

            self.agg_registry = CollectorRegistry()
            ident = cfg.exporters.events.aggregators.listen[0]
            self.agg_app = aggregator_app(cfg, ident, self.agg_registry)
            self.aggregator = self.agg_app.extensions["pulse.aggregator"]
            # The intake reads dead letters from the aggregators over HTTP.
            host, port = ident.rsplit(":", 1)
            self.agg_server = make_server(host, int(port), self.agg_app, threaded=True)
            threading.Thread(target=self.agg_server.serve_forever, daemon=True).start()
        if self.aggregator is not None:
            self.client = CaughtUpClient(self.client, self.aggregator)
        return self

    restart = start

    def close(self):
        """Stop the log writer and release the data directory."""
        self.intake.store.close()

    def stop(self):
        """Close the intake and (JetStream) the aggregator."""
        self.close()
        if self.aggregator is not None:
            self.agg_server.shutdown()
            self.aggregator.stop()

    def families(self) -> set[str]:
        """Names of every metric family exported (JetStream: intake and caught-up aggregator)."""
        names = {fam.name for fam in self.registry.collect()}
        if self.aggregator is not None:
            wait_until(self.aggregator.caught_up, 30, 0.05, "the aggregator to catch up")
            names |= {fam.name for fam in self.agg_registry.collect()}
        return names

    def value(self, name: str, **labels) -> float | None:
        """One sample of the app's registry (JetStream: of the caught-up aggregator's too)."""
        found = self.registry.get_sample_value(name, labels)
        if found is not None or self.aggregator is None:
            return found
        wait_until(self.aggregator.caught_up, 30, 0.05, "the aggregator to catch up")
        return self.agg_registry.get_sample_value(name, labels)

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


@pytest.fixture(scope="session")
def nats(tmp_path_factory):
    """One real nats-server with JetStream for the suite's JetStream runs (a stream per test)."""
    cluster = NatsCluster(tmp_path_factory.mktemp("nats"), nodes=1).start()
    yield cluster
    cluster.stop()


@pytest.fixture(params=["local", "jetstream"])
def log_kind(request):
    """The event log under test: the local write-ahead log or a JetStream stream."""
    return request.param


@pytest.fixture
def intake(tmp_path, log_kind, request):
    """A fresh in-process intake with the default mapping, on each kind of log."""
    nats = request.getfixturevalue("nats") if log_kind == "jetstream" else None
    app = Intake(tmp_path / "data", nats)
    yield app
    app.stop()


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
