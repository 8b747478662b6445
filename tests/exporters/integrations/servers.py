"""Real local servers for the probe tests: HTTP and HTTPS (self-signed), slow, failing, wrong."""

from __future__ import annotations

import datetime as dt
import ipaddress
import ssl
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

# path -> (status, body, delay in seconds)
ROUTES = {
    "/ok": (200, b'{"status": "ok"}', 0.0),
    "/fail": (503, b'{"status": "down"}', 0.0),
    "/wrong": (200, b'{"status": "degraded"}', 0.0),
    "/slow": (200, b'{"status": "ok"}', 3.0),
}


class Handler(BaseHTTPRequestHandler):
    """Answers ROUTES; records the headers it saw."""

    seen_headers: list[dict] = []

    def _answer(self):
        status, body, delay = ROUTES.get(self.path.split("?")[0], (404, b"not found", 0.0))
        Handler.seen_headers.append(dict(self.headers))
        if delay:
            time.sleep(delay)
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)
        except OSError:
            pass  # the prober gave up (timeout test)

    do_GET = do_HEAD = do_POST = _answer

    def log_message(self, *args):
        pass


class Server:
    """A threaded HTTP(S) server on a free loopback port."""

    def __init__(self, tls_context: ssl.SSLContext | None = None):
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        if tls_context is not None:
            self.httpd.socket = tls_context.wrap_socket(self.httpd.socket, server_side=True)
        self.port = self.httpd.server_address[1]
        scheme = "https" if tls_context else "http"
        self.url = f"{scheme}://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def self_signed(directory: Path, days: int = 30) -> tuple[Path, Path, float]:
    """A self-signed certificate for 127.0.0.1/localhost: (cert path, key path, notAfter)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "pulse-test")])
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    not_after = now + dt.timedelta(days=days)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(not_after)
            .add_extension(x509.SubjectAlternativeName([
                x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path, not_after.timestamp()


def tls_server(directory: Path) -> tuple[Server, Path, float]:
    """An HTTPS server with a fresh self-signed certificate: (server, cert path, notAfter)."""
    cert, key, not_after = self_signed(directory)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    return Server(ctx), cert, not_after
