"""One probe of a third-party service: HTTP(S) or TCP (optionally TLS), timed by phase.

The probe is done by hand (resolve, connect, handshake, request, read) rather
than through an HTTP library so each phase can be timed and every failure gets
exactly one reason from a bounded set.
"""

from __future__ import annotations

import http.client
import logging
import re
import socket
import ssl
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

log = logging.getLogger(__name__)

REASONS = ("timeout", "dns", "connect", "tls", "status", "body", "other")
PHASES = ("resolve", "connect", "tls", "processing", "transfer")
MAX_BODY = 1 << 20
USER_AGENT = "Pulse-Integrations-Probe/1"


@dataclass(frozen=True)
class ProbeSpec:
    """What to probe and how: a URL (http, https or tcp) and the prober's settings."""

    url: str
    method: str = "GET"
    valid_status_codes: tuple[int, ...] = ()
    body_regex: str | None = None
    timeout: float = 5.0
    headers: tuple[tuple[str, str], ...] = ()
    tls: bool = False
    tls_verify: bool = True
    ca_file: str | None = None

    @property
    def scheme(self) -> str:
        """http, https or tcp."""
        return urlsplit(self.url).scheme


@dataclass
class ProbeResult:
    """The outcome of one probe."""

    success: bool
    reason: str | None
    duration: float
    phases: dict[str, float] = field(default_factory=dict)
    status_code: int = 0
    cert_expiry: float | None = None
    finished_at: float = 0.0


class ProbeFailure(Exception):
    """A probe failed for `reason`."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(detail or reason)
        self.reason = reason


def spec_from_settings(url: str, settings: Mapping, default_timeout: float = 5.0) -> ProbeSpec:
    """A ProbeSpec from a target's or module's config settings (durations already parsed)."""
    from pulse.config import parse_duration

    timeout = settings.get("timeout")
    return ProbeSpec(
        url=url, method=settings.get("method", "GET"),
        valid_status_codes=tuple(settings.get("valid_status_codes", ())),
        body_regex=settings.get("body_regex") or None,
        timeout=parse_duration(timeout) if timeout else default_timeout,
        headers=tuple(sorted(dict(settings.get("headers", {})).items())),
        tls=bool(settings.get("tls", False)), tls_verify=settings.get("tls_verify", True),
        ca_file=settings.get("ca_file") or None)


def run_probe(spec: ProbeSpec, clock: Callable[[], float] = time.perf_counter,
              wall: Callable[[], float] = time.time) -> ProbeResult:
    """Probe once; never raises for a failing service (the failure is the result)."""
    phases: dict[str, float] = {}
    state = {"status": 0, "expiry": None}
    start = clock()
    try:
        _probe(spec, phases, state, clock, start + spec.timeout)
        ok, reason = True, None
    except ProbeFailure as exc:
        ok, reason = False, exc.reason
    except Exception:  # noqa: BLE001 - an unforeseen failure is still a failed probe
        # The reason label only says "other": the log keeps what happened (the host only,
        # a URL may carry credentials).
        log.exception("probe of %s failed unexpectedly", urlsplit(spec.url).hostname)
        ok, reason = False, "other"
    return ProbeResult(ok, reason, clock() - start, phases, state["status"], state["expiry"],
                       wall())


def _remaining(clock, deadline) -> float:
    left = deadline - clock()
    if left <= 0:
        raise ProbeFailure("timeout")
    return left


def _timed(phases, name, clock, reason, fn):
    """Run one phase, record its duration, and turn its errors into a failure reason."""
    start = clock()
    try:
        return fn()
    except ProbeFailure:
        raise
    except TimeoutError as exc:
        raise ProbeFailure("timeout", str(exc)) from None
    except ssl.SSLError as exc:
        raise ProbeFailure("tls", str(exc)) from None
    except (OSError, http.client.HTTPException) as exc:
        raise ProbeFailure(reason, str(exc)) from None
    finally:
        phases[name] = clock() - start


def _probe(spec: ProbeSpec, phases, state, clock, deadline) -> None:
    parts = urlsplit(spec.url)
    scheme = parts.scheme
    host = parts.hostname or ""
    port = parts.port or {"https": 443, "http": 80}.get(scheme, 0)
    use_tls = scheme == "https" or (scheme == "tcp" and spec.tls)

    def resolve():
        # getaddrinfo cannot be interrupted: it runs in a daemon thread so the probe
        # still ends at its deadline (and a stuck lookup never holds up exit).
        outcome: dict = {}

        def lookup():
            try:
                outcome["infos"] = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
            except Exception as exc:  # noqa: BLE001 - handed to the probing thread
                outcome["error"] = exc

        thread = threading.Thread(target=lookup, daemon=True, name="probe-resolve")
        thread.start()
        thread.join(_remaining(clock, deadline))
        if thread.is_alive():
            raise ProbeFailure("timeout", "name resolution timed out")
        error = outcome.get("error")
        if isinstance(error, socket.gaierror | UnicodeError):
            raise ProbeFailure("dns", str(error))
        if error is not None:
            raise error
        return outcome["infos"]

    infos = _timed(phases, "resolve", clock, "dns", resolve)
    _remaining(clock, deadline)

    def connect():
        last: Exception | None = None
        for family, kind, proto, _, addr in infos:
            sock = socket.socket(family, kind, proto)
            try:
                sock.settimeout(_remaining(clock, deadline))
                sock.connect(addr)
                return sock
            except TimeoutError:
                sock.close()
                raise
            except OSError as exc:
                sock.close()
                last = exc
        raise ProbeFailure("connect", str(last))

    sock = _timed(phases, "connect", clock, "connect", connect)
    try:
        if use_tls:
            def handshake():
                sock.settimeout(_remaining(clock, deadline))
                return _tls_context(spec).wrap_socket(sock, server_hostname=host)

            sock = _timed(phases, "tls", clock, "tls", handshake)
            state["expiry"] = _cert_expiry(sock)
        if scheme == "tcp":
            return
        _http(spec, sock, parts, host, port, phases, state, clock, deadline)
    finally:
        sock.close()


def _http(spec, sock, parts, host, port, phases, state, clock, deadline) -> None:
    conn = http.client.HTTPConnection(host, port, timeout=_remaining(clock, deadline))
    conn.sock = sock
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    headers = {"User-Agent": USER_AGENT, **dict(spec.headers)}

    def request():
        sock.settimeout(_remaining(clock, deadline))
        conn.request(spec.method, path, headers=headers)
        return conn.getresponse()

    response = _timed(phases, "processing", clock, "connect", request)
    state["status"] = response.status

    def transfer():
        sock.settimeout(_remaining(clock, deadline))
        return b"" if spec.method == "HEAD" else response.read(MAX_BODY)

    body = _timed(phases, "transfer", clock, "connect", transfer)
    valid = spec.valid_status_codes or tuple(range(200, 300))
    if response.status not in valid:
        raise ProbeFailure("status", f"status {response.status}")
    if spec.body_regex and not re.search(spec.body_regex, body.decode("utf-8", "replace")):
        raise ProbeFailure("body", "body does not match")


def _tls_context(spec: ProbeSpec) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=spec.ca_file)
    if not spec.tls_verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


def _cert_expiry(tls_sock: ssl.SSLSocket) -> float | None:
    """The peer certificate's notAfter as a Unix timestamp (also when not verified)."""
    der = tls_sock.getpeercert(binary_form=True)
    if not der:
        return None
    from cryptography import x509

    return x509.load_der_x509_certificate(der).not_valid_after_utc.timestamp()
