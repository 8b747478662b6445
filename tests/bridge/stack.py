"""A real Prometheus reading the bridge's rule directory, a metric source it scrapes, and the
bridge app wired to both (shared by the rules integration tests)."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from werkzeug.serving import make_server

from bridge import create_app
from pulse.paths import bridge_rules_dir
from tests.bridge.conftest import bridge_config
from tests.harness import PrometheusServer

CHANNELS = {"oncall": ["json://127.0.0.1:9/oncall"], "ops": ["json://127.0.0.1:9/ops"]}


class Exposition:
    """A tiny /metrics source whose gauge values a test sets."""

    def __init__(self):
        self.values: dict[str, float] = {}
        self.fail = False
        source = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                if source.fail:
                    self.send_response(503)
                    self.end_headers()
                    return
                body = "".join(f"{k} {v}\n" for k, v in list(source.values.items()))
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.end_headers()
                self.wfile.write(body.encode())

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.address = f"127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


class Stack:
    """Prometheus + metric source + bridge app on one data dir."""

    def __init__(self, tmp, alertmanager_url: str, replicas: int = 1, extra_tokens=(),
                 **bridge_overrides):
        self.source = Exposition()
        self.data_dir = tmp / "data"
        self.rules_dir = bridge_rules_dir(self.data_dir)
        self.rules_dir.mkdir(parents=True, exist_ok=True)
        # Every replica reads the one rule directory, as `pulse up` runs an HA pair.
        self.replicas = [PrometheusServer(
            tmp / f"prometheus-{i}" if i else tmp / "prometheus",
            rule_files=[self.rules_dir / "*.yml"],
            targets={"testsrc": [self.source.address]}, alertmanagers=[alertmanager_url])
            for i in range(replicas)]
        for p in self.replicas:
            p.start()
        self.prometheus = self.replicas[0]
        prom = {"url": self.prometheus.url}
        if replicas > 1:
            prom["urls"] = [p.url for p in self.replicas]
        self.cfg = bridge_config(
            tmp, extra_tokens, prometheus=prom, alertmanager={"url": alertmanager_url},
            bridge={"channels": CHANNELS, **bridge_overrides})
        self.app = create_app(self.cfg)
        self.client = self.app.test_client()
        self.server = None

    def serve(self) -> str:
        """Serve the app over real HTTP on a free loopback port (threaded); its base URL."""
        if self.server is None:
            self.server = make_server("127.0.0.1", 0, self.app, threaded=True)
            threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return f"http://127.0.0.1:{self.server.server_port}"

    def groups(self) -> dict[str, dict]:
        """Prometheus's loaded groups by name."""
        return {g["name"]: g for g in self.prometheus.rule_groups()}

    def stop(self):
        if self.server is not None:
            self.server.shutdown()
        for p in self.replicas:
            p.stop()
        self.source.stop()
