"""What every Pulse HTTP process shares: /metrics, health endpoints, the WSGI server, and
access control with its audit (the one role table, pulse.access; the one chain, pulse.audit)."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from collections.abc import Callable, Mapping
from functools import wraps

from flask import Flask, Response, current_app, g, jsonify, request
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Gauge, generate_latest

from pulse import __version__
from pulse.access import (
    AccessDenied,
    Principal,
    authenticate,
    check,
    credentials,
    token_store,
)
from pulse.audit import AuditLog, audit_log_path, request_record
from pulse.config import Config, ConfigError, load_config, split_listen
from pulse.log import register_secrets, setup

log = logging.getLogger(__name__)


def add_standard_routes(app: Flask, registry: CollectorRegistry, component: str) -> None:
    """Mount /metrics, /-/healthy and /-/ready on app, and a pulse_build_info series."""
    Gauge("pulse_build_info", "Pulse version and component (always 1).",
          ["version", "component"], registry=registry).labels(__version__, component).set(1)

    @app.get("/metrics")
    def metrics():
        """Prometheus exposition of this process's registry."""
        return Response(generate_latest(registry), mimetype=CONTENT_TYPE_LATEST)

    @app.get("/-/healthy")
    def healthy():
        """Liveness: the process answers."""
        return {"status": "ok", "component": component}

    @app.get("/-/ready")
    def ready():
        """Readiness: the process is serving."""
        return {"status": "ready", "component": component}


def add_access(app: Flask, cfg: Config, component: str) -> None:
    """Give app the stack's tokens (bridge.tokens and the data dir's grants) and the data
    dir's audit chain, and record
    every request to a guarded route (allowed or refused) and every 401/403 of app.

    Allowed requests to open routes (/metrics, health, accepted ingest) are not recorded:
    they are the bulk of the traffic, and are counted by metrics instead."""
    app.extensions["pulse.tokens"] = token_store(cfg)
    app.extensions["pulse.audit"] = AuditLog(audit_log_path(cfg.data_dir))
    app.extensions["pulse.component"] = component
    app.after_request(_audit_response)


def _audit_response(response: Response) -> Response:
    view = current_app.view_functions.get(request.endpoint) if request.url_rule else None
    permission = getattr(view, "permission", None)
    status = response.status_code
    if permission is None and status not in (401, 403):
        return response
    principal = g.get("principal")
    current_app.extensions["pulse.audit"].append(request_record(
        current_app.extensions["pulse.component"],
        who=principal.name if principal else g.get("auth_failure", "anonymous"),
        role=principal.role if principal else None, tenant=g.get("tenant"),
        method=request.method,
        route=request.url_rule.rule if request.url_rule else request.path,
        path=request.path, status=status, permission=permission,
        cause=g.get("auth_failure") or ("forbidden" if status == 403 else None),
        grant=principal.grant_id if principal else None, reason=g.get("step_up_reason")))
    return response


def request_principal() -> Principal:
    """The request's principal (bearer token, or Basic auth with the token as password),
    authenticated once per request; AccessDenied 401 when the token is missing, invalid or
    expired (noted for the audit record)."""
    if "principal" in g:
        return g.principal
    token, basic_user = credentials(request.headers.get("Authorization", ""))
    if basic_user is not None:
        g.basic_user = basic_user  # the bridge's ruler tenant when no X-Scope-OrgID
    try:
        principal = authenticate(current_app.extensions["pulse.tokens"], token)
    except AccessDenied as exc:
        g.auth_failure = exc.reason
        raise
    g.principal = principal
    return principal


def authorize(permission: str) -> Principal:
    """The request's principal when it holds permission; AccessDenied 401/403 otherwise."""
    principal = request_principal()
    check(principal, permission)
    return principal


def guard(permission: str) -> Callable:
    """Decorator for a view of a process with `add_access`: 401 without a valid token, 403
    naming the permission when the token's role lacks it (JSON in the house shape)."""
    def decorate(view):
        @wraps(view)
        def wrapper(*args, **kwargs):
            try:
                authorize(permission)
            except AccessDenied as exc:
                code = "unauthorized" if exc.status == 401 else "forbidden"
                return jsonify({"error": {"code": code, "message": exc.message,
                                          "details": exc.details}}), exc.status
            return view(*args, **kwargs)
        # What the route-coverage test and the audit read, as on the bridge's `require`.
        wrapper.permission = permission
        return wrapper
    return decorate


def parse_args(component: str, argv: list[str] | None = None) -> argparse.Namespace:
    """The command line every service shares: --config and --listen."""
    parser = argparse.ArgumentParser(prog=f"python -m {component}")
    parser.add_argument("--config", help="pulse.yml path (default: PULSE_CONFIG or ./pulse.yml)")
    parser.add_argument("--listen", help="host:port, overriding the configuration")
    return parser.parse_args(argv)


def load_or_exit(path: str | os.PathLike | None,
                 env: Mapping[str, str] | None = None) -> Config:
    """Load the configuration (env: instead of os.environ), or print every problem and exit 2."""
    try:
        return load_config(path, env=env)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        raise SystemExit(2) from None


def close_server(server) -> None:
    """Stop a waitress server: its task threads first, then its sockets.

    A task thread still serving a kept-alive request after close() writes its wake-up byte
    to the closed trigger's fd number, which by then may belong to another socket of the
    process ("Bad file descriptor", or a stray b"x" read as "xGET" / HTTP 405 elsewhere).
    """
    server.task_dispatcher.shutdown(cancel_pending=True, timeout=5)
    server.close()


def serve(app, listen: str, component: str, threads: int = 8) -> None:
    """Serve a WSGI app with waitress until SIGTERM or SIGINT."""
    from waitress.server import create_server

    host, port = split_listen(listen)
    server = create_server(app, host=host, port=port, threads=threads,
                           ident=f"pulse-{component}", clear_untrusted_proxy_headers=True)

    def stop(signum, frame):
        log.info("signal %s: stopping", signum)
        close_server(server)
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    log.info("listening on http://%s:%d", host, port)
    try:
        server.run()
    except KeyboardInterrupt:
        pass


def config_secrets(cfg: Config) -> list[str]:
    """Every secret value in a configuration: tokens, channel URLs, the privacy salt, the
    credentials of remote write and of the platform's scrape jobs."""
    values = [t.token for t in cfg.bridge.tokens]
    for entries in cfg.bridge.channels.values():
        for entry in entries:  # an apprise URL or {pagerduty|opsgenie: {routing_key|api_key}}
            values += [entry] if isinstance(entry, str) else [
                v for spec in entry.values() for k, v in spec.items() if k != "url"]
    values += [rw.get("bearer_token") for rw in cfg.prometheus.remote_write]
    for job in cfg.prometheus.scrape:
        values.append(job.get("bearer_token"))
        values.append((job.get("basic_auth") or {}).get("password"))
    values.append(cfg.privacy.get("salt"))
    values.append(cfg.bridge.get("webhook_token"))
    values += [s.write_key for s in cfg.exporters.events.get("sources", ())]
    return [v for v in values if v]


def run_service(component: str, build_app, listen_of, argv: list[str] | None = None) -> None:
    """Entry point of a service: parse args, load config, set up logging, build and serve."""
    args = parse_args(component, argv)
    cfg = load_or_exit(args.config)
    setup(component, cfg.log_level)
    register_secrets(config_secrets(cfg))
    app = build_app(cfg)
    serve(app, args.listen or listen_of(cfg), component)
