"""`pulse up`: render configs, start every component as a child, wait, supervise, stop."""

from __future__ import annotations

import ctypes
import errno
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from pulse.config import Config, split_listen
from pulse.fileio import write_atomic
from pulse.launcher.demotime import time_scale, write_rules
from pulse.launcher.render import (
    Peer,
    alertmanager_config,
    alertmanager_peers,
    dump,
    prometheus_config,
    rendered_rules_dir,
    targets,
)
from pulse.launcher.scrape import write_secrets as write_scrape_secrets
from pulse.links import fill, links
from pulse.paths import ROOT, bridge_rules_dir
from pulse.promapi import is_ready

log = logging.getLogger("pulse.supervisor")

READY_TIMEOUT = 60.0
STOP_TIMEOUT = 10.0
PR_SET_PDEATHSIG = 1


class StackError(Exception):
    """The stack could not be started; the message says which part and why."""


@dataclass
class Component:
    """A child process of the stack: how to start it and how to know it is ready."""

    name: str
    argv: list[str]
    ready_url: str | None
    log_path: Path
    host: str | None = None
    port: int | None = None
    config_key: str | None = None
    proc: subprocess.Popen | None = field(default=None, repr=False)
    restarts: int = 0

    @property
    def url(self) -> str | None:
        return f"http://{self.host}:{self.port}" if self.port else None


def _die_with_parent() -> None:
    """In the child: get SIGTERM if the supervisor dies, so no process is left behind."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except OSError:
        pass


def port_in_use(host: str, port: int) -> bool:
    """True when something already listens on host:port (or it cannot be bound)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            return exc.errno in (errno.EADDRINUSE, errno.EACCES)
    return False


def prometheus_argv(config_file: str | Path, storage: str | Path, listen: str, *,
                    resend_delay: str, retention: str | None = None,
                    retention_size: str | None = None, external_url: str | None = None,
                    binary: str = "prometheus") -> list[str]:
    """The command line of a Prometheus with lifecycle API (reload) on listen (host:port)."""
    argv = [binary, f"--config.file={config_file}", f"--storage.tsdb.path={storage}"]
    if retention:
        argv.append(f"--storage.tsdb.retention.time={retention}")
    if retention_size:
        argv.append(f"--storage.tsdb.retention.size={retention_size}")
    if external_url:
        # generatorURL of every alert and Prometheus's own links are built on it.
        argv.append(f"--web.external-url={external_url}")
    return argv + [f"--web.listen-address={listen}", "--web.enable-lifecycle",
                   f"--rules.alert.resend-delay={resend_delay}"]


def alertmanager_argv(config_file: str | Path, storage: str | Path, listen: str,
                      binary: str = "prometheus-alertmanager", *,
                      external_url: str | None = None, gossip: str | None = None,
                      peers: Iterable[str] = (), peer_timeout: str = "2s") -> list[str]:
    """The command line of an Alertmanager on listen (host:port): alone (gossip None:
    clustering off) or a cluster peer gossiping on `gossip` with `peers` (host:port)."""
    argv = [binary, f"--config.file={config_file}", f"--storage.path={storage}",
            f"--web.listen-address={listen}"]
    if external_url:
        argv.append(f"--web.external-url={external_url}")
    if gossip is None:
        return argv + ["--cluster.listen-address="]
    # Notifications wait for the cluster to settle: seconds, not the 1 m default.
    return argv + [f"--cluster.listen-address={gossip}", "--cluster.settle-timeout=5s",
                   f"--cluster.peer-timeout={peer_timeout}",
                   *(f"--cluster.peer={p}" for p in peers)]


def peer_argv(cfg: Config, peer: Peer, config_file: str | Path, storage: str | Path,
              listen_host: str | None = None, peer_hosts: list[str] | None = None,
              binary: str = "prometheus-alertmanager") -> list[str]:
    """One peer of alertmanager.replicas: alone when there is one, else gossiping with all.

    listen_host / peer_hosts: what the peer binds and how it reaches the others
    (compose: 0.0.0.0 and service names); natively the configured host.
    """
    peers = alertmanager_peers(cfg)
    host = listen_host or peer.host
    external = cfg.alertmanager.get("external_url") or f"http://{peer.host}:{peer.port}"
    others = [f"{peer_hosts[o.index] if peer_hosts else o.host}:{o.gossip_port}"
              for o in peers if o.index != peer.index]
    return alertmanager_argv(
        config_file, storage, f"{host}:{peer.port}", binary, external_url=external,
        gossip=f"{host}:{peer.gossip_port}" if len(peers) > 1 else None, peers=others,
        peer_timeout=cfg.alertmanager.get("peer_timeout", "2s"))


