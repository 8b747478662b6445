"""The integrations exporter (`python -m exporters.integrations`): third-party services.

Scheduled mode: every configured target is probed in the background and a
scrape reads the last results. Multi-target mode: `/probe?target=&module=`
probes on request, as blackbox_exporter does. `/webhooks/email` takes the email
provider's delivery outcomes.
"""

from __future__ import annotations

import dataclasses
import hmac
import json
import re
from collections.abc import Callable, Mapping
from pathlib import Path

from flask import Flask, Response, request
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, generate_latest

from exporters.integrations.email import EmailCollector, EmailOutcomes, WebhookError, parse_outcomes
from exporters.integrations.probe import ProbeResult, ProbeSpec, run_probe, spec_from_settings
from exporters.integrations.probes import OneShotCollector, ProbesCollector
from exporters.integrations.scheduler import Scheduler, Target
from exporters.scrape import ScrapeCollector
from pulse.config import Config, parse_duration
from pulse.log import register_secrets
from pulse.service import add_access, add_standard_routes, guard

COMPONENT = "exporters.integrations"

# Modules every installation has; `modules` in the config adds or overrides.
BUILTIN_MODULES = {
    "http_2xx": {"prober": "http"},
    "tcp_connect": {"prober": "tcp"},
    "tls_connect": {"prober": "tcp", "tls": True},
}
HTTP_TARGET = re.compile(r"^https?://[^\s/]+(/\S*)?$")
TCP_TARGET = re.compile(r"^([^\s/:\[\]]+|\[[0-9A-Fa-f:.]+\]):[0-9]{1,5}$")
MAX_WEBHOOK_BYTES = 1 << 20


def targets_from_config(section: Mapping) -> list[Target]:
    """The scheduled targets of the `exporters.integrations` section."""
    default_interval = parse_duration(section.get("interval", "30s"))
    default_timeout = parse_duration(section.get("timeout", "5s"))
    return [Target(t["name"], spec_from_settings(t["url"], t, default_timeout),
                   parse_duration(t["interval"]) if t.get("interval") else default_interval)
            for t in section.get("targets", ())]


def header_secrets(section: Mapping) -> list[str]:
    """Header values of targets and modules (API keys): never to be logged."""
    values = [v for t in section.get("targets", ()) for v in dict(t.get("headers", {})).values()]
    values += [v for m in dict(section.get("modules", {})).values()
               for v in dict(m.get("headers", {})).values()]
    token = section.get("email_webhook", {}).get("token")
    return [*values, token] if token else values


def error(status: int, code: str, message: str, field: str | None = None,
          problem: str | None = None) -> Response:
    """A JSON error in the house shape."""
    details = [{"field": field, "problem": problem}] if field else []
    body = {"error": {"code": code, "message": message, "details": details}}
    return Response(json.dumps(body), status=status, mimetype="application/json")


def create_app(cfg: Config, registry: CollectorRegistry | None = None, *,
               run: Callable[[ProbeSpec], ProbeResult] = run_probe, start: bool = True) -> Flask:
    """The exporter's WSGI app; starts the background probes unless start=False."""
    registry = registry or CollectorRegistry()
    section = cfg.exporters.integrations
    register_secrets(header_secrets(section))
    scheduler = Scheduler(targets_from_config(section), run)
    store = EmailOutcomes(Path(cfg.data_dir) / "integrations" / "email_messages.json")
    registry.register(ScrapeCollector([("probes", ProbesCollector(scheduler)),
                                       ("email", EmailCollector(store))]))
    webhooks = Counter("integration_email_webhook_requests", "Email webhook requests by result.",
                       ["result"], registry=registry)
    for result in ("accepted", "rejected"):
        webhooks.labels(result)
    modules = {**BUILTIN_MODULES, **{k: dict(v) for k, v in section.get("modules", {}).items()}}
    default_timeout = parse_duration(section.get("timeout", "5s"))
    token = section.get("email_webhook", {}).get("token") or ""

    app = Flask(__name__)
    app.config["PULSE"] = cfg
    app.extensions["pulse.scheduler"] = scheduler
    add_standard_routes(app, registry, COMPONENT)
    add_access(app, cfg, COMPONENT)

    @app.get("/probe")
    @guard("integrations:probe")
    def probe():
        """Probe one target now with a module (blackbox_exporter's multi-target mode); a token
        with integrations:probe, since it makes this host connect wherever it is told."""
        module_name = request.args.get("module", "http_2xx")
        module = modules.get(module_name)
        if module is None:
            return error(400, "unknown_module", f"no module {module_name!r}", "module",
                         f"must be one of {', '.join(sorted(modules))}")
        target = request.args.get("target", "").strip()
        if not target:
            return error(400, "missing_target", "target is required", "target", "is required")
        if module.get("prober", "http") == "http":
            url = target if "://" in target else f"http://{target}"
            if not HTTP_TARGET.match(url):
                return error(400, "bad_target", "target is not an http(s) URL", "target",
                             "must be an http:// or https:// URL or host[:port]")
        else:
            if not TCP_TARGET.match(target):
                return error(400, "bad_target", "target is not host:port", "target",
                             "must be host:port")
            url = f"tcp://{target}"
        spec = spec_from_settings(url, module, default_timeout)
        scrape_timeout = request.headers.get("X-Prometheus-Scrape-Timeout-Seconds")
        try:
            # Answer before Prometheus gives up on the scrape, as blackbox_exporter does.
            limit = float(scrape_timeout) - 0.5 if scrape_timeout else None
        except ValueError:
            limit = None
        if limit and limit > 0 and limit < spec.timeout:
            spec = dataclasses.replace(spec, timeout=limit)
        one = CollectorRegistry()
        one.register(OneShotCollector(run(spec)))
        return Response(generate_latest(one), mimetype=CONTENT_TYPE_LATEST)

    @app.post("/webhooks/email")
    def email_webhook():
        """Count the delivery outcomes an email provider reports."""
        if token:
            given = request.headers.get("X-Pulse-Webhook-Token", "")
            auth = request.headers.get("Authorization", "")
            if auth.startswith("Bearer "):
                given = given or auth[len("Bearer "):]
            if not hmac.compare_digest(given.encode(), token.encode()):
                webhooks.labels("rejected").inc()
                return error(401, "unauthorized", "missing or wrong webhook token")
        if (request.content_length or 0) > MAX_WEBHOOK_BYTES:
            webhooks.labels("rejected").inc()
            return error(413, "too_large", f"body larger than {MAX_WEBHOOK_BYTES} bytes")
        raw = request.stream.read(MAX_WEBHOOK_BYTES + 1)
        if len(raw) > MAX_WEBHOOK_BYTES:
            webhooks.labels("rejected").inc()
            return error(413, "too_large", f"body larger than {MAX_WEBHOOK_BYTES} bytes")
        try:
            body = json.loads(raw)
        except ValueError:
            webhooks.labels("rejected").inc()
            return error(400, "invalid_json", "the body is not valid JSON", "<body>",
                         "is not valid JSON")
        try:
            counts = parse_outcomes(body)
        except WebhookError as exc:
            webhooks.labels("rejected").inc()
            return error(400, "invalid_event", str(exc), exc.field, exc.problem)
        store.add(counts)
        webhooks.labels("accepted").inc()
        return {"accepted": sum(counts.values())}

    if start:
        scheduler.start()
    return app
