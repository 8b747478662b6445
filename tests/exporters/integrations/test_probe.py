"""Probes against real local servers: success, each failure reason, TLS expiry, phases."""

from __future__ import annotations

import socket
import threading

import pytest

from exporters.integrations.probe import ProbeSpec, run_probe, spec_from_settings
from tests.harness import free_port


def test_http_success_with_phases_and_headers(http_server):
    spec = spec_from_settings(f"{http_server.url}/ok", {
        "body_regex": '"status": "ok"', "headers": {"X-Api-Key": "secret-key-123"}})
    result = run_probe(spec)
    assert (result.success, result.reason, result.status_code) == (True, None, 200)
    assert set(result.phases) == {"resolve", "connect", "processing", "transfer"}
    assert result.cert_expiry is None
    from tests.exporters.integrations.servers import Handler
    assert any(h.get("X-Api-Key") == "secret-key-123" for h in Handler.seen_headers)


def test_http_failing_service_is_status(http_server):
    result = run_probe(ProbeSpec(f"{http_server.url}/fail"))
    assert (result.success, result.reason, result.status_code) == (False, "status", 503)


def test_expected_status_codes_are_configurable(http_server):
    spec = spec_from_settings(f"{http_server.url}/fail", {"valid_status_codes": [503]})
    assert run_probe(spec).success


def test_wrong_body_is_body(http_server):
    spec = spec_from_settings(f"{http_server.url}/wrong", {"body_regex": '"status": "ok"'})
    result = run_probe(spec)
    assert (result.success, result.reason, result.status_code) == (False, "body", 200)


def test_slow_service_is_timeout(http_server):
    result = run_probe(spec_from_settings(f"{http_server.url}/slow", {"timeout": "500ms"}))
    assert (result.success, result.reason) == (False, "timeout")


def test_closed_port_is_connect():
    result = run_probe(ProbeSpec(f"http://127.0.0.1:{free_port()}/"))
    assert (result.success, result.reason) == (False, "connect")
    assert run_probe(ProbeSpec(f"tcp://127.0.0.1:{free_port()}")).reason == "connect"


def test_unresolvable_name_is_dns(monkeypatch):
    # No DNS server is reachable from the tests (loopback only): the resolver refuses.
    def refuse(*args, **kwargs):
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    result = run_probe(ProbeSpec("https://payments.invalid/health"))
    assert (result.success, result.reason) == (False, "dns")


def test_hanging_name_resolution_ends_at_the_timeout(monkeypatch):
    release = threading.Event()

    def hang(*args, **kwargs):
        release.wait(30)
        raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")

    monkeypatch.setattr(socket, "getaddrinfo", hang)
    try:
        result = run_probe(spec_from_settings("https://payments.invalid/", {"timeout": "300ms"}))
    finally:
        release.set()
    assert (result.success, result.reason) == (False, "timeout")


def test_self_signed_certificate_fails_verification_as_tls(https_server):
    server, _, _ = https_server
    result = run_probe(ProbeSpec(f"{server.url}/ok"))
    assert (result.success, result.reason) == (False, "tls")


@pytest.mark.parametrize("settings", ["ca_file", "no_verify"])
def test_tls_expiry_when_the_certificate_is_trusted(https_server, settings):
    server, cert, not_after = https_server
    extra = {"ca_file": str(cert)} if settings == "ca_file" else {"tls_verify": False}
    result = run_probe(spec_from_settings(f"{server.url}/ok", extra))
    assert result.success and result.status_code == 200
    assert "tls" in result.phases
    assert result.cert_expiry == pytest.approx(not_after)


def test_tcp_connect_and_tls_handshake(http_server, https_server):
    server, cert, not_after = https_server
    plain = run_probe(ProbeSpec(f"tcp://127.0.0.1:{http_server.port}"))
    assert plain.success and plain.status_code == 0 and plain.cert_expiry is None
    tls = run_probe(ProbeSpec(f"tcp://127.0.0.1:{server.port}", tls=True, ca_file=str(cert)))
    assert tls.success and tls.cert_expiry == pytest.approx(not_after)
