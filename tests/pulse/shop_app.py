"""A platform service that is neither Pulse nor the demo: a plain WSGI shop API instrumented
with exporters/instrument.py, served by wsgiref with a thread per request.

`python -m tests.pulse.shop_app --port N`. GET /api/orders/<id> answers after the current
delay; PUT /admin/delay with a number of seconds changes it (how a test makes it slow).
"""

from __future__ import annotations

import argparse
import json
import time
from socketserver import ThreadingMixIn
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from exporters.instrument import Instrumentation

STATE = {"delay": 0.0}


def shop(environ, start_response):
    """The shop's routes: orders (delayed), the delay knob, readiness."""
    path = environ.get("PATH_INFO", "/")
    if path == "/admin/delay" and environ["REQUEST_METHOD"] == "PUT":
        size = int(environ.get("CONTENT_LENGTH") or 0)
        STATE["delay"] = float(environ["wsgi.input"].read(size) or 0)
        body = {"delay": STATE["delay"]}
    elif path.startswith("/api/orders/"):
        time.sleep(STATE["delay"])
        body = {"order": path.rsplit("/", 1)[1]}
    elif path == "/-/ready":
        body = {"ready": True}
    else:
        start_response("404 Not Found", [("Content-Type", "application/json")])
        return [b'{"error": "not found"}']
    start_response("200 OK", [("Content-Type", "application/json")])
    return [json.dumps(body).encode()]


class ThreadingServer(ThreadingMixIn, WSGIServer):
    """wsgiref with a thread per request, so slow requests do not queue behind each other."""

    daemon_threads = True


class QuietHandler(WSGIRequestHandler):
    """No access log line per request."""

    def log_message(self, *args):
        pass


def main() -> None:
    """Serve the instrumented shop on 127.0.0.1:--port."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    app = Instrumentation().middleware(shop, routes=["/api/orders/{id}", "/admin/delay"])
    make_server("127.0.0.1", args.port, app, server_class=ThreadingServer,
                handler_class=QuietHandler).serve_forever()


if __name__ == "__main__":
    main()
