"""Alert rules by API: /api/analytics/alerts/rules (create, read, update, delete, history)."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from typing import Any

import yaml
from flask import Blueprint, current_app, request

from bridge.auth import current_principal, require
from bridge.errors import ApiError, bad_request
from bridge.services import ALERTMANAGER, PROMETHEUS, RULES, service
from bridge.services.errors import ServiceError
from bridge.services.rule_compiler import (
    check_group_in_process,
    compile_rule,
    group_name,
    render_groups,
    validate_request,
)
from bridge.services.rule_store import RuleStore, Version, promtool_check
from pulse.links import links
from pulse.promapi import PromError

bp = Blueprint("rules", __name__, url_prefix="/api/analytics")
PREFIX = "api-"
MAX_BODY = 64 * 1024


def store() -> RuleStore:
    """The app's rule store."""
    return service(current_app, RULES)


def link_bases() -> tuple[str, str | None]:
    """(bridge, grafana) external bases for the links of API rules (pulse.links)."""
    bases = links(current_app.config["PULSE"])
    return bases.bridge, bases.grafana


def json_body() -> Any:
    """The request's JSON body (413 when too big, 415 when not JSON, 400 when malformed)."""
    if (request.content_length or 0) > MAX_BODY:
        raise ApiError(413, "too_large", f"the body is larger than {MAX_BODY} bytes")
    if not request.is_json:
        raise ApiError(415, "unsupported_media_type", "send the body as application/json")
    data = request.get_data(cache=True)
    if len(data) > MAX_BODY:
        raise ApiError(413, "too_large", f"the body is larger than {MAX_BODY} bytes")
    body = request.get_json(silent=True)
    if body is None:
        raise bad_request("the body is not valid JSON", "body", "malformed JSON")
    return body


def flag(name: str) -> bool:
    """A boolean query parameter (true|false|1|0)."""
    raw = request.args.get(name, "false").lower()
    if raw not in ("true", "false", "1", "0"):
        raise bad_request(f"{name} must be true or false", name, f"{raw!r} is not a boolean")
    return raw in ("true", "1")


def _key(rule_id: str) -> str:
    if not (len(rule_id) == 13 and rule_id[0] == "r"
            and all(c in "0123456789abcdef" for c in rule_id[1:])):
        raise ApiError(404, "not_found", f"no alert rule {rule_id!r}")
    return PREFIX + rule_id


def _live(rule_id: str) -> Version:
    current = store().current(_key(rule_id))
    if current is None or current.deleted:
        raise ApiError(404, "not_found", f"no alert rule {rule_id!r}")
    return current


def _rule_id(version: Version) -> str:
    return version.key[len(PREFIX):]


def rule_body(v: Version, loaded: dict | None = None) -> dict:
    """The AlertRule response for a version."""
    body = {
        "id": _rule_id(v), "name": v.name, "version": v.version, "request": v.request,
        "yaml": v.content, "file": str(store().path_of(v.key)),
        "group": group_name(_rule_id(v)),
        "createdBy": v.meta.get("createdBy", v.who), "updatedBy": v.who, "updatedAt": v.time,
        "silences": v.meta.get("silences", []),
    }
    if v.request is not None:
        body["routing"] = routing(v.request)
    if loaded:
        body["loaded"] = loaded
    return body


def routing(req: dict) -> str:
    """How Alertmanager routes the rule's alerts, in words."""
    if req.get("notificationChannels"):
        return "channels: " + ", ".join(req["notificationChannels"])
    return f"no notificationChannels: routed by its team label (team={req.get('team', 'oncall')})"


def _channels() -> set[str]:
    return set(current_app.config["PULSE"].bridge.channels)


def _prepare(rule_id: str) -> tuple[dict, dict, str]:
    """Validate and compile the request body: (request, group, yaml text)."""
    req = validate_request(json_body(), _channels())
    if "expr" in req and not current_principal().can("rules:expr"):
        raise ApiError(403, "forbidden", f"role {current_principal().role!r} lacks the "
                       "permission 'rules:expr' (raw PromQL)",
                       [{"field": "expr", "problem": "rules:expr required"}])
    group = compile_rule(rule_id, req, *link_bases())
    return req, group, render_groups([group])


