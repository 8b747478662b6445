"""The `pulse` command: up, down, status, check-config, render, backup, restore, dashboards."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import yaml

from pulse.config import Config, ConfigError, expand_env, load_config
from pulse.launcher.render import long_term_tiers
from pulse.launcher.secrets import ensure_generated
from pulse.log import register_secrets, setup
from pulse.paths import DEFAULT_CONFIG
from pulse.service import config_secrets, load_or_exit


def _config_path(arg: str | None) -> Path:
    return Path(arg or os.environ.get("PULSE_CONFIG") or DEFAULT_CONFIG)


def _data_dir_hint(path: Path) -> Path:
    """The data dir a config names, read before full validation (for generated secrets)."""
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError):
        raw = {}
    value = raw.get("data_dir", ".pulse") if isinstance(raw, dict) else ".pulse"
    value = expand_env(value, os.environ, "", []) if isinstance(value, str) else ".pulse"
    return Path(os.environ.get("PULSE_DATA_DIR") or value or ".pulse").resolve()


def _load(path: Path) -> Config:
    """The configuration at path, its generated secrets set; or print the problems, exit 2."""
    ensure_generated(_data_dir_hint(path))
    return load_or_exit(path)


def cmd_check_config(args) -> int:
    """Validate a configuration file; print every problem and exit 1, or say it is valid."""
    path = _config_path(args.file)
    env = dict(os.environ)
    for name in ("PULSE_ADMIN_TOKEN", "PULSE_PRIVACY_SALT"):
        # Generated at `pulse up` when unset, so their absence is not a problem here.
        env.setdefault(name, "x" * 32)
    try:
        cfg = load_config(path, env=env)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 1
    if args.needs_victoria:
        # For `make run`: exit 0 when the config runs VictoriaMetrics tiers itself.
        return 0 if any(t.manage for t in long_term_tiers(cfg)) else 1
    problems = _check_referenced_files(cfg) + _check_channels(cfg)
    if problems:
        print(f"{path}: {len(problems)} problem(s)\n" + "\n".join(problems), file=sys.stderr)
        return 1
    print(f"{path}: valid")
    return 0


def _check_referenced_files(cfg) -> list[str]:
    """Files the configuration points at (the events mapping, scrape TLS files and file_sd
    directories) and scrape job names are checked like the config."""
    from exporters.events.mapping import MappingError, load_mapping

    found = _scrape_problems(cfg)
    events = cfg.exporters.events
    if not events.enabled:
        return found
    try:
        load_mapping(events.get("mapping") or None, cfg.privacy.pii_patterns.values())
    except MappingError as exc:
        found.append(f"  exporters.events.mapping: {exc}")
    return found


def _scrape_problems(cfg) -> list[str]:
    from pulse.launcher.scrape import problems

    return [f"  {path}: {message}" for path, message in problems(cfg)]


def _refuse_bad_scrape(cfg, command: str) -> bool:
    """Print the scrape problems of cfg (before any Prometheus sees them); True if any."""
    found = _scrape_problems(cfg)
    if found:
        print(f"pulse {command}: {len(found)} problem(s) in prometheus.scrape\n"
              + "\n".join(found), file=sys.stderr)
    return bool(found)


def _check_channels(cfg) -> list[str]:
    """Every channel entry is usable (apprise understands the URL, an incident tool has its
    key) and the page templates render; names the entry, never its URL or key."""
    from bridge.services.notifier import valid_url
    from bridge.services.templates import Renderer
    from pulse.links import links

    problems = []
    for name, entries in cfg.bridge.channels.items():
        for i, entry in enumerate(entries):
            where = f"bridge.channels.{name}[{i}]"
            if isinstance(entry, str):
                if not valid_url(entry):
                    problems.append(f"{where}: apprise does not understand this URL")
            elif "pagerduty" in entry and len(entry.pagerduty.routing_key) != 32:
                problems.append(f"{where}.pagerduty.routing_key: a PagerDuty Events API v2 "
                                f"routing key has 32 characters, this one has "
                                f"{len(entry.pagerduty.routing_key)}")
    problem = Renderer(links(cfg).alertmanager).check()
    if problem:
        problems.append(f"alertmanager/templates: the page templates do not render: {problem}")
    return problems


def cmd_up(args) -> int:
    """Start the whole stack (foreground, or --detach)."""
    from pulse.launcher.supervisor import StackError, run_up

    path = _config_path(args.config)
    cfg = _load(path)
    setup("pulse", cfg.log_level)
    register_secrets([os.environ.get("PULSE_ADMIN_TOKEN"), os.environ.get("PULSE_PRIVACY_SALT"),
                      *config_secrets(cfg)])
    if _refuse_bad_scrape(cfg, "up"):
        return 2
    if args.detach:
        return _up_detached(cfg, args, path)
    if args.demo:
        # The demo runs on its overlay of the configuration (pulse.launcher.demotime).
        from pulse.launcher.demotime import write_config

        path = write_config(path, Path(cfg.data_dir) / "demo" / "pulse.yml")
        cfg = load_or_exit(path)
    try:
        return run_up(cfg, args.demo, str(path.resolve()))
    except StackError as exc:
        print(f"pulse up: {exc}", file=sys.stderr)
        return 1


def _up_detached(cfg, args, path: Path) -> int:
    from pulse.launcher.supervisor import read_state

    logs = Path(cfg.data_dir) / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    log_path = logs / "pulse.log"
    argv = [sys.executable, "-m", "pulse", "up", "--config", str(path.resolve())]
    if args.demo:
        argv.append("--demo")
    with open(log_path, "ab") as logf:
        proc = subprocess.Popen(argv, stdout=logf, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        state = read_state(cfg)
        if state and state["pid"] == proc.pid:
            print(f"pulse: stack started in the background (pid {proc.pid}); "
                  f"log {log_path}; stop it with `pulse down`")
            print(f"admin token: {os.environ.get('PULSE_ADMIN_TOKEN', '')}")
            return 0
        if proc.poll() is not None:
            print(f"pulse up --detach: the stack exited with code {proc.returncode}; "
                  f"see {log_path}", file=sys.stderr)
            print(log_path.read_text(errors="replace")[-3000:], file=sys.stderr)
            return 1
        time.sleep(0.2)
    print(f"pulse up --detach: not ready after 90 s; see {log_path}", file=sys.stderr)
    return 1


def cmd_down(args) -> int:
    """Stop a stack started with `pulse up --detach`."""
    from pulse.launcher.supervisor import stop_detached

    cfg = _load(_config_path(args.config))
    if stop_detached(cfg):
        print("pulse: stack stopped")
        return 0
    print("pulse: no running stack for this data dir", file=sys.stderr)
    return 1


def cmd_audit_verify(args) -> int:
    """Walk the audit log's hash chain; exit 1 naming the first record changed, removed or
    reordered, 2 when there is no log."""
    from pulse.audit import audit_log_path, verify

    data_dir = Path(args.data_dir) if args.data_dir else _data_dir_hint(_config_path(args.config))
    path = audit_log_path(data_dir)
    try:
        count, broken = verify(path)
    except FileNotFoundError:
        print(f"pulse: no audit log at {path}", file=sys.stderr)
        return 2
    if broken:
        print(f"{path}:{broken.line}: chain broken after {count} intact record(s): "
              f"{broken.problem}", file=sys.stderr)
        return 1
    print(f"{path}: {count} record(s), chain intact")
    return 0


def cmd_status(args) -> int:
    """Report each component's state; exit 1 when any is down."""
    import json

    from pulse.launcher.supervisor import status

    cfg = _load(_config_path(args.config))
    rows = status(cfg, demo=args.demo)
    if args.json:
        print(json.dumps([{"component": n, "url": u, "state": s} for n, u, s in rows]))
    else:
        for name, url, state in rows:
            print(f"{name:<15} {state:<8} {url}")
    return 0 if all(s in ("up", "running") for _, _, s in rows) else 1


