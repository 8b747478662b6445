"""The ruler's domain: tenants' namespaces of YAML rule groups over the rule store.

A namespace of a tenant is one rule file: `ns-<namespace>.yml` for the default tenant (as
before tenants existed) and `tn-<tenant>+<namespace>.yml` for the others, all in the one rule
directory Prometheus globs (2.42 allows a glob only in the last path element, so the layout
is flat). The groups are stored exactly as they were posted (the history row's request) and
returned exactly so, which is what mimirtool's diff/sync compare; only the file Prometheus
loads adds the `tenant` label to every rule.
"""

from __future__ import annotations

import re
from typing import Any

import yaml

from bridge.services import RULER, RULES
from bridge.services.errors import Invalid, NotFound, Refused
from bridge.services.rule_compiler import TENANT_LABEL, check_group_in_process, render_groups
from bridge.services.rule_store import Edit, RuleStore, Version, promtool_check
from pulse.promapi import PromError

DEFAULT_TENANT = "default"
TENANT = re.compile(r"^[A-Za-z0-9_.-]{1,150}$")
NAMESPACE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
MIN_KEEP_FIRING_FOR = (2, 42)


def check_tenant(tenant: str) -> str:
    """The tenant id, or a 400 naming X-Scope-OrgID (Mimir's rule: no '/', not '.' or '..')."""
    if not TENANT.match(tenant) or tenant in (".", ".."):
        raise Invalid("no valid org id found",
                       [{"field": "X-Scope-OrgID", "problem": "one tenant id of letters, "
                         "digits, '_', '.', '-' (1-150); federated ids (a|b) are not served"}])
    return tenant


def key_of(tenant: str, namespace: str) -> str:
    """The rule-store key (and file stem) of a tenant's namespace."""
    if not NAMESPACE.match(namespace):
        raise Invalid("invalid namespace",
                       [{"field": "namespace", "problem": "letters, digits, '_', '.', '-' "
                         "(1-100, starting alphanumeric; '/' is not allowed)"}])
    return f"ns-{namespace}" if tenant == DEFAULT_TENANT else f"tn-{tenant}+{namespace}"


def prefix_of(tenant: str) -> str:
    """The key prefix of every namespace of a tenant."""
    return "ns-" if tenant == DEFAULT_TENANT else f"tn-{tenant}+"


def _stored_groups(v: Version) -> list[dict]:
    if isinstance(v.request, dict) and "groups" in v.request:
        return v.request["groups"]
    # Written before groups were kept verbatim: the file is all there is.
    return yaml.safe_load(v.content)["groups"]


def _label_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def render_tenant_file(tenant: str, groups: list[dict]) -> str:
    """The rule file Prometheus loads: the groups with tenant=<tenant> on every rule."""
    out = []
    for group in groups:
        g = dict(group)
        if g.get("rules"):
            g["rules"] = [{**r, "labels": {**{k: _label_text(v) for k, v in
                                               (r.get("labels") or {}).items()},
                                            TENANT_LABEL: tenant}}
                          for r in g["rules"]]
        out.append(g)
    return render_groups(out)