def _check(req: dict, group: dict, text: str) -> None:
    """In-process checks always; promtool when PromQL came from outside the compiler."""
    problems = check_group_in_process(group)
    if problems:
        raise ApiError(422, "rule_check_failed", "the generated rule group is invalid", problems)
    mode = current_app.config["PULSE"].bridge.rules.promtool
    # Regular expressions too: Python's re accepts some that Go's RE2 refuses.
    regex = any(f["op"] in ("=~", "!~") for f in req["condition"].get("filters", []))
    if mode == "always" or "expr" in req or regex:
        promtool_check(text, store().state_dir / "candidates")


def _dry_run(req: dict, group: dict, text: str) -> dict:
    errors: list[dict] = []
    try:
        _check(req, group, text)
    except (ApiError, ServiceError) as exc:
        errors = exc.details or [{"field": "rules", "problem": exc.message}]
    warnings: list[str] = []
    exists = None
    if "metric" in req:
        metric = req["metric"]
        if req["condition"]["aggregation"] in ("p50", "p90", "p95", "p99") and \
                not metric.endswith("_bucket"):
            metric += "_bucket"
        try:
            exists = service(current_app, PROMETHEUS).series_exists(metric)
            if not exists:
                warnings.append(f"no series named {metric} exists in Prometheus now")
        except PromError as exc:
            warnings.append(f"could not check the metric: {exc.message}")
    body = {"dryRun": True, "valid": not errors, "yaml": text, "group": group,
            "errors": errors, "warnings": warnings}
    if exists is not None:
        body["metricExists"] = exists
    return body


def _silences(rule_id: str, req: dict) -> list[str]:
    """Create the Alertmanager silences of the request's maintenance windows."""
    am = service(current_app, ALERTMANAGER)
    created: list[str] = []
    now = datetime.now(UTC)
    try:
        for s in req.get("suppressionRules", []):
            if s["type"] != "maintenance_window":
                continue
            ends = datetime.fromisoformat(s["endsAt"].replace("Z", "+00:00"))
            if ends <= now:
                continue
            created.append(am.create_silence({
                "matchers": [{"name": "rule_id", "value": rule_id, "isRegex": False,
                              "isEqual": True}],
                "startsAt": s["startsAt"], "endsAt": s["endsAt"],
                "createdBy": f"pulse-bridge ({current_principal().name})",
                "comment": f"maintenance window of alert rule {rule_id} ({req['name']})",
            }))
    except PromError:
        _expire(created)
        raise
    return created


def _expire(ids: list[str]) -> list[str]:
    """Expire silences, best effort; the ids that could not be expired."""
    am = service(current_app, ALERTMANAGER)
    left = []
    for sid in ids:
        try:
            am.delete_silence(sid)
        except PromError:
            left.append(sid)
    return left


def _unique_name(name: str, key: str | None):
    def check(s: RuleStore) -> None:
        other = s.name_taken(name, PREFIX, except_key=key)
        if other:
            raise ApiError(409, "conflict", f"an alert rule named {name!r} exists already "
                           f"({other[len(PREFIX):]})", [{"field": "name",
                                                         "problem": "duplicate name"}])
    return check


def _loaded(group: dict, key: str) -> dict:
    return {"prometheus": service(current_app, PROMETHEUS).url,
            "group": group["name"], "file": str(store().path_of(key)),
            "rules": len(group["rules"])}


@bp.post("/alerts/rules")
@require("rules:write")
def create_rule():
    """Create an alert rule: compile, check, write, reload, confirm (or dryRun)."""
    rule_id = "r" + secrets.token_hex(6)
    req, group, text = _prepare(rule_id)
    if flag("dryRun"):
        return _dry_run(req, group, text)
    _check(req, group, text)
    key = PREFIX + rule_id
    principal = current_principal()
    silences = _silences(rule_id, req)
    try:
        version = store().apply(key, text, action="create", who=principal.name,
                                role=principal.role, name=req["name"], request=req,
                                meta={"silences": silences, "createdBy": principal.name},
                                expect_groups=[group["name"]],
                                precheck=_unique_name(req["name"], None))
    except BaseException:
        _expire(silences)
        raise
    return rule_body(version, _loaded(group, key)), 201