def cmd_render(args) -> int:
    """Write prometheus.yml and alertmanager.yml (native data dir, or --compose OUT)."""
    from pulse.fileio import write_atomic
    from pulse.launcher.render import (
        alertmanager_config,
        compose_nats_configs,
        dump,
        prometheus_config,
    )
    from pulse.launcher.supervisor import render_configs

    path = _config_path(args.config)
    cfg = _load(path) if not args.compose else load_or_exit(path, _render_env())
    if _refuse_bad_scrape(cfg, "render"):
        return 2
    if args.systemd:
        return _render_systemd(cfg, path, Path(args.systemd))
    if args.compose:
        out = Path(args.compose)
        write_atomic(out / "prometheus.yml", dump(prometheus_config(cfg, demo=True,
                                                                    compose=True)))
        write_atomic(out / "alertmanager.yml", dump(alertmanager_config(cfg, compose=True)))
        print(f"wrote {out / 'prometheus.yml'} and {out / 'alertmanager.yml'}")
        for name, text in compose_nats_configs(cfg).items():
            write_atomic(out / name, text)
            print(f"wrote {out / name}")
    else:
        for name, written in render_configs(cfg, args.demo).items():
            print(f"{name}: {written}")
    return 0


def _render_systemd(cfg, path: Path, out: Path) -> int:
    """Write the systemd units into out and the generated secrets' environment file."""
    from pulse.fileio import write_atomic
    from pulse.launcher.systemd import OPERATOR_ENV, TARGET, units, write_generated_env

    for name, text in units(cfg, path).items():
        write_atomic(out / name, text)
        print(f"wrote {out / name}")
    print(f"wrote {write_generated_env(cfg)} (generated secrets, 0600)")
    print(f"secrets that pulse.yml references go in {OPERATOR_ENV} (0600). Then:\n"
          f"  sudo cp {out}/pulse*.service {out}/{TARGET} /etc/systemd/system/\n"
          f"  sudo systemctl daemon-reload && sudo systemctl enable --now {TARGET}")
    return 0


