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
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from pulse.config import Config, parse_duration, split_listen, url_host_port
from pulse.fileio import write_atomic
from pulse.launcher.render import (
    alertmanager_config,
    demo_rules_dir,
    dump,
    long_term_tiers,
    prometheus_config,
    targets,
)
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
    storage: bool = False
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
                    binary: str = "prometheus") -> list[str]:
    """The command line of a Prometheus with lifecycle API (reload) on listen (host:port)."""
    argv = [binary, f"--config.file={config_file}", f"--storage.tsdb.path={storage}"]
    if retention:
        argv.append(f"--storage.tsdb.retention.time={retention}")
    # The admin API is for `pulse backup` (TSDB snapshots); it is unauthenticated, which
    # is why Prometheus listens on loopback only. A short flush deadline: at shutdown
    # Prometheus retries each unreachable remote_write queue for that long, one by one.
    return argv + [f"--web.listen-address={listen}", "--web.enable-lifecycle",
                   "--web.enable-admin-api", "--storage.remote.flush-deadline=5s",
                   f"--rules.alert.resend-delay={resend_delay}"]


def victoria_argv(storage: str | Path, listen: str, retention: str, dedup: str,
                  binary: str = "victoria-metrics") -> list[str]:
    """The command line of a single-node VictoriaMetrics tier on listen (host:port).

    -httpListenAddr is always given: its default (:8428) listens on every interface.
    dedup (-dedup.minScrapeInterval) merges the HA pair's copies of a sample.
    """
    return [binary, f"-storageDataPath={storage}", f"-httpListenAddr={listen}",
            f"-retentionPeriod={retention}", f"-dedup.minScrapeInterval={dedup}",
            "-loggerLevel=WARN"]


def alertmanager_argv(config_file: str | Path, storage: str | Path, listen: str,
                      binary: str = "prometheus-alertmanager") -> list[str]:
    """The command line of a single Alertmanager (clustering off) on listen (host:port)."""
    return [binary, f"--config.file={config_file}", f"--storage.path={storage}",
            f"--web.listen-address={listen}", "--cluster.listen-address="]


def service_argv(module: str, config_path: str | Path | None = None,
                 args: list[str] | tuple[str, ...] = ()) -> list[str]:
    """The command line of a Pulse process: `python -m module [--config path] args...`."""
    config = ["--config", str(config_path)] if config_path else []
    return [sys.executable, "-m", module, *config, *args]


def render_configs(cfg: Config, demo: bool) -> dict[str, Path]:
    """Write prometheus.yml and alertmanager.yml into the data dir; return their paths."""
    data = Path(cfg.data_dir)
    bridge_rules_dir(data).mkdir(parents=True, exist_ok=True)
    am = data / "alertmanager" / "alertmanager.yml"
    if demo:
        from pulse.launcher.demotime import time_scale, write_rules

        write_rules(demo_rules_dir(data), time_scale(cfg.demo.day_length))
    written = {}
    for i in range(cfg.prometheus.replicas):
        path = prometheus_paths(cfg, i)[0]
        write_atomic(path, dump(prometheus_config(cfg, demo=demo, replica=i)))
        written["prometheus" if i == 0 else f"prometheus-{i}"] = path
    # 0600: it may carry the bridge's webhook token.
    write_atomic(am, dump(alertmanager_config(cfg, demo=demo)), mode=0o600)
    return {**written, "alertmanager": am}


def prometheus_paths(cfg: Config, replica: int) -> tuple[Path, Path]:
    """(prometheus.yml, TSDB dir) of a replica; replica 0 keeps the single server's paths."""
    base = Path(cfg.data_dir) / "prometheus"
    if replica == 0:
        return base / "prometheus.yml", base / "tsdb"
    return base / f"prometheus-{replica}.yml", base / f"tsdb-{replica}"


def tier_storage(cfg: Config, tier) -> Path:
    """Where a managed long-term tier keeps its data."""
    return Path(cfg.data_dir) / "victoria" / tier.name


def tier_components(cfg: Config, logs: Path) -> list[Component]:
    """A VictoriaMetrics child per managed tier (they start first and stop last)."""
    comps = []
    for tier in long_term_tiers(cfg):
        if not tier.manage:
            continue
        host, port = url_host_port(tier.url)
        argv = victoria_argv(tier_storage(cfg, tier), f"{host}:{port}", tier.retention,
                             tier.get("resolution") or cfg.prometheus.scrape_interval)
        comps.append(Component(f"victoria-{tier.name}", argv, f"http://{host}:{port}/health",
                               logs / f"victoria-{tier.name}.log", host, port,
                               "long_term.tiers[].url", storage=True))
    return comps


