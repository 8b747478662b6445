"""`pulse up` with an HA Prometheus pair and two VictoriaMetrics tiers, on free ports."""

from __future__ import annotations

import json
import socket
import sys
from pathlib import Path

import requests
import yaml

from pulse.config import load_config
from tests import harness

TOKEN = "test-admin-token-0123456789"
PROBE_RULES = {"groups": [{"name": "ha-probe", "rules": [{
    "alert": "HaPairProbe", "expr": "vector(1)",
    "labels": {"severity": "critical", "team": "oncall"},
    "annotations": {"summary": "The HA pair probe fires.", "description": "Always.",
                    "runbook_url": "docs/runbooks.md"}}]}]}


def pair_port() -> int:
    """A port p with p and p + 1 free (the pair listens on both)."""
    for _ in range(50):
        port = harness.free_port()
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
        return port
    raise AssertionError("no two adjacent free ports")


class HaStack:
    """The stack as `pulse up` runs it; start(), stop(), and the URLs of its parts."""

    def __init__(self, work: Path, sink_url: str, usage_retention: str = "2y"):
        self.work = work
        self.data = work / "data"
        self.path = work / "pulse.yml"
        port = pair_port()
        self.usage_url = f"http://127.0.0.1:{harness.free_port()}"
        self.business_url = f"http://127.0.0.1:{harness.free_port()}"
        raw = harness.write_pulse_config(self.path, self.data)
        raw["prometheus"].update({"url": f"http://127.0.0.1:{port}", "replicas": 2,
                                  "retention": "15d"})
        raw["long_term"] = {"enabled": True, "tiers": [
            {"name": "usage", "url": self.usage_url, "retention": usage_retention},
            {"name": "business", "url": self.business_url, "retention": "7y",
             "keep": [".*business_.*"]}]}
        raw["bridge"]["channels"] = {"ha": [sink_url]}
        # Only the probe's critical page reaches the sink; the stack's other alerts go nowhere.
        raw["bridge"]["receivers"] = {"default": [], "heartbeat": [], "oncall-pager": ["ha"]}
        self.path.write_text(yaml.safe_dump(raw, sort_keys=False))
        self.env = harness.pulse_env(self.data)
        self.cfg = load_config(self.path, env=self.env)
        self.prom_urls = [f"http://127.0.0.1:{port}", f"http://127.0.0.1:{port + 1}"]
        self.bridge = f"http://{self.cfg.bridge.listen}"
        self.am = self.cfg.alertmanager.url
        self.up: harness.Process | None = None

    def write_probe_rule(self) -> None:
        """An always-firing critical alert in the bridge's rule directory."""
        rules = self.data / "rules"
        rules.mkdir(parents=True, exist_ok=True)
        (rules / "ha-probe.yml").write_text(yaml.safe_dump(PROBE_RULES, sort_keys=False))

    def start(self) -> HaStack:
        """`pulse up` and wait for its banner."""
        self.starts = getattr(self, "starts", 0) + 1
        # A log per start: the banner of an earlier run must not count.
        self.up = harness.Process([sys.executable, "-m", "pulse", "up", "--config",
                                   str(self.path)], self.work / f"up-{self.starts}.log",
                                  env=self.env, cwd=harness.ROOT)
        harness.wait_until(lambda: "Pulse is up" in self.up.log() or not self.up.alive(),
                           timeout=180, message="the banner of pulse up")
        assert self.up.alive(), self.up.log()[-4000:]
        return self

    def stop(self) -> None:
        """Stop `pulse up` (SIGTERM: it stops every child)."""
        if self.up:
            self.up.stop(timeout=60)

    def pids(self) -> dict[str, int]:
        """Each component's pid from the running stack's state file."""
        state = json.loads((self.data / "pulse.pid").read_text())
        return {n: c["pid"] for n, c in state["components"].items()}

    def pulse(self, *args: str):
        """Run `pulse ARGS --config ...`; the completed process."""
        import subprocess

        return subprocess.run([sys.executable, "-m", "pulse", *args, "--config", str(self.path)],
                              capture_output=True, text=True, env=self.env, timeout=600,
                              cwd=harness.ROOT)

    def get(self, path: str, **params) -> dict:
        """GET a bridge API with the admin token; the JSON body (200 required)."""
        resp = requests.get(f"{self.bridge}{path}", params=params, timeout=60,
                            headers={"Authorization": f"Bearer {TOKEN}"})
        assert resp.status_code == 200, resp.text[:2000]
        return resp.json()

    def post(self, path: str, body: dict) -> dict:
        """POST a JSON body to a bridge API with the admin token; the JSON answer."""
        resp = requests.post(f"{self.bridge}{path}", json=body, timeout=120,
                             headers={"Authorization": f"Bearer {TOKEN}"})
        assert resp.status_code == 200, resp.text[:2000]
        return resp.json()