def cmd_backup(args) -> int:
    """Back the stack up into DIR (running or stopped): files, snapshots, manifest."""
    from pulse.launcher.backup import BackupError, backup

    path = _config_path(args.config)
    cfg = _load(path)
    try:
        manifest = backup(cfg, path, Path(args.dir))
    except BackupError as exc:
        print(f"pulse backup: {exc}", file=sys.stderr)
        return 1
    size = sum(f["bytes"] for f in manifest["files"].values())
    stores = ", ".join(f"{k}: {v}" for k, v in manifest["stores"].items())
    print(f"pulse backup: {len(manifest['files'])} files, {size} bytes in {args.dir} ({stores})")
    return 0


def cmd_restore(args) -> int:
    """Restore a backup into the configuration's empty data dir (the stack stopped)."""
    from pulse.launcher.backup import BackupError, restore

    cfg = _load(_config_path(args.config))
    try:
        manifest = restore(cfg, Path(args.dir))
    except BackupError as exc:
        print(f"pulse restore: {exc}", file=sys.stderr)
        return 1
    print(f"pulse restore: {len(manifest['files'])} files checked and restored into "
          f"{cfg.data_dir}; start the stack with `pulse up`")
    return 0


def cmd_dashboards_check(args) -> int:
    """Evaluate every query of every generated dashboard; exit 1 when any is empty or fails."""
    import time as _time

    from pulse.config import parse_duration
    from pulse.dashboards import check, default_range, load_all, seconds, server_age
    from pulse.promapi import PromError, PrometheusClient, PromUnavailable

    url, scrape_s = args.prometheus, 15.0
    if not url or args.config:
        cfg = load_or_exit(_config_path(args.config), _render_env())
        url = url or cfg.prometheus.url
        scrape_s = parse_duration(cfg.prometheus.scrape_interval)
    try:
        range_s = parse_duration(args.range) if args.range else None
        if args.scrape_interval:
            scrape_s = parse_duration(args.scrape_interval)
    except ValueError as exc:
        print(f"--range/--scrape-interval: {exc}", file=sys.stderr)
        return 2
    docs = load_all()
    unknown = sorted(set(args.dashboard or ()) - set(docs))
    if unknown:
        print(f"--dashboard: unknown {', '.join(unknown)} (known: {', '.join(docs)})",
              file=sys.stderr)
        return 2
    if args.dashboard:
        docs = {name: doc for name, doc in docs.items() if name in args.dashboard}
    try:
        PrometheusClient(url).buildinfo()
    except PromError as exc:
        why = exc.why if isinstance(exc, PromUnavailable) else exc.message
        print(f"Prometheus at {url} is unreachable: {why}", file=sys.stderr)
        return 1
    end = _time.time()
    if range_s is None:
        age = server_age(url, end)
        range_s = default_range(age)
        how = ("half of what it has seen, from 1m to 1h" if age is not None
               else "its age is unknown")
        range_text = f"{seconds(range_s)} ({how})"
    else:
        range_text = args.range
    step = max(scrape_s, range_s / 120)
    outcomes = check(url, end - range_s, end, step=step, scrape_s=scrape_s, docs=docs)
    failed = [o for o in outcomes if not o.ok]
    for o in outcomes if args.verbose else failed:
        state = "ok" if o.ok else ("ERROR" if o.error else "EMPTY")
        print(f"{state:<6} {o.query.dashboard}/{o.query.panel_title} [{o.query.ref}] "
              f"{o.series} series{': ' + o.error if o.error else ''}")
        if not o.ok:
            print(f"       {o.expr}")
    print(f"{len(outcomes) - len(failed)}/{len(outcomes)} queries returned data from {url} "
          f"over the last {range_text}")
    return 1 if failed else 0


