"""A Mimir/Cortex-compatible ruler configuration API over the bridge's rule store.

`GET /api/v1/rules`, `GET/POST/DELETE /api/v1/rules/{namespace}[/{group}]` with
YAML rule groups, as mimirtool and cortextool speak it. A namespace is one rule
file (<data_dir>/rules/ns-<namespace>.yml); every change runs the same checks
(in process, then promtool), history, reload and confirmation as the rules API.
Rules created through /api/analytics/alerts/rules are not namespaces here.
"""

from __future__ import annotations

import re

import yaml
from flask import Blueprint, Response, current_app, request

from bridge.auth import current_principal, require
from bridge.errors import ApiError, bad_request
from bridge.services import RULES, service
from bridge.services.rule_compiler import check_group_in_process, render_groups
from bridge.services.rule_store import RuleStore, promtool_check

bp = Blueprint("ruler", __name__)
PREFIX = "ns-"
NAMESPACE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
MAX_BODY = 256 * 1024


def store() -> RuleStore:
    """The app's rule store (the one the rules API writes too)."""
    return service(current_app, RULES)


def _yaml(doc) -> Response:
    return Response(yaml.safe_dump(doc, sort_keys=False), mimetype="application/yaml")


def _key(namespace: str) -> str:
    if not NAMESPACE.match(namespace):
        raise bad_request("invalid namespace", "namespace",
                          "letters, digits, '_', '.', '-' (1-100, starting alphanumeric)")
    return PREFIX + namespace


def _groups(key: str) -> list[dict] | None:
    current = store().current(key)
    if current is None or current.deleted:
        return None
    return yaml.safe_load(current.content)["groups"]


def _namespaces() -> dict[str, list[dict]]:
    return {v.key[len(PREFIX):]: yaml.safe_load(v.content)["groups"]
            for v in store().live(PREFIX)}


@bp.get("/api/v1/rules")
@require("rules:read")
def list_all():
    """Every namespace and its rule groups (YAML)."""
    return _yaml(_namespaces())


@bp.get("/api/v1/rules/<namespace>")
@require("rules:read")
def get_namespace(namespace: str):
    """The rule groups of one namespace (YAML)."""
    groups = _groups(_key(namespace))
    if groups is None:
        raise ApiError(404, "not_found", f"no namespace {namespace!r}")
    return _yaml({namespace: groups})


@bp.get("/api/v1/rules/<namespace>/<group>")
@require("rules:read")
def get_group(namespace: str, group: str):
    """One rule group (YAML)."""
    for g in _groups(_key(namespace)) or []:
        if g["name"] == group:
            return _yaml(g)
    raise ApiError(404, "not_found", f"no group {group!r} in namespace {namespace!r}")


def _apply(key: str, groups: list[dict], action: str):
    principal = current_principal()
    if groups:
        text = render_groups(groups)
        promtool_check(text, store().state_dir / "candidates")
        content = text
    else:
        content = None
    version = store().apply(key, content, action=action, who=principal.name,
                            role=principal.role, name=key[len(PREFIX):],
                            expect_groups=[g["name"] for g in groups])
    return {"status": "success", "version": version.version}, 202


@bp.post("/api/v1/rules/<namespace>")
@require("rules:write")
def set_group(namespace: str):
    """Create or replace one rule group in a namespace (YAML body)."""
    key = _key(namespace)
    if (request.content_length or 0) > MAX_BODY:
        raise ApiError(413, "too_large", f"the body is larger than {MAX_BODY} bytes")
    raw = request.get_data(cache=False)
    if len(raw) > MAX_BODY:
        raise ApiError(413, "too_large", f"the body is larger than {MAX_BODY} bytes")
    try:
        group = yaml.safe_load(raw.decode("utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise bad_request("the body is not valid YAML", "body", str(exc)[:300]) from None
    problems = check_group_in_process(group)
    if problems:
        raise ApiError(400, "invalid_request", "the rule group is invalid", problems)
    existing = _groups(key) or []
    groups = [g for g in existing if g["name"] != group["name"]]
    position = next((i for i, g in enumerate(existing) if g["name"] == group["name"]),
                    len(groups))
    groups.insert(position, group)
    return _apply(key, groups, "update" if existing else "create")


@bp.delete("/api/v1/rules/<namespace>/<group>")
@require("rules:write")
def delete_group(namespace: str, group: str):
    """Delete one rule group (the namespace goes when its last group does)."""
    key = _key(namespace)
    existing = _groups(key)
    if not existing or all(g["name"] != group for g in existing):
        raise ApiError(404, "not_found", f"no group {group!r} in namespace {namespace!r}")
    remaining = [g for g in existing if g["name"] != group]
    return _apply(key, remaining, "update" if remaining else "delete")


@bp.delete("/api/v1/rules/<namespace>")
@require("rules:write")
def delete_namespace(namespace: str):
    """Delete a namespace and all its groups."""
    key = _key(namespace)
    if _groups(key) is None:
        raise ApiError(404, "not_found", f"no namespace {namespace!r}")
    return _apply(key, [], "delete")