def service_argv(module: str, config_path: str | Path | None = None,
                 args: list[str] | tuple[str, ...] = ()) -> list[str]:
    """The command line of a Pulse process: `python -m module [--config path] args...`."""
    config = ["--config", str(config_path)] if config_path else []
    return [sys.executable, "-m", module, *config, *args]


def render_configs(cfg: Config, demo: bool) -> dict[str, Path]:
    """Write prometheus.yml, alertmanager.yml and the rules (links filled in) into the data
    dir; return their paths."""
    data = Path(cfg.data_dir)
    bridge_rules_dir(data).mkdir(parents=True, exist_ok=True)
    prom = data / "prometheus" / "prometheus.yml"
    am = data / "alertmanager" / "alertmanager.yml"
    scale = time_scale(cfg.demo.day_length) if demo else 1.0
    bases = links(cfg)
    rules = write_rules(rendered_rules_dir(data, demo), scale,
                        fill=lambda text: fill(text, bases))
    write_scrape_secrets(cfg)
    replicas = cfg.prometheus.get("replicas", 1)
    write_atomic(prom, dump(prometheus_config(cfg, demo=demo,
                                              replica=0 if replicas > 1 else None)))
    for i in range(1, replicas):
        write_atomic(data / f"prometheus-{i}" / "prometheus.yml",
                     dump(prometheus_config(cfg, demo=demo, replica=i)))
    # 0600: it may carry the bridge's webhook token.
    write_atomic(am, dump(alertmanager_config(cfg, demo=demo)), mode=0o600)
    return {"prometheus": prom, "alertmanager": am, "rules": rules}


def _prometheus_argv(cfg: Config, home: Path, address: str) -> list[str]:
    return prometheus_argv(home / "prometheus.yml", home / "tsdb", address,
                           retention=cfg.prometheus.retention,
                           retention_size=cfg.prometheus.get("retention_size"),
                           external_url=links(cfg).prometheus,
                           resend_delay=cfg.prometheus.resend_delay)


def plan(cfg: Config, demo: bool = False, config_path: str | None = None) -> list[Component]:
    """Every component of the stack, in start order."""
    data = Path(cfg.data_dir)
    logs = data / "logs"
    comps = []
    replicas: list[Component] = []
    peers = iter(alertmanager_peers(cfg))
    for t in targets(cfg, demo):
        name = t.job
        if t.job == "prometheus":
            if not cfg.prometheus.manage:
                continue
            # prometheus.replicas: the HA pair on url's port and the ports after it, each with
            # its own storage, all reading the bridge's one rule directory.
            for i in range(1, cfg.prometheus.get("replicas", 1)):
                replica, address = f"prometheus-{i}", f"{t.host}:{t.port + i}"
                replicas.append(Component(replica, _prometheus_argv(cfg, data / replica,
                                                                    address),
                                          f"http://{address}/-/ready",
                                          logs / f"{replica}.log", t.host, t.port + i,
                                          "prometheus.replicas"))
            argv = _prometheus_argv(cfg, data / "prometheus", t.address)
        elif t.job == "alertmanager":
            if not cfg.alertmanager.manage:
                continue
            peer = next(peers)
            name = peer.name
            # Each peer keeps its own notification log and silences (the first keeps
            # the single Alertmanager's directory).
            storage = data / "alertmanager" / ("data" if peer.index == 0
                                               else f"data-{peer.index + 1}")
            argv = peer_argv(cfg, peer, data / "alertmanager" / "alertmanager.yml", storage)
        else:
            module = {"bridge": "bridge", "demo": "demo.app"}.get(t.job, f"exporters.{t.job}")
            argv = service_argv(module, config_path)
        comps.append(Component(name, argv, f"http://{t.address}/-/ready",
                               logs / f"{name}.log", t.host, t.port, t.config_key))
        comps.extend(replicas)
        replicas = []
    if demo:
        # What the stack talks to (payment provider, demo channel) starts first, so no
        # probe or delivery fails while it comes up; the traffic simulator starts last.
        extras = demo_extras(cfg, config_path, logs)
        first = [c for c in extras if c.name != "simulator"]
        comps = first + comps + [c for c in extras if c.name == "simulator"]
    return comps


def demo_extras(cfg: Config, config_path: str | None, logs: Path) -> list[Component]:
    """Processes that exist only with --demo and have no scrape job.

    The fake payment provider (probed by exporters.integrations at /health), the
    demo notification sink (channel `demo`; it prints each page on this
    supervisor's terminal, which its own log capture would otherwise hide) and
    the traffic simulator, started last so everything it talks to is up.
    """
    extras = []
    demo_dir = ROOT / "demo"
    if (demo_dir / "payments.py").exists():
        host, port = split_listen(cfg.demo.payments_listen)
        extras.append(Component("payments", service_argv("demo.payments", config_path),
                                f"http://{host}:{port}/-/ready", logs / "payments.log",
                                host, port, "demo.payments_listen"))
    if (demo_dir / "sink.py").exists():
        host, port = split_listen(cfg.demo.sink_listen)
        console = f"/proc/{os.getpid()}/fd/1"
        extras.append(Component("demo-sink",
                                service_argv("demo.sink", config_path, ["--console", console]),
                                f"http://{host}:{port}/-/ready", logs / "demo-sink.log",
                                host, port, "demo.sink_listen"))
    if (demo_dir / "simulate.py").exists():
        extras.append(Component("simulator", service_argv("demo.simulate", config_path), None,
                                logs / "simulator.log"))
    return extras