def plan(cfg: Config, demo: bool = False, config_path: str | None = None) -> list[Component]:
    """Every component of the stack, in start order."""
    data = Path(cfg.data_dir)
    logs = data / "logs"
    comps = tier_components(cfg, logs)
    replica = 0
    for t in targets(cfg, demo):
        name = t.job
        if t.job == "prometheus":
            if not cfg.prometheus.manage:
                continue
            config_file, tsdb = prometheus_paths(cfg, replica)
            name = "prometheus" if replica == 0 else f"prometheus-{replica}"
            replica += 1
            argv = prometheus_argv(config_file, tsdb, t.address,
                                   retention=cfg.prometheus.retention,
                                   resend_delay=cfg.prometheus.resend_delay)
        elif t.job == "alertmanager":
            if not cfg.alertmanager.manage:
                continue
            argv = alertmanager_argv(data / "alertmanager" / "alertmanager.yml",
                                     data / "alertmanager" / "data", t.address)
        else:
            module = {"bridge": "bridge", "demo": "demo.app"}.get(t.job, f"exporters.{t.job}")
            argv = service_argv(module, config_path)
        comps.append(Component(name, argv, f"http://{t.address}/-/ready",
                               logs / f"{name}.log", t.host, t.port, t.config_key))
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
            "--no-install-recommends prometheus prometheus-alertmanager victoria-metrics "
            "(or run `make run`)")


class Supervisor:
    """Starts the components, waits until each is ready, restarts crashed ones, stops all."""

    def __init__(self, cfg: Config, comps: list[Component], env: dict[str, str] | None = None,
                 config_path: str | None = None):
        self.cfg = cfg
        self.comps = comps
        self.env = dict(os.environ if env is None else env)
        self.stopping = False
        self.config_path = config_path
        schedule = cfg.get("backup", {}).get("schedule")
        self.backup_every = parse_duration(schedule) if schedule and config_path else None
        self.next_backup = time.monotonic() + (self.backup_every or 0)
        self._backup_thread: threading.Thread | None = None

    def _maybe_backup(self) -> None:
        """backup.schedule: one backup per period, in a thread (supervision goes on)."""
        if self.backup_every is None or time.monotonic() < self.next_backup:
            return
        if self._backup_thread and self._backup_thread.is_alive():
            return
        self.next_backup = time.monotonic() + self.backup_every

        def run():
            from pulse.launcher.backup import BackupError, take_scheduled

            try:
                log.info("scheduled backup written to %s",
                         take_scheduled(self.cfg, Path(self.config_path)))
            except (BackupError, OSError) as exc:
                log.error("scheduled backup failed: %s", exc)

        self._backup_thread = threading.Thread(target=run, name="backup", daemon=True)
        self._backup_thread.start()

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

    def up(self) -> None:
        """Start every component in order, each ready before the next."""
        deadline = time.monotonic() + READY_TIMEOUT
        for comp in self.comps:
            if self.stopping:
                return
            self.start(comp)
            self.wait_ready(comp, deadline)
            log.info("%s ready (pid %d)", comp.name, comp.proc.pid)

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
            self._maybe_backup()
            self._sleep(0.5)

    def _sleep(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while not self.stopping and time.monotonic() < end:
            time.sleep(0.1)

    def down(self) -> None:
        """Stop every child, newest first: SIGTERM, then SIGKILL after a grace period.

        The long-term tiers stop only after everything else has: Prometheus flushes its
        remote_write queues at shutdown and would wait on a tier that is already gone.
        """
        self.stopping = True
        self._stop([c for c in self.comps if not c.storage])
        self._stop([c for c in self.comps if c.storage])

    def _stop(self, comps: list[Component]) -> None:
        for comp in reversed(comps):
            proc = comp.proc
            if proc is None or proc.poll() is not None:
                continue
            try:
                os.killpg(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                continue
        for comp in reversed(comps):
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
    sup = Supervisor(cfg, comps, config_path=config_path)

    def on_signal(signum, frame):
        sup.stopping = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        sup.up()
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

