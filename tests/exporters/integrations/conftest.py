"""Session-wide local servers the probes are pointed at."""

from __future__ import annotations

import pytest

from tests.exporters.integrations.servers import Server, tls_server


@pytest.fixture(scope="session")
def http_server():
    """A plain HTTP server with /ok, /fail (503), /wrong (body) and /slow (3 s)."""
    server = Server()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def https_server(tmp_path_factory):
    """(server, cert path, notAfter) for an HTTPS server with a self-signed certificate."""
    server, cert, not_after = tls_server(tmp_path_factory.mktemp("tls"))
    yield server, cert, not_after
    server.stop()