def check_ports(comps: list[Component]) -> None:
    """Fail with the port and its config key when any port is taken."""
    busy = [c for c in comps if c.port and port_in_use(c.host or "127.0.0.1", c.port)]
    if busy:
        lines = [f"port {c.port} on {c.host} is already in use (needed by {c.name}; "
                 f"set by {c.config_key} in pulse.yml)" for c in busy]
        raise StackError("\n".join(lines))


def check_binaries(comps: list[Component]) -> None:
    """Fail with the install command when Prometheus or Alertmanager is missing."""
    import shutil

    missing = [c.argv[0] for c in comps if not os.path.isabs(c.argv[0])
               and shutil.which(c.argv[0]) is None]
    if missing:
        raise StackError(
            f"{', '.join(missing)} not found on PATH. Install with: apt-get install -y "
            "--no-install-recommends prometheus prometheus-alertmanager (or run `make run`)")


class Supervisor:
    """Starts the components, waits until each is ready, restarts crashed ones, stops all."""

    def __init__(self, cfg: Config, comps: list[Component], env: dict[str, str] | None = None):
        self.cfg = cfg
        self.comps = comps
        self.env = dict(os.environ if env is None else env)
        self.stopping = False

    def start(self, comp: Component) -> None:
        """Start one component with its output appended to its log."""
        comp.log_path.parent.mkdir(parents=True, exist_ok=True)
        logf = open(comp.log_path, "ab")
        logf.write(f"--- pulse: starting {comp.name}: {' '.join(comp.argv)}\n".encode())
        logf.flush()
        comp.proc = subprocess.Popen(
            comp.argv, stdout=logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env=self.env, start_new_session=True, preexec_fn=_die_with_parent)
        logf.close()

    def wait_ready(self, comp: Component, deadline: float) -> None:
        """Poll the component's ready URL; fail naming it and its log if it exits or times out."""
        if comp.ready_url is None:
            time.sleep(0.2)
            if comp.proc.poll() is not None:
                raise StackError(self._failed(comp, f"exited with code {comp.proc.returncode}"))
            return
        while time.monotonic() < deadline:
            if comp.proc.poll() is not None:
                raise StackError(self._failed(comp, f"exited with code {comp.proc.returncode}"))
            if is_ready(comp.ready_url, timeout=1):
                return
            time.sleep(0.1)
        raise StackError(self._failed(comp, f"not ready at {comp.ready_url} in time"))

    def _failed(self, comp: Component, why: str) -> str:
        tail = ""
        try:
            lines = comp.log_path.read_text(errors="replace").splitlines()[-15:]
            tail = "\n".join("    " + line for line in lines)
        except OSError:
            pass
        return f"{comp.name} did not start: {why}. Log: {comp.log_path}\n{tail}"

    def up(self, out=None) -> None:
        """Start every component in order, each ready (or given up on) before the next.

        Each is reported on out as it becomes ready; one that does not come up does not
        stop the others from starting, so the end says everything that is not ready, each
        with its log, in one StackError.
        """
        failed = []
        for comp in self.comps:
            if self.stopping:
                return
            self.start(comp)
            try:
                self.wait_ready(comp, time.monotonic() + READY_TIMEOUT)
            except StackError as exc:
                failed.append((comp, str(exc)))
                if out is not None:
                    print(f"  {'NOT READY':<9} {comp.name:<15} log: {comp.log_path}",
                          file=out, flush=True)
                continue
            where = comp.url or f"pid {comp.proc.pid}"
            if out is not None:
                print(f"  {'ready':<9} {comp.name:<15} {where}", file=out, flush=True)
            log.info("%s ready (pid %d)", comp.name, comp.proc.pid)
        if failed:
            names = ", ".join(c.name for c, _ in failed)
            raise StackError(f"not ready: {names}\n" + "\n".join(why for _, why in failed))

    def supervise(self) -> None:
        """Until asked to stop: restart a component that died (with a growing delay)."""
        while not self.stopping:
            for comp in self.comps:
                if self.stopping or comp.proc is None or comp.proc.poll() is None:
                    continue
                comp.restarts += 1
                delay = min(30, 2 ** min(comp.restarts, 5))
                log.warning("%s exited with code %s; restarting in %ds (log: %s)", comp.name,
                            comp.proc.returncode, delay, comp.log_path)
                self._sleep(delay)
                if not self.stopping:
                    self.start(comp)
            self._sleep(0.5)

    def _sleep(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while not self.stopping and time.monotonic() < end:
            time.sleep(0.1)

    def down(self) -> None:
        """Stop every child, newest first: SIGTERM, then SIGKILL after a grace period."""
        self.stopping = True
        for comp in reversed(self.comps):
            proc = comp.proc
            if proc is None or proc.poll() is not None:
                continue
            try:
                os.killpg(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                continue
        for comp in reversed(self.comps):
            proc = comp.proc
            if proc is None:
                continue
            try:
                proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                log.warning("%s ignored SIGTERM; killing it", comp.name)
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                proc.wait()


def pid_file(cfg: Config) -> Path:
    """Where a running stack records the supervisor's pid and its components."""
    return Path(cfg.data_dir) / "pulse.pid"


def write_state(cfg: Config, comps: list[Component]) -> None:
    """Record the supervisor pid and each child's pid and URL (for status and down)."""
    state = {
        "pid": os.getpid(),
        "started": time.time(),
        "components": {c.name: {"pid": c.proc.pid if c.proc else None, "url": c.url}
                       for c in comps},
    }
    write_atomic(pid_file(cfg), json.dumps(state, indent=2))


def read_state(cfg: Config) -> dict | None:
    """The running stack's state, or None when no live supervisor owns the data dir."""
    path = pid_file(cfg)
    try:
        state = json.loads(path.read_text())
        os.kill(state["pid"], 0)
    except (OSError, ValueError, KeyError):
        return None
    return state


def run_up(cfg: Config, demo: bool, config_path: str | None, out=sys.stdout) -> int:
    """The foreground `pulse up`: returns the exit code."""
    existing = read_state(cfg)
    if existing:
        raise StackError(f"a Pulse stack (pid {existing['pid']}) already runs with data dir "
                         f"{cfg.data_dir}; stop it with `pulse down`")
    comps = plan(cfg, demo, config_path)
    check_binaries(comps)
    check_ports(comps)
    render_configs(cfg, demo)
    sup = Supervisor(cfg, comps)

    def on_signal(signum, frame):
        sup.stopping = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    print(f"pulse: starting {len(comps)} components (logs in {Path(cfg.data_dir) / 'logs'})",
          file=out, flush=True)
    try:
        sup.up(out)
        if sup.stopping:
            return 0
        write_state(cfg, comps)
        print_banner(cfg, comps, out)
        sup.supervise()
        return 0
    finally:
        sup.down()
        try:
            state = json.loads(pid_file(cfg).read_text())
            if state.get("pid") == os.getpid():
                pid_file(cfg).unlink()
        except (OSError, ValueError):
            pass
        print("pulse: every component stopped", file=out, flush=True)


def print_banner(cfg: Config, comps: list[Component], out) -> None:
    """The URLs of the running stack and the admin token."""
    lines = ["", "Pulse is up:"]
    for c in comps:
        if c.url:
            lines.append(f"  {c.name:<15} {c.url}")
    lines.append(f"  {'api docs':<15} http://{cfg.bridge.listen}/api/openapi.json")
    lines.append(f"  data dir        {cfg.data_dir} (logs in {Path(cfg.data_dir) / 'logs'})")
    token = os.environ.get("PULSE_ADMIN_TOKEN")
    if token:
        lines.append(f"  admin token     {token}")
    lines.append("Press Ctrl-C to stop every component.")
    print("\n".join(lines), file=out, flush=True)


def status(cfg: Config, demo: bool = False) -> list[tuple[str, str, str]]:
    """(component, url, state) for every component of the configured stack."""
    rows = []
    state = read_state(cfg)
    demo = demo or bool(state and "demo" in state.get("components", {}))
    for comp in plan(cfg, demo):
        if comp.ready_url is None:
            pid = (state or {}).get("components", {}).get(comp.name, {}).get("pid")
            alive = bool(pid) and _alive(pid)
            rows.append((comp.name, "-", "running" if alive else "down"))
            continue
        ok = is_ready(comp.ready_url, timeout=2)
        rows.append((comp.name, comp.url or "-", "up" if ok else "down"))
    return rows


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    return True


def stop_detached(cfg: Config, timeout: float = 30.0) -> bool:
    """SIGTERM the supervisor of a running stack and wait for it; False when none runs."""
    state = read_state(cfg)
    if not state:
        return False
    os.kill(state["pid"], signal.SIGTERM)
    end = time.monotonic() + timeout
    while time.monotonic() < end and _alive(state["pid"]):
        time.sleep(0.1)
    if _alive(state["pid"]):
        os.kill(state["pid"], signal.SIGKILL)
    return True

