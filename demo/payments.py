"""A fake payment provider (`python -m demo.payments`) the demo API charges and Pulse probes.

`GET /health` answers 200 while healthy; `POST /v1/charges` returns a charge id;
`GET /metrics` counts charges (so a scrape shows it answering or not).
In the `integration-outage` scenario it stops answering: every request except
the supervisor's `/-/ready` is held without a reply for `HANG_SECONDS`, then the
connection is dropped, so probes time out as they do when a real provider hangs.
"""

from __future__ import annotations

import json
import logging
import signal
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, generate_latest

from demo.scenarios import ScenarioWatch
from pulse.config import split_listen
from pulse.log import setup
from pulse.service import load_or_exit, parse_args

COMPONENT = "demo.payments"
HANG_SECONDS = 15.0
log = logging.getLogger(COMPONENT)


def make_server(listen: str, data_dir: str | Path, hang: float = HANG_SECONDS):
    """The provider's HTTP server (not started)."""
    scenario = ScenarioWatch(data_dir)
    stop = threading.Event()
    registry = CollectorRegistry()
    charges = Counter("fakepay_charges_total", "Charges the fake provider accepted.",
                      registry=registry)

    class Handler(BaseHTTPRequestHandler):
        server_version = "fakepay/1.0"

        def _send(self, status: int, body: dict) -> None:
            raw = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

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
                raw = generate_latest(registry)
                self.send_response(200)
                self.send_header("Content-Type", CONTENT_TYPE_LATEST)
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)
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

        def log_message(self, fmt, *args):
            pass

    host, port = split_listen(listen)
    server = ThreadingHTTPServer((host, port), Handler)
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

    def on_term(signum, frame):
        server.hang_release.set()
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, on_term)
    log.info("fake payment provider on http://%s (health: /health)", listen)
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