def cmd_demo_scenario(args) -> int:
    """Show the demo's active scenario and the list, or switch to another one."""
    import requests

    cfg = _load(_config_path(args.config))
    url = f"http://{cfg.demo.listen}/demo/scenario"
    try:
        if args.name:
            resp = requests.post(url, json={"name": args.name}, timeout=10)
        else:
            resp = requests.get(url, timeout=10)
    except requests.RequestException as exc:
        print(f"pulse demo scenario: the demo API at {url} does not answer ({exc}); "
              "is `pulse up --demo` (make run) running?", file=sys.stderr)
        return 1
    try:
        body = resp.json()
    except ValueError:
        body = {}
    if resp.status_code != 200:
        error = body.get("error", {}) if isinstance(body, dict) else {}
        problems = "; ".join(d.get("problem", "") for d in error.get("details", []))
        print(f"pulse demo scenario: {error.get('message', resp.text)} {problems}".strip(),
              file=sys.stderr)
        return 1
    if args.name:
        alert = f"; expect alert {body['alert']}" if body.get("alert") else ""
        print(f"scenario {body['name']}: {body.get('description', '')}{alert}")
    else:
        print(f"active scenario: {body['name']}")
        for name, info in body.get("scenarios", {}).items():
            alert = f"  [{info['alert']}]" if info.get("alert") else ""
            print(f"  {name:<20} {info['description']}{alert}")
    return 0


def _render_env() -> dict[str, str]:
    """Placeholders for secrets that compose configs never contain."""
    env = dict(os.environ)
    env.update({"PULSE_ADMIN_TOKEN": "x" * 32, "PULSE_PRIVACY_SALT": "x" * 32})
    return env


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of `pulse` and its subcommands."""
    parser = argparse.ArgumentParser(prog="pulse", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("up", help="start the whole stack")
    p.add_argument("--config", help="pulse.yml (default: PULSE_CONFIG or the shipped one)")
    p.add_argument("--demo", action="store_true", help="also start the demo API and traffic")
    p.add_argument("--detach", action="store_true", help="run in the background")
    p.set_defaults(func=cmd_up)

    p = sub.add_parser("down", help="stop a stack started with --detach")
    p.add_argument("--config")
    p.set_defaults(func=cmd_down)

    p = sub.add_parser("status", help="report each component")
    p.add_argument("--config")
    p.add_argument("--demo", action="store_true", help="include the demo components")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_status)

    p = sub.add_parser("audit", help="work with the audit log")
    asub = p.add_subparsers(dest="audit_command", required=True)
    p = asub.add_parser("verify", help="check the audit log's hash chain is unbroken")
    p.add_argument("--config")
    p.add_argument("--data-dir", help="the data directory (default: the config's data_dir)")
    p.set_defaults(func=cmd_audit_verify)

    p = sub.add_parser("render", help="write the generated Prometheus/Alertmanager configs")
    p.add_argument("--config")
    p.add_argument("--demo", action="store_true")
    p.add_argument("--compose", metavar="DIR", help="render for docker-compose into DIR")
    p.add_argument("--systemd", metavar="DIR",
                   help="write systemd units of the stack into DIR (docs/production.md)")
    p.set_defaults(func=cmd_render)

    p = sub.add_parser("backup", help="back up configuration, state and every store into DIR")
    p.add_argument("dir", metavar="DIR", help="a new or empty directory")
    p.add_argument("--config")
    p.set_defaults(func=cmd_backup)

    p = sub.add_parser("restore", help="restore a backup into an empty data dir")
    p.add_argument("dir", metavar="DIR", help="a directory written by `pulse backup`")
    p.add_argument("--config")
    p.set_defaults(func=cmd_restore)

    p = sub.add_parser("dashboards", help="work with the Grafana dashboards")
    dsub = p.add_subparsers(dest="dashboards_command", required=True)
    p = dsub.add_parser("check", help="every panel query parses and returns data")
    p.add_argument("--prometheus", metavar="URL", help="default: prometheus.url of the config")
    p.add_argument("--config", help="pulse.yml (default: PULSE_CONFIG or the shipped one)")
    p.add_argument("--range", help="how far back to evaluate (default: half of the data "
                   "Prometheus has seen, at least 1m and at most 1h)")
    p.add_argument("--scrape-interval", metavar="DURATION",
                   help="what $__rate_interval is based on (default: the config's, else 15s)")
    p.add_argument("--dashboard", action="append", metavar="NAME",
                   help="only this dashboard (repeatable), e.g. executive")
    p.add_argument("-v", "--verbose", action="store_true", help="list every query")
    p.set_defaults(func=cmd_dashboards_check)

    p = sub.add_parser("demo", help="control the demo platform of `pulse up --demo`")
    demo_sub = p.add_subparsers(dest="demo_command", required=True)
    p = demo_sub.add_parser("scenario", help="show the incident scenarios or switch to one")
    p.add_argument("name", nargs="?", help="scenario to switch to (omit to list them)")
    p.add_argument("--config")
    p.set_defaults(func=cmd_demo_scenario)

    p = sub.add_parser("check-config", help="validate a configuration file")
    p.add_argument("file", nargs="?")
    p.add_argument("--needs-victoria", action="store_true",
                   help="exit 0 when the config runs VictoriaMetrics (long_term), else 1")
    p.set_defaults(func=cmd_check_config)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `pulse` console script."""
    args = build_parser().parse_args(argv)
    return args.func(args)
