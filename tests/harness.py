"""Real Prometheus, Alertmanager and Pulse processes for tests, on free loopback ports.

Nothing here fakes a server: each class starts the real binary in a temporary
directory and stops it (and checks it is gone) on teardown. A missing binary
fails the test with the command that installs it.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from pulse.fileio import write_atomic
from pulse.launcher.supervisor import (
    alertmanager_argv,
    prometheus_argv,
    service_argv,
    victoria_argv,
)

ROOT = Path(__file__).resolve().parent.parent
INSTALL = ("apt-get update && apt-get install -y --no-install-recommends "
           "prometheus prometheus-alertmanager")
_LIVE: set[subprocess.Popen] = set()


def require_binary(name: str) -> str:
    """The path of a required binary; fail the test (never skip) with how to install it."""
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"`{name}` is not installed; the integration tests need the real one. "
                    f"Install it with: {INSTALL}  (or run `make test`, which does)", pytrace=False)
    return path


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def copy_rules(dest: Path, transform: Callable[[str], str]) -> list[Path]:
    """Every rules/*.rules.yml written into dest (created) with its text passed through
    transform (live tests shorten or compress the windows); the copies, sorted."""
    dest.mkdir(parents=True, exist_ok=True)
    copies = []
    for rule_file in sorted((ROOT / "rules").glob("*.rules.yml")):
        copy = dest / rule_file.name
        copy.write_text(transform(rule_file.read_text()))
        copies.append(copy)
    return copies


def wait_until(check: Callable[[], Any], timeout: float = 30.0, interval: float = 0.2,
               message: str = "condition") -> Any:
    """Call check until it returns something truthy; fail with the last value after timeout."""
    deadline = time.monotonic() + timeout
    last: Any = None
    error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            last = check()
            error = None
            if last:
                return last
        except (requests.RequestException, OSError, ValueError, KeyError) as exc:
            error = exc
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {message}; "
                         f"last value {last!r}" + (f", last error {error!r}" if error else ""))


class Process:
    """A child process in its own session, logging to a file, stopped with its group."""

    def __init__(self, argv: list[str], log_path: Path, env: dict[str, str] | None = None,
                 cwd: Path | None = None):
        self.argv = argv
        self.log_path = Path(log_path)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as logf:
            self.proc = subprocess.Popen(argv, stdout=logf, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, env=env, cwd=cwd,
                                         start_new_session=True)
        _LIVE.add(self.proc)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        """True while the process runs."""
        return self.proc.poll() is None

    def log(self) -> str:
        """Everything the process has written so far."""
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Send sig to the process group and reap it."""
        try:
            os.killpg(self.proc.pid, sig)
        except ProcessLookupError:
            pass
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
        _LIVE.discard(self.proc)

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM, then SIGKILL after timeout; return the exit code."""
        if self.alive():
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        else:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        _LIVE.discard(self.proc)
        return self.proc.returncode

    def wait_http(self, url: str, timeout: float = 30.0) -> None:
        """Wait until url answers 200, failing early (with the log) if the process exits."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive():
                raise AssertionError(f"{self.argv[0]} exited with {self.proc.returncode}:\n"
                                     f"{self.log()[-4000:]}")
            try:
                if requests.get(url, timeout=1).status_code == 200:
                    # Another process holding the port would answer too: ours must live on.
                    time.sleep(0.1)
                    if self.alive():
                        return
                    continue
            except requests.RequestException:
                pass
            time.sleep(0.1)
        raise AssertionError(f"{url} not ready after {timeout}s:\n{self.log()[-4000:]}")


def stop_all() -> None:
    """Kill every process the harness started that is still alive."""
    for proc in list(_LIVE):
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(10)
        _LIVE.discard(proc)


def live_processes() -> list[subprocess.Popen]:
    """Processes the harness started and has not stopped yet."""
    return [p for p in _LIVE if p.poll() is None]


def _start_owned(argv: list[str], log_path: Path, server, timeout: float,
                 identity_path: str, attempts: int = 3) -> Process:
    """Start a server on server.port and make sure the answers come from it.

    A port picked by free_port() can be taken by another process before the server binds
    it; then the server exits while the other one may well answer /-/ready. So readiness
    counts only while our process is alive and answers its own API; otherwise the server
    is started again on a fresh port (argv's listen address is rewritten).
    """
    for attempt in range(attempts):
        proc = Process(argv, log_path)
        try:
            proc.wait_http(f"{server.url}/-/ready", timeout)
            ok = requests.get(f"{server.url}{identity_path}", timeout=5).status_code == 200
            time.sleep(0.1)
            if ok and proc.alive():
                return proc
        except (AssertionError, requests.RequestException):
            if attempt == attempts - 1:
                raise
        proc.stop()
        old = f"127.0.0.1:{server.port}"
        server.port = free_port()
        server.url = f"http://127.0.0.1:{server.port}"
        argv = [a.replace(old, f"127.0.0.1:{server.port}") for a in argv]
    raise AssertionError(f"{argv[0]} did not come up on a port of its own: {log_path}")


class OwnedServer:
    """A real server binary on a free loopback port with its files in workdir; stopped with
    its process group. Prometheus and Alertmanager build on it."""

    log_name = "server"

    def __init__(self, binary: str, workdir: Path):
        self.binary = require_binary(binary)
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: Process | None = None

    def _launch(self, argv: list[str], timeout: float, identity_path: str):
        """Start argv on a port of its own (see _start_owned); returns self."""
        self.process = _start_owned(argv, self.workdir / f"{self.log_name}.log", self, timeout,
                                    identity_path)
        return self

    def stop(self) -> None:
        """Stop the server."""
        if self.process:
            self.process.stop()


class PrometheusServer(OwnedServer):
    """A real Prometheus on a free port, configured by scrape targets, rules and Alertmanagers."""

    log_name = "prometheus"

    def __init__(self, workdir: Path, *, scrape_interval: str = "1s",
                 evaluation_interval: str = "1s", rule_files: Iterable[str | Path] = (),
                 targets: dict[str, list[str]] | None = None,
                 alertmanagers: Iterable[str] = (), extra_args: Iterable[str] = (),
                 scrape_configs: Iterable[dict] = ()):
        super().__init__("prometheus", workdir)
        self.scrape_interval = scrape_interval
        self.evaluation_interval = evaluation_interval
        self.rule_files = [str(p) for p in rule_files]
        self.targets = dict(targets or {})
        self.alertmanagers = list(alertmanagers)
        self.extra_args = list(extra_args)
        # Whole scrape configs beside `targets` (e.g. pulse.launcher.scrape's).
        self.scrape_configs = list(scrape_configs)
        self.config_path = self.workdir / "prometheus.yml"

    def config(self) -> dict:
        """The prometheus.yml document for the current settings."""
        doc: dict = {
            "global": {"scrape_interval": self.scrape_interval,
                       "evaluation_interval": self.evaluation_interval},
            "rule_files": self.rule_files,
            "scrape_configs": [
                {"job_name": job, "static_configs": [{"targets": list(addrs)}]}
                for job, addrs in self.targets.items()
            ] + self.scrape_configs,
        }
        if self.alertmanagers:
            doc["alerting"] = {"alertmanagers": [{"static_configs": [
                {"targets": [a.replace("http://", "") for a in self.alertmanagers]}]}]}
        return doc

    def write_config(self) -> None:
        """Write prometheus.yml (atomically) for the current settings."""
        write_atomic(self.config_path, yaml.safe_dump(self.config(), sort_keys=False))

    def start(self, timeout: float = 30.0) -> PrometheusServer:
        """Start Prometheus and wait until it is ready."""
        self.write_config()
        argv = [*prometheus_argv(self.config_path, self.workdir / "data",
                                 f"127.0.0.1:{self.port}", resend_delay="1s",
                                 binary=self.binary), *self.extra_args]
        return self._launch(argv, timeout, "/api/v1/status/buildinfo")

    def reload(self) -> None:
        """POST /-/reload and require success."""
        resp = requests.post(f"{self.url}/-/reload", timeout=10)
        assert resp.status_code == 200, f"reload failed: {resp.status_code} {resp.text}"

    def configure(self, *, rule_files: Iterable[str | Path] | None = None,
                  targets: dict[str, list[str]] | None = None,
                  alertmanagers: Iterable[str] | None = None) -> None:
        """Change rule files, targets or Alertmanagers, rewrite the config and reload."""
        if rule_files is not None:
            self.rule_files = [str(p) for p in rule_files]
        if targets is not None:
            self.targets = dict(targets)
        if alertmanagers is not None:
            self.alertmanagers = list(alertmanagers)
        self.write_config()
        self.reload()

    def api(self, path: str, **params) -> Any:
        """GET /api/v1/<path> and return its data (failing on an API error)."""
        resp = requests.get(f"{self.url}/api/v1/{path}", params=params, timeout=10)
        body = resp.json()
        assert body.get("status") == "success", f"{path} {params}: {body}"
        return body["data"]

    def query(self, expr: str, time_: float | None = None) -> list[dict]:
        """Instant query; the result vector."""
        params = {"query": expr}
        if time_ is not None:
            params["time"] = str(time_)
        data = self.api("query", **params)
        if data["resultType"] == "scalar":
            return [{"metric": {}, "value": data["result"]}]
        return data["result"]

    def query_value(self, expr: str) -> float | None:
        """The first sample's value of an instant query, or None when empty."""
        result = self.query(expr)
        return float(result[0]["value"][1]) if result else None

    def wait_for_value(self, expr: str, predicate: Callable[[float], bool] = lambda v: True,
                       timeout: float = 30.0) -> float:
        """Wait until expr has a value satisfying predicate; return it."""
        def check():
            value = self.query_value(expr)
            return (value,) if value is not None and predicate(value) else None
        return wait_until(check, timeout, message=f"a value of {expr!r}")[0]

    def wait_for_samples(self, selector: str, since: float, count: int,
                         timeout: float = 60.0) -> float:
        """Wait until every series of selector has `count` samples scraped after `since`.

        The observable replacement for "sleep long enough for a few scrapes": return the
        time at which they were there.
        """
        def check():
            now = time.time()
            window = f"{max(1, int((now - since) * 1000))}ms"
            result = self.query(f"count_over_time({selector}[{window}])", now)
            got = [float(r["value"][1]) for r in result]
            return now if got and min(got) >= count else None
        return wait_until(check, timeout, message=f"{count} scrapes of {selector} after {since}")

    def wait_for_targets_up(self, jobs: Iterable[str] | None = None,
                            timeout: float = 30.0) -> list[dict]:
        """Wait until every target (or those of the given jobs) reports health 'up'."""
        wanted = set(jobs) if jobs is not None else None

        def check():
            active = self.api("targets")["activeTargets"]
            mine = [t for t in active if wanted is None or t["labels"]["job"] in wanted]
            if wanted is not None and {t["labels"]["job"] for t in mine} != wanted:
                return None
            return mine if mine and all(t["health"] == "up" for t in mine) else None
        return wait_until(check, timeout, message=f"targets up ({wanted or 'all'})")

    def alerts(self) -> list[dict]:
        """Alerts as Prometheus sees them (pending and firing)."""
        return self.api("alerts")["alerts"]

    def wait_for_alert(self, name: str, state: str = "firing",
                       labels: dict[str, str] | None = None, timeout: float = 60.0) -> dict:
        """Wait until an alert with this name (and labels) is in the given state."""
        def check():
            for alert in self.alerts():
                if (alert["labels"].get("alertname") == name and alert["state"] == state
                        and all(alert["labels"].get(k) == v for k, v in (labels or {}).items())):
                    return alert
            return None
        return wait_until(check, timeout, message=f"alert {name} {state}")

    def rule_groups(self) -> list[dict]:
        """The loaded rule groups (/api/v1/rules)."""
        return self.api("rules")["groups"]


class VictoriaServer(OwnedServer):
    """A real single-node VictoriaMetrics on a free port (the supervisor's command line)."""

    log_name = "victoria"

    def __init__(self, workdir: Path, retention: str = "2y", dedup: str = "1s"):
        super().__init__("victoria-metrics", workdir)
        self.storage = self.workdir / "data"
        self.retention = retention
        self.dedup = dedup

    def start(self, timeout: float = 30.0) -> VictoriaServer:
        """Start VictoriaMetrics and wait until /health answers."""
        argv = victoria_argv(self.storage, f"127.0.0.1:{self.port}", self.retention,
                             self.dedup, binary=self.binary)
        self.process = Process(argv, self.workdir / "victoria.log")
        self.process.wait_http(f"{self.url}/health", timeout)
        return self

    def query(self, expr: str, time_: float | None = None) -> list[dict]:
        """Instant query (caches off: tests read what they just wrote)."""
        params = {"query": expr, "nocache": "1"}
        if time_ is not None:
            params["time"] = str(time_)
        body = requests.get(f"{self.url}/api/v1/query", params=params, timeout=30).json()
        assert body["status"] == "success", body
        return body["data"]["result"]

    def names(self) -> list[str]:
        """Every metric name stored."""
        return requests.get(f"{self.url}/api/v1/label/__name__/values", timeout=30).json()["data"]


class AlertmanagerServer(OwnedServer):
    """A real Alertmanager on a free port with a given configuration.

    Clustering is off unless `gossip_port` is given; `peers` are the other peers'
    gossip addresses (alertmanager_cluster builds a whole cluster).
    """

    log_name = "alertmanager"

    def __init__(self, workdir: Path, config: dict | str, gossip_port: int | None = None,
                 peers: Iterable[str] = (), peer_timeout: str = "2s"):
        super().__init__("prometheus-alertmanager", workdir)
        self.config_path = self.workdir / "alertmanager.yml"
        self.gossip_port = gossip_port
        self.peers = list(peers)
        self.peer_timeout = peer_timeout
        self.write_config(config)

    def write_config(self, config: dict | str) -> None:
        """Write alertmanager.yml atomically."""
        text = config if isinstance(config, str) else yaml.safe_dump(config, sort_keys=False)
        write_atomic(self.config_path, text)

    def start(self, timeout: float = 30.0) -> AlertmanagerServer:
        """Start Alertmanager and wait until it is ready."""
        argv = alertmanager_argv(
            self.config_path, self.workdir / "data", f"127.0.0.1:{self.port}",
            binary=self.binary, external_url=f"http://127.0.0.1:{self.port}",
            gossip=None if self.gossip_port is None else f"127.0.0.1:{self.gossip_port}",
            peers=self.peers, peer_timeout=self.peer_timeout)
        return self._launch(argv, timeout, "/api/v2/status")

    def cluster_peers(self) -> int:
        """How many peers this Alertmanager sees in its cluster (itself included)."""
        status = requests.get(f"{self.url}/api/v2/status", timeout=5).json()
        return len((status.get("cluster") or {}).get("peers") or [])

    def reload(self, config: dict | str | None = None) -> None:
        """Optionally rewrite the config, then POST /-/reload and require success."""
        if config is not None:
            self.write_config(config)
        resp = requests.post(f"{self.url}/-/reload", timeout=10)
        assert resp.status_code == 200, f"reload failed: {resp.status_code} {resp.text}"

    def alerts(self, **filters) -> list[dict]:
        """GET /api/v2/alerts."""
        return requests.get(f"{self.url}/api/v2/alerts", params=filters, timeout=10).json()

    def post_alerts(self, alerts: list[dict]) -> None:
        """Push alerts straight to Alertmanager (as Prometheus would)."""
        resp = requests.post(f"{self.url}/api/v2/alerts", json=alerts, timeout=10)
        assert resp.status_code == 200, resp.text


def alertmanager_cluster(workdir: Path, config: dict | str, size: int = 3,
                         peer_timeout: str = "2s") -> list[AlertmanagerServer]:
    """`size` Alertmanagers gossiping on loopback (not started), each with its own storage."""
    gossip = [free_port() for _ in range(size)]
    return [AlertmanagerServer(Path(workdir) / f"am{i}", config, gossip[i],
                               [f"127.0.0.1:{g}" for j, g in enumerate(gossip) if j != i],
                               peer_timeout)
            for i in range(size)]


class LocalHTTPServer:
    """A threaded stdlib HTTP server on loopback, served from a background thread."""

    def __init__(self, handler: type, host: str = "127.0.0.1", port: int = 0):
        self.server = ThreadingHTTPServer((host, port), handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.address = f"{host}:{self.port}"
        self.url = f"http://{self.address}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def start(self):
        """Serve in a background thread; returns self."""
        self.thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket."""
        self.server.shutdown()
        self.server.server_close()


class WebhookSink(LocalHTTPServer):
    """A local HTTP server that records every request; it can be told to fail for a while."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0):
        self.requests: list[dict] = []
        self.fail_status: int | None = None
        self._lock = threading.Lock()
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def _handle(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                status = sink.fail_status or 200
                with sink._lock:
                    sink.requests.append({
                        "method": self.command, "path": self.path,
                        "headers": dict(self.headers), "body": body,
                        "status": status, "time": time.time(),
                    })
                self.send_response(status)
                if self.command == "GET" and self.path.startswith("/metrics"):
                    # A valid exposition, so the sink can double as a scrape target.
                    self.send_header("Content-Type", "text/plain; version=0.0.4")
                    self.end_headers()
                    self.wfile.write(f"sink_requests {len(sink.requests)}\n".encode())
                    return
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(b"{}")

            do_POST = do_PUT = do_GET = _handle

            def log_message(self, *args):
                pass

        super().__init__(Handler, host, port)

    def json_bodies(self, path_prefix: str = "", only_ok: bool = True) -> list[Any]:
        """Decoded JSON bodies of recorded requests (by default only those answered 2xx)."""
        with self._lock:
            reqs = list(self.requests)
        out = []
        for req in reqs:
            if req["path"].startswith(path_prefix) and (not only_ok or req["status"] < 300):
                try:
                    out.append(json.loads(req["body"] or b"null"))
                except ValueError:
                    continue
        return out

    def wait_for(self, predicate: Callable[[Any], bool], timeout: float = 30.0,
                 path_prefix: str = "") -> Any:
        """Wait until a recorded JSON body satisfies predicate; return it."""
        def check():
            return next((b for b in self.json_bodies(path_prefix) if predicate(b)), None)
        return wait_until(check, timeout, message="a matching webhook request")

    def clear(self) -> None:
        """Forget what was recorded."""
        with self._lock:
            self.requests.clear()


def alertmanager_webhook_config(url: str, group_wait: str = "1s") -> dict:
    """An Alertmanager config that sends every alert to one webhook, quickly."""
    return {
        "route": {"receiver": "sink", "group_by": ["alertname"], "group_wait": group_wait,
                  "group_interval": "1s", "repeat_interval": "1h"},
        "receivers": [{"name": "sink", "webhook_configs": [
            {"url": url, "send_resolved": True}]}],
    }


def pulse_env(data_dir: Path, **extra: str) -> dict[str, str]:
    """An environment for Pulse processes in tests: own data dir, generated secrets set."""
    env = dict(os.environ)
    env.update({
        "PULSE_DATA_DIR": str(data_dir),
        "PULSE_ADMIN_TOKEN": "test-admin-token-0123456789",
        "PULSE_PRIVACY_SALT": "test-salt-0123456789abcdef",
        "PYTHONUNBUFFERED": "1",
    })
    env.update(extra)
    return env


def step_up(bridge: str, token: str, reason: str = "test: a person's data") -> dict[str, str]:
    """Headers with a step-up token (personal_data scope) from the live bridge at host:port."""
    resp = requests.post(f"http://{bridge}/api/analytics/access/step-up", timeout=30,
                         json={"reason": reason}, headers={"Authorization": f"Bearer {token}"})
    assert resp.status_code == 201, resp.text
    return {"Authorization": f"Bearer {resp.json()['token']}"}


def write_pulse_config(path: Path, data_dir: Path, demo: bool = False,
                       **overrides: Any) -> dict:
    """A pulse.yml with every port free and short intervals; overrides merge per section."""
    cfg: dict = {
        "data_dir": str(data_dir),
        "log_level": "info",
        "prometheus": {"url": f"http://127.0.0.1:{free_port()}", "scrape_interval": "1s",
                       "evaluation_interval": "1s", "retention": "1d"},
        "alertmanager": {"url": f"http://127.0.0.1:{free_port()}"},
        "exporters": {name: {"listen": f"127.0.0.1:{free_port()}"}
                      for name in ("events", "infrastructure", "integrations", "ai")},
        "bridge": {"listen": f"127.0.0.1:{free_port()}",
                   "tokens": [{"name": "admin", "role": "admin",
                               "token": "${PULSE_ADMIN_TOKEN}"}]},
        "privacy": {"salt": "${PULSE_PRIVACY_SALT}"},
        "demo": {"listen": f"127.0.0.1:{free_port()}"},
    }
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(cfg.get(key), dict):
            cfg[key] = _merge(cfg[key], value)
        else:
            cfg[key] = value
    Path(path).write_text(yaml.safe_dump(cfg, sort_keys=False))
    return cfg


def _merge(base: dict, extra: dict) -> dict:
    out = dict(base)
    for k, v in extra.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def start_service(module: str, config_path: Path, env: dict[str, str], listen: str,
                  log_path: Path, timeout: float = 30.0, args: Iterable[str] = ()) -> Process:
    """Start `python -m module --config ...` and wait until its /-/ready answers."""
    proc = Process(service_argv(module, config_path, tuple(args)), log_path, env=env, cwd=ROOT)
    proc.wait_http(f"http://{listen}/-/ready", timeout)
    return proc


SCHEMATHESIS_CHECKS = ("not_a_server_error,status_code_conformance,content_type_conformance,"
                       "response_schema_conformance")


def run_schemathesis(url: str, workdir: Path, authorization: str, *, max_examples: int,
                     phases: str, timeout: float = 400) -> None:
    """schemathesis against a live OpenAPI document: no 5xx, every answer as documented.

    The whole report is written to workdir/schemathesis.txt; a failure shows its tail."""
    argv = [sys.executable, "-m", "schemathesis.cli", "run", url,
            "-H", f"Authorization: {authorization}", "--checks", SCHEMATHESIS_CHECKS,
            "--max-examples", str(max_examples), "--request-timeout", "30", "--workers", "1",
            "--phases", phases, "--seed", "1", "--no-color"]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, cwd=workdir)
    out = proc.stdout + proc.stderr
    report = workdir / "schemathesis.txt"
    report.write_text(out)
    assert proc.returncode == 0, f"full report: {report}\n" + out[-6000:]


class NatsCluster:
    """Real nats-server nodes with JetStream (one, or a cluster of several) on free ports."""

    def __init__(self, workdir: Path, nodes: int = 1):
        from pulse.launcher.render import nats_nodes

        require_binary("nats-server")
        self.workdir = Path(workdir)
        ports = []
        while len(ports) < nodes:
            # Route and monitor ports are derived (+2000, +4000): all three must be free.
            port = free_port()
            if port + 4000 < 65536 and all(_port_free(port + d) for d in (2000, 4000)):
                ports.append(port)
        self.servers = [f"nats://127.0.0.1:{p}" for p in ports]
        self.nodes = nats_nodes(self.servers)
        self.procs: dict[int, Process] = {}

    def start(self, timeout: float = 60.0) -> NatsCluster:
        """Start every node, then wait for each one's JetStream health (a quorum forms)."""
        for node in self.nodes:
            self.start_node(node.index, wait=False)
        for node in self.nodes:
            self.wait_node(node.index, timeout)
        return self

    def start_node(self, index: int, wait: bool = True, timeout: float = 60.0) -> None:
        """Start (or restart, same store) one node."""
        from pulse.launcher.render import nats_config
        from pulse.launcher.supervisor import nats_argv

        node = self.nodes[index]
        conf = self.workdir / f"{node.name}.conf"
        write_atomic(conf, nats_config(self.nodes, index, self.workdir / node.name))
        self.procs[index] = Process(nats_argv(conf), self.workdir / f"{node.name}.log")
        if wait:
            self.wait_node(index, timeout)

    def wait_node(self, index: int, timeout: float = 60.0) -> None:
        """Wait until the node reports JetStream healthy."""
        self.procs[index].wait_http(self.nodes[index].ready_url, timeout)

    def kill(self, index: int) -> None:
        """SIGKILL one node."""
        self.procs[index].kill()

    def stop(self) -> None:
        """Stop every node."""
        for proc in self.procs.values():
            proc.stop()


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True