@bp.get("/alerts/rules")
@require("rules:read")
def list_rules():
    """Every live alert rule registered by API."""
    return {"rules": [rule_body(v) for v in store().live(PREFIX)]}


@bp.get("/alerts/rules/<rule_id>")
@require("rules:read")
def get_rule(rule_id: str):
    """One alert rule with its generated YAML."""
    return rule_body(_live(rule_id))


@bp.put("/alerts/rules/<rule_id>")
@require("rules:write")
def update_rule(rule_id: str):
    """Replace an alert rule (same checks and confirmation as create; or dryRun)."""
    current = _live(rule_id)
    req, group, text = _prepare(rule_id)
    if flag("dryRun"):
        return _dry_run(req, group, text)
    _check(req, group, text)
    return _replace(current, req, text, group, "update")


def _replace(current: Version, req: dict, text: str, group: dict, action: str):
    rule_id = _rule_id(current)
    principal = current_principal()
    silences = _silences(rule_id, req)
    try:
        version = store().apply(
            current.key, text, action=action, who=principal.name, role=principal.role,
            name=req["name"], request=req,
            meta={"silences": silences,
                  "createdBy": current.meta.get("createdBy", current.who)},
            expect_groups=[group["name"]], precheck=_unique_name(req["name"], current.key))
    except BaseException:
        _expire(silences)
        raise
    _expire(current.meta.get("silences", []) if not current.deleted else [])
    return rule_body(version, _loaded(group, current.key))


@bp.delete("/alerts/rules/<rule_id>")
@require("rules:write")
def delete_rule(rule_id: str):
    """Delete an alert rule; its group leaves Prometheus (confirmed)."""
    current = _live(rule_id)
    principal = current_principal()
    version = store().apply(current.key, None, action="delete", who=principal.name,
                            role=principal.role, name=current.name,
                            meta={"createdBy": current.meta.get("createdBy", current.who)},
                            expect_groups=[])
    _expire(current.meta.get("silences", []))
    return {"id": rule_id, "deleted": True, "version": version.version}


@bp.get("/alerts/rules/<rule_id>/history")
@require("rules:read")
def history(rule_id: str):
    """Every version of the rule: who, when, what changed."""
    versions = store().history(_key(rule_id))
    if not versions:
        raise ApiError(404, "not_found", f"no alert rule {rule_id!r}")
    out = []
    for v in versions:
        item = {"version": v.version, "action": v.action, "who": v.who, "role": v.role or "",
                "time": v.time, "diff": v.diff}
        if v.request is not None:
            item["request"] = v.request
        out.append(item)
    return {"id": rule_id, "versions": out}


@bp.post("/alerts/rules/<rule_id>/rollback")
@require("rules:write")
def rollback(rule_id: str):
    """Apply an earlier version's rule again, as a new version."""
    key = _key(rule_id)
    current = store().current(key)
    if current is None:
        raise ApiError(404, "not_found", f"no alert rule {rule_id!r}")
    raw = request.args.get("version", "")
    if not raw.isdigit() or int(raw) < 1:
        raise bad_request("version must be a positive integer", "version",
                          f"{raw!r} is not a version number")
    # Past 2**63 SQLite cannot even compare it: no such version either way.
    target = store().version(key, int(raw)) if int(raw) < 2**63 else None
    if target is None:
        raise ApiError(404, "not_found", f"rule {rule_id} has no version {raw}",
                       [{"field": "version", "problem": "no such version"}])
    if target.deleted or target.request is None:
        raise ApiError(409, "conflict", f"version {raw} is a deletion; nothing to restore",
                       [{"field": "version", "problem": "a delete version"}])
    req, text = target.request, target.content
    group = yaml.safe_load(text)["groups"][0]
    _check(req, group, text)
    return _replace(current, req, text, group, "rollback")
