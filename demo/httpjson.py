"""What the demo's stdlib servers (payment provider, sink) share: the JSON handler base and
serving until SIGTERM."""

from __future__ import annotations

import json
import signal
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, HTTPServer


class JSONHandler(BaseHTTPRequestHandler):
    """Answers with a body and its length; logs nothing (the services log what matters)."""

    def _send_bytes(self, status: int, content_type: str, raw: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def _send(self, status: int, body) -> None:
        self._send_bytes(status, "application/json", json.dumps(body).encode())

    def log_message(self, fmt, *args):
        pass


def serve_until_term(server: HTTPServer, *others: HTTPServer,
                     on_term: Callable[[HTTPServer], None] | None = None) -> None:
    """Serve server (and others, each in a thread) until SIGTERM or Ctrl-C, then close all.

    on_term runs for each server before it shuts down (the payment provider releases the
    requests it holds hanging, or shutdown would wait for them).
    """
    servers = (server, *others)
    for other in others:
        threading.Thread(target=other.serve_forever, kwargs={"poll_interval": 0.2},
                         daemon=True).start()

    def stop(signum, frame):
        for s in servers:
            if on_term is not None:
                on_term(s)
            # shutdown() waits for serve_forever to return: never in the signal handler's thread.
            threading.Thread(target=s.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        for s in servers:
            s.server_close()
