"""A replay of mimirtool's ruler client (grafana/mimir pkg/mimirtool), request for request.

mimirtool cannot be installed here (no Go toolchain, no package), so the tests send exactly
what it sends: the routes under /prometheus/config/v1/rules, Basic(id or user, key), the
X-Scope-OrgID header, a mimirtool User-Agent, a YAML body marshalled in Go's field order with
NO Content-Type, and its load/diff/sync algorithms with CompareGroups' notion of equal (a
missing map differs from an empty one; durations compare as values; expr as text).
"""

from __future__ import annotations

import base64
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from urllib.parse import quote

import requests
import yaml

from pulse.config import parse_duration

BASE = "/prometheus/config/v1/rules"
RULE_ORDER = ("record", "alert", "expr", "for", "keep_firing_for", "labels", "annotations")
GROUP_ORDER = ("name", "interval", "limit", "rules")


class NotFound(Exception):
    """mimirtool's ErrResourceNotFound (a 404)."""


def _seconds(value) -> float:
    return 0.0 if value in (None, "", "0") else parse_duration(value)


def go_marshal(group: dict) -> bytes:
    """yaml.Marshal(rwrulefmt.RuleGroup): Go's field order, omitempty, 4-space indent."""
    out = {k: group[k] for k in GROUP_ORDER if group.get(k) not in (None, "", 0)
           or (k == "rules")}
    out["rules"] = [{k: r[k] for k in RULE_ORDER if k in r and r[k] not in (None, "")}
                    for r in group.get("rules") or []]
    return yaml.safe_dump(out, sort_keys=False, indent=4, allow_unicode=True).encode()


def groups_equal(a: dict, b: dict) -> bool:
    """mimirtool's rules.CompareGroups."""
    if a.get("name") != b.get("name") or _seconds(a.get("interval")) != _seconds(
            b.get("interval")):
        return False
    ra, rb = a.get("rules") or [], b.get("rules") or []
    if len(ra) != len(rb):
        return False
    for x, y in zip(ra, rb, strict=True):
        if (x.get("alert"), x.get("record"), x.get("expr")) != (
                y.get("alert"), y.get("record"), y.get("expr")):
            return False
        if _seconds(x.get("for")) != _seconds(y.get("for")):
            return False
        for key in ("labels", "annotations"):  # reflect.DeepEqual: nil map != empty map
            if (key in x and x[key] is not None) != (key in y and y[key] is not None):
                return False
            if (x.get(key) or {}) != (y.get(key) or {}):
                return False
    return True


@dataclass
class Mimirtool:
    """`mimirtool rules ...` against an address, with --id and --key (and --user)."""

    address: str
    tenant: str
    key: str
    user: str | None = None
    sent: list[tuple[str, str, int]] = field(default_factory=list)

    def _request(self, method: str, path: str, body: bytes | None = None) -> requests.Response:
        who = self.user if self.user else self.tenant  # --key alone: Basic(id, key)
        headers = {
            "User-Agent": "mimirtool/2.10.0 (linux/amd64)",
            "X-Scope-OrgID": self.tenant,
            "Authorization": "Basic " + base64.b64encode(f"{who}:{self.key}".encode()).decode(),
        }
        resp = requests.request(method, self.address + path, data=body, headers=headers,
                                timeout=60)
        assert "Content-Type" not in resp.request.headers  # what mimirtool sends: none
        self.sent.append((method, path, resp.status_code))
        if resp.status_code == 404:
            raise NotFound(resp.text)
        if not 200 <= resp.status_code < 300:
            raise RuntimeError(f"{method} {path}: {resp.status_code} {resp.text[:1024]}")
        return resp

    def list(self) -> dict[str, list[dict]]:
        """`rules list`: GET base (a 404 would be fatal)."""
        return yaml.safe_load(self._request("GET", BASE).text) or {}

    def get(self, namespace: str, group: str) -> dict | None:
        """`rules get NS GROUP` (None: "does not currently exist")."""
        try:
            return yaml.safe_load(self._request(
                "GET", f"{BASE}/{quote(namespace, safe='')}/{quote(group, safe='')}").text)
        except NotFound:
            return None

    def post(self, namespace: str, group: dict) -> None:
        """CreateRuleGroup: POST base/NS with the group as YAML."""
        self._request("POST", f"{BASE}/{quote(namespace, safe='')}", go_marshal(group))

    def delete(self, namespace: str, group: str) -> None:
        """`rules delete NS GROUP` (404 tolerated)."""
        try:
            self._request("DELETE", f"{BASE}/{quote(namespace, safe='')}/"
                          f"{quote(group, safe='')}")
        except NotFound:
            pass

    def delete_namespace(self, namespace: str) -> None:
        """`rules delete-namespace NS` (404 tolerated)."""
        try:
            self._request("DELETE", f"{BASE}/{quote(namespace, safe='')}")
        except NotFound:
            pass

    def load(self, files: list[dict]) -> int:
        """`rules load FILES`: GET each group, POST it only when it differs; the POSTs sent."""
        posts = 0
        for f in files:
            for group in f["groups"]:
                current = self.get(f["namespace"], group["name"])
                if current is not None and groups_equal(current, group):
                    continue
                self.post(f["namespace"], group)
                posts += 1
        return posts

    def diff(self, files: list[dict]) -> dict[str, list[str]]:
        """`rules diff FILES`: what sync would change (added, updated, deleted group names)."""
        current = self.list()
        out: dict[str, list[str]] = {"added": [], "updated": [], "deleted": []}
        wanted = {f["namespace"]: {g["name"]: g for g in f["groups"]} for f in files}
        for ns, groups in wanted.items():
            have = {g["name"]: g for g in current.get(ns, [])}
            for name, g in groups.items():
                if name not in have:
                    out["added"].append(f"{ns}/{name}")
                elif not groups_equal(have[name], g):
                    out["updated"].append(f"{ns}/{name}")
        for ns, groups in current.items():
            for g in groups:
                if g["name"] not in wanted.get(ns, {}):
                    out["deleted"].append(f"{ns}/{g['name']}")
        return out

    def sync(self, files: list[dict], concurrency: int = 8) -> dict[str, list[str]]:
        """`rules sync FILES`: the diff applied by `concurrency` concurrent requests."""
        changes = self.diff(files)
        wanted = {f["namespace"]: {g["name"]: g for g in f["groups"]} for f in files}
        jobs = [(self.post, ns, wanted[ns][name]) for ns, name in
                (c.split("/", 1) for c in changes["added"] + changes["updated"])]
        jobs += [(self.delete, ns, name) for ns, name in
                 (c.split("/", 1) for c in changes["deleted"])]
        with ThreadPoolExecutor(concurrency) as pool:
            for fut in [pool.submit(fn, ns, arg) for fn, ns, arg in jobs]:
                fut.result()  # the first error aborts
        return changes
