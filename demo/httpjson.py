"""The small HTTP handler base the demo's stdlib servers (payment provider, sink) share."""

from __future__ import annotations

import json
from http.server import BaseHTTPRequestHandler


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
