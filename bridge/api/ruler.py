"""The Mimir/Cortex ruler API over the bridge's rule store, as mimirtool speaks it.

Mimir's routes `/prometheus/config/v1/rules[/{namespace}[/{group}]]` and the legacy
`/api/v1/rules...` ones (same views); Prometheus's read shapes at `/prometheus/api/v1/rules`
and `/prometheus/api/v1/alerts`, narrowed to the tenant. The tenant is X-Scope-OrgID, else
the Basic-auth user, else `default`. A POST body is YAML read raw whatever its Content-Type
(mimirtool sends none). Writes answer 202 with Mimir's JSON; errors on the Mimir routes are
Mimir's plain text (bridge.errors). docs/ruler.md lists which mimirtool commands work.
"""

from __future__ import annotations

import yaml
from flask import Blueprint, Response, current_app, request

from bridge.auth import current_principal, current_tenant, require
from bridge.errors import ApiError, bad_request
from bridge.services import RULER, service
from bridge.services.errors import NotFound
from bridge.services.ruler import Ruler

bp = Blueprint("ruler", __name__)
BASES = ("/prometheus/config/v1/rules", "/api/v1/rules")
MAX_BODY = 256 * 1024
ACCEPTED = {"status": "success", "data": None, "errorType": "", "error": ""}


def _ruler() -> Ruler:
    return service(current_app, RULER)


def _routes(method: str, suffix: str):
    def decorate(view):
        for base in BASES:
            bp.add_url_rule(base + suffix, view_func=view, methods=[method])
        return view
    return decorate


def _yaml(doc) -> Response:
    return Response(yaml.safe_dump(doc, sort_keys=False, allow_unicode=True),
                    mimetype="application/yaml")


def _who() -> tuple[str, str | None]:
    principal = current_principal()
    return principal.name, principal.role


@_routes("GET", "")
@require("rules:read")
def list_all():
    """Every namespace of the tenant and its rule groups (YAML; {} when there are none)."""
    return _yaml(_ruler().namespaces(current_tenant()))


@_routes("GET", "/<namespace>")
@require("rules:read")
def get_namespace(namespace: str):
    """The rule groups of one namespace (YAML; 404 when it does not exist)."""
    groups = _ruler().groups(current_tenant(), namespace)
    if groups is None:
        raise NotFound("group namespace does not exist",
                       [{"field": "namespace", "problem": f"no namespace {namespace!r}"}])
    return _yaml({namespace: groups})


@_routes("GET", "/<namespace>/<group>")
@require("rules:read")
def get_group(namespace: str, group: str):
    """One rule group, exactly as posted (YAML)."""
    return _yaml(_ruler().group(current_tenant(), namespace, group))


def _body_group():
    if (request.content_length or 0) > MAX_BODY:
        raise ApiError(413, "too_large", f"the body is larger than {MAX_BODY} bytes")
    raw = request.get_data(cache=False, parse_form_data=False)
    if len(raw) > MAX_BODY:
        raise ApiError(413, "too_large", f"the body is larger than {MAX_BODY} bytes")
    try:
        return yaml.safe_load(raw.decode("utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise bad_request("unable to decode rule group", "body", str(exc)[:300]) from None


@_routes("POST", "/<namespace>")
@require("rules:write")
def set_group(namespace: str):
    """Create or replace one rule group in a namespace (YAML body): checked, loaded, 202."""
    tenant = current_tenant()
    ruler = _ruler()
    group = ruler.check(_body_group())
    ruler.set_group(tenant, namespace, group, *_who())
    return ACCEPTED, 202


@_routes("DELETE", "/<namespace>/<group>")
@require("rules:write")
def delete_group(namespace: str, group: str):
    """Delete one rule group (the namespace goes when its last group does)."""
    _ruler().delete_group(current_tenant(), namespace, group, *_who())
    return ACCEPTED, 202


@_routes("DELETE", "/<namespace>")
@require("rules:write")
def delete_namespace(namespace: str):
    """Delete a namespace and all its groups."""
    _ruler().delete_namespace(current_tenant(), namespace, *_who())
    return ACCEPTED, 202


def _flag(name: str) -> bool:
    raw = request.args.get(name, "false").lower()
    if raw not in ("true", "false", "1", "0"):
        raise bad_request(f"{name} must be true or false", name, f"{raw!r} is not a boolean")
    return raw in ("true", "1")


@bp.get("/prometheus/api/v1/rules")
@require("rules:read")
def loaded_rules():
    """Prometheus's loaded rules of the tenant (its shape; file is the namespace)."""
    rule_type = request.args.get("type") or None
    if rule_type not in (None, "alert", "record"):
        raise bad_request(f"not supported value {rule_type!r}", "type",
                          "alert or record")
    groups = _ruler().loaded_rules(
        current_tenant(), rule_type, request.args.getlist("rule_name[]"),
        request.args.getlist("rule_group[]"), request.args.getlist("file[]"),
        _flag("exclude_alerts"))
    return {"status": "success", "data": {"groups": groups}}


@bp.get("/prometheus/api/v1/alerts")
@require("alerts:read")
def loaded_alerts():
    """Prometheus's pending and firing alerts of the tenant's rules (its shape)."""
    return {"status": "success", "data": {"alerts": _ruler().alerts(current_tenant())}}