class Ruler:
    """Tenants' namespaces: read, set a group, delete a group or a namespace; Prometheus's
    read APIs narrowed to a tenant."""

    def __init__(self, store: RuleStore):
        self.store = store
        self._keep_firing_for: bool | None = None

    def namespaces(self, tenant: str) -> dict[str, list[dict]]:
        """Every namespace of the tenant and its groups, as posted."""
        prefix = prefix_of(tenant)
        return {v.key[len(prefix):]: _stored_groups(v) for v in self.store.live(prefix)}

    def groups(self, tenant: str, namespace: str) -> list[dict] | None:
        """The groups of one namespace, or None when it does not exist."""
        v = self.store.current(key_of(tenant, namespace))
        return None if v is None or v.deleted else _stored_groups(v)

    def group(self, tenant: str, namespace: str, name: str) -> dict:
        """One group as posted (404 when absent)."""
        for g in self.groups(tenant, namespace) or []:
            if g.get("name") == name:
                return g
        raise NotFound("group does not exist",
                       [{"field": "group", "problem": f"no group {name!r} in {namespace!r}"}])

    def supports_keep_firing_for(self) -> bool:
        """Whether the running Prometheus loads keep_firing_for (its buildinfo, >= 2.42)."""
        if self._keep_firing_for is None:
            try:
                version = self.store.prometheus.buildinfo().get("version", "")
                parts = tuple(int(p) for p in re.findall(r"\d+", version)[:2])
                self._keep_firing_for = parts >= MIN_KEEP_FIRING_FOR
            except (PromError, ValueError):
                return True  # unknown for now; promtool and the reload still judge
        return self._keep_firing_for

    def check(self, group: Any) -> dict:
        """A posted group checked in process and by promtool (400 naming each field)."""
        problems = check_group_in_process(group, keep_firing_for=self.supports_keep_firing_for())
        if problems:
            raise Invalid("invalid rule group", problems)
        try:
            promtool_check(render_groups([group]), self.store.state_dir / "candidates")
        except Refused as exc:  # Mimir answers a rule its validation refuses with 400
            raise Invalid(exc.message, exc.details, exc.code) from None
        return group

    def set_group(self, tenant: str, namespace: str, group: dict, who: str,
                  role: str | None) -> Version:
        """Create or replace one group (in place, others kept), confirmed loaded."""
        key = key_of(tenant, namespace)

        def build(last: Version | None) -> Edit:
            existing = _stored_groups(last) if last and not last.deleted else []
            groups = [g for g in existing if g.get("name") != group["name"]]
            at = next((i for i, g in enumerate(existing) if g.get("name") == group["name"]),
                      len(groups))
            groups.insert(at, group)
            return self._edit(tenant, namespace, groups, "update" if existing else "create")

        return self.store.apply(key, action="update", who=who, role=role, build=build)

    def delete_group(self, tenant: str, namespace: str, name: str, who: str,
                     role: str | None) -> Version:
        """Delete one group; the namespace goes with its last group (404 when absent)."""
        key = key_of(tenant, namespace)

        def build(last: Version | None) -> Edit:
            existing = _stored_groups(last) if last and not last.deleted else []
            if all(g.get("name") != name for g in existing):
                raise NotFound("group does not exist",
                               [{"field": "group", "problem": f"no group {name!r}"}])
            remaining = [g for g in existing if g.get("name") != name]
            return self._edit(tenant, namespace, remaining,
                              "update" if remaining else "delete")

        return self.store.apply(key, action="update", who=who, role=role, build=build)

    def delete_namespace(self, tenant: str, namespace: str, who: str,
                         role: str | None) -> Version:
        """Delete a namespace and its groups (404 when absent)."""
        key = key_of(tenant, namespace)

        def build(last: Version | None) -> Edit:
            if last is None or last.deleted:
                raise NotFound("group namespace does not exist",
                               [{"field": "namespace", "problem": f"no namespace {namespace!r}"}])
            return self._edit(tenant, namespace, [], "delete")

        return self.store.apply(key, action="delete", who=who, role=role, build=build)

    def _edit(self, tenant: str, namespace: str, groups: list[dict], action: str) -> Edit:
        if not groups:
            return Edit(None, "delete", namespace, {"tenant": tenant, "namespace": namespace,
                                                    "groups": []}, [])
        return Edit(render_tenant_file(tenant, groups), action, namespace,
                    {"tenant": tenant, "namespace": namespace, "groups": groups},
                    [g["name"] for g in groups])

    # -- Prometheus's read APIs, narrowed to a tenant ----------------------------------------

    def _query(self, call):
        last: PromError | None = None
        for replica in self.store.replicas:  # whichever replica answers
            try:
                return call(replica.client)
            except PromError as exc:
                if exc.invalid:
                    raise
                last = exc
        raise last  # type: ignore[misc]

    def loaded_rules(self, tenant: str, rule_type: str | None = None,
                     rule_names: list[str] = (), group_names: list[str] = (),
                     namespaces: list[str] = (), exclude_alerts: bool = False) -> list[dict]:
        """Prometheus's /api/v1/rules groups of the tenant's files, file = the namespace."""
        params: dict[str, Any] = {}
        if rule_type:
            params["type"] = rule_type
        if rule_names:
            params["rule_name[]"] = list(rule_names)
        if group_names:
            params["rule_group[]"] = list(group_names)
        groups = self._query(lambda c: c.rules(**params))
        prefix = prefix_of(tenant)
        out = []
        for g in groups:
            stem = g.get("file", "").rsplit("/", 1)[-1].removesuffix(".yml")
            if not stem.startswith(prefix) or (tenant == DEFAULT_TENANT and "+" in stem):
                continue
            namespace = stem[len(prefix):]
            if namespaces and namespace not in namespaces:
                continue
            g = {**g, "file": namespace}
            if exclude_alerts:
                g["rules"] = [{k: v for k, v in r.items() if k != "alerts"}
                              for r in g.get("rules", [])]
            out.append(g)
        return out

    def alerts(self, tenant: str) -> list[dict]:
        """Prometheus's active alerts whose rules belong to the tenant."""
        return [a for a in self._query(lambda c: c.alerts())
                if a.get("labels", {}).get(TENANT_LABEL) == tenant]


def init_app(app) -> None:
    """The app's ruler over its rule store (app.extensions['pulse.ruler'])."""
    app.extensions[RULER] = Ruler(app.extensions[RULES])
