"""A fake payment provider (`python -m demo.payments`) the demo API charges and Pulse probes.

`GET /health` answers 200 while healthy; `POST /v1/charges` returns a charge id;
`GET /metrics` counts charges (so a scrape shows it answering or not). Like a real
provider it also answers over HTTPS (`demo.payments_tls_listen`), with a self-signed
certificate it writes at start into `<data_dir>/demo/payments-tls/` (`cert.pem` is the CA
file a probe trusts), so TLS probing and certificate expiry have something to show.
In the `integration-outage` scenario it stops answering: every request except
the supervisor's `/-/ready` is held without a reply for `HANG_SECONDS`, then the
connection is dropped, so probes time out as they do when a real provider hangs.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import logging
import os
import ssl
import threading
import time
import uuid
from http.server import ThreadingHTTPServer
from pathlib import Path

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, generate_latest

from demo.httpjson import JSONHandler, serve_until_term
from demo.scenarios import ScenarioWatch
from pulse.config import split_listen
from pulse.fileio import write_atomic
from pulse.log import setup
from pulse.service import load_or_exit, parse_args

COMPONENT = "demo.payments"
HANG_SECONDS = 15.0
CERT_DAYS = 90  # like an ACME certificate: far from the 14-day expiry warning when fresh
RENEW_DAYS = 30
log = logging.getLogger(COMPONENT)


def tls_dir(data_dir: str | Path) -> Path:
    """Where the provider keeps its certificate (cert.pem) and key (key.pem)."""
    return Path(data_dir) / "demo" / "payments-tls"


def ensure_certificate(data_dir: str | Path, hosts: tuple[str, ...] = ("127.0.0.1",),
                       now: dt.datetime | None = None) -> tuple[Path, Path]:
    """(cert, key) paths: the existing self-signed certificate, or a new one when it is
    missing, unreadable, expires within RENEW_DAYS or does not name every host."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    directory = tls_dir(data_dir)
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    now = now or dt.datetime.now(dt.UTC)
    names: list[x509.GeneralName] = [x509.DNSName("localhost")]
    for host in dict.fromkeys(("127.0.0.1", *hosts)):
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        if key_path.exists() and set(names) <= set(san) and \
                cert.not_valid_after_utc - now > dt.timedelta(days=RENEW_DAYS):
            return cert_path, key_path
    except (OSError, ValueError, x509.ExtensionNotFound):
        pass
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "fakepay demo provider")])
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=CERT_DAYS))
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    directory.mkdir(parents=True, exist_ok=True)
    key_pem = key.private_bytes(serialization.Encoding.PEM,
                                serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
    write_atomic(key_path, key_pem)
    os.chmod(key_path, 0o600)
    write_atomic(cert_path, cert.public_bytes(serialization.Encoding.PEM).decode())
    log.info("wrote a self-signed certificate valid until %s to %s",
             cert.not_valid_after_utc.isoformat(), cert_path)
    return cert_path, key_path


def make_server(listen: str, data_dir: str | Path, hang: float = HANG_SECONDS,
                tls: bool = False):
    """The provider's HTTP server (not started); HTTPS with the demo certificate if tls."""
    scenario = ScenarioWatch(data_dir)
    stop = threading.Event()
    registry = CollectorRegistry()
    charges = Counter("fakepay_charges_total", "Charges the fake provider accepted.",
                      registry=registry)

    class Handler(JSONHandler):
        server_version = "fakepay/1.0"
        timeout = 30

        def setup(self):
            # The TLS handshake runs here, in the request's thread, never in accept().
            super().setup()
            if isinstance(self.request, ssl.SSLSocket):
                self.request.do_handshake()

        def _outage(self) -> bool:
            if self.path == "/-/ready" or not scenario.active("integration-outage"):
                return False
            stop.wait(hang)
            self.close_connection = True
            return True

        def do_GET(self):
            if self._outage():
                return
            if self.path in ("/health", "/-/ready", "/-/healthy"):
                self._send(200, {"status": "ok"})
            elif self.path == "/metrics":
                self._send_bytes(200, CONTENT_TYPE_LATEST, generate_latest(registry))
            else:
                self._send(404, {"error": "not found"})

        def do_POST(self):
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            if self._outage():
                return
            if self.path != "/v1/charges":
                self._send(404, {"error": "not found"})
                return
            try:
                body = json.loads(raw or b"{}")
                amount = float(body["amount"])
            except (ValueError, KeyError, TypeError):
                self._send(400, {"error": "amount is required"})
                return
            charges.inc()
            self._send(200, {"id": f"ch_{uuid.uuid4().hex[:16]}", "status": "succeeded",
                             "amount": amount, "created": time.time()})

    host, port = split_listen(listen)
    server = ThreadingHTTPServer((host, port), Handler)
    if tls:
        cert, key = ensure_certificate(data_dir, (host,) if host not in ("0.0.0.0", "::") else ())
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(cert, key)
        server.socket = ctx.wrap_socket(server.socket, server_side=True,
                                        do_handshake_on_connect=False)
    server.daemon_threads = True
    server.hang_release = stop
    return server


def main(argv: list[str] | None = None) -> None:
    """Serve until SIGTERM."""
    args = parse_args(COMPONENT, argv)
    cfg = load_or_exit(args.config)
    setup(COMPONENT, cfg.log_level)
    listen = args.listen or cfg.demo.payments_listen
    server = make_server(listen, cfg.data_dir)
    secure = make_server(cfg.demo.payments_tls_listen, cfg.data_dir, tls=True)
    log.info("fake payment provider on http://%s and https://%s (health: /health)", listen,
             cfg.demo.payments_tls_listen)
    serve_until_term(server, secure, on_term=lambda s: s.hang_release.set())

if __name__ == "__main__":
    main()
