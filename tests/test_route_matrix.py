"""Every role x every guarded route, on live processes (bridge, intake, AI exporter,
integrations): 401 without a token, 403 naming the missing permission for a role without
it, and neither for a role that holds it; every one of those requests is one record of the
one audit chain, which verifies.

The matrix is generated from the role table (pulse.access.ROLE_PERMISSIONS) and from each
process's Flask route table (the `permission` its guard sets), so a route another change
adds later is in it without touching this file.
"""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from pulse.access import ROLE_PERMISSIONS, Principal
from pulse.audit import AuditLog, audit_log_path, verify
from tests import harness
from tests.bridge.conftest import TOKENS, token_entries
from tests.test_route_coverage import _flask_routes, apps  # noqa: F401  (the fixture)

pytestmark = pytest.mark.integration
LIVE = ("bridge", "exporters.events", "exporters.ai", "exporters.integrations")


def concrete(route: str) -> str:
    """A path that the route template matches (every parameter filled with a dummy)."""
    route = re.sub(r"<int:[^>]+>", "1", route)
    return re.sub(r"<[^>]+>", "x1", route)


def guarded(apps) -> list[tuple[str, str, str, str]]:  # noqa: F811
    """(process, method, route template, permission) of every guarded route of LIVE."""
    return sorted({(p, m, r, v.permission) for p, m, r, v in _flask_routes(apps)
                   if p in LIVE and getattr(v, "permission", None)})


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    """The four processes on one data dir, with one token per role (unreachable Prometheus
    and Alertmanager: a refusal never needs them, and an allowed request may fail after it)."""
    tmp = tmp_path_factory.mktemp("matrix")
    path = tmp / "pulse.yml"
    cfg = harness.write_pulse_config(
        path, tmp / "data", prometheus={"url": f"http://127.0.0.1:{harness.free_port()}"},
        alertmanager={"url": f"http://127.0.0.1:{harness.free_port()}"},
        bridge={"tokens": token_entries()})
    env = harness.pulse_env(tmp / "data")
    listen = {"bridge": cfg["bridge"]["listen"],
              **{f"exporters.{n}": cfg["exporters"][n]["listen"]
                 for n in ("events", "ai", "integrations")}}
    procs = [harness.start_service(module, path, env, listen[module],
                                   tmp / "logs" / f"{module}.log", timeout=60)
             for module in LIVE]
    yield listen, tmp / "data"
    for proc in procs:
        proc.stop()


def _call(listen, process, method, route, role):
    headers = {"Authorization": f"Bearer {TOKENS[role]}"} if role else {}
    resp = requests.request(method, f"http://{listen[process]}{concrete(route)}",
                            headers=headers, timeout=60, allow_redirects=False)
    try:
        body = resp.json()
    except ValueError:
        body = None
    return resp.status_code, body, resp.text


def test_every_role_gets_exactly_the_routes_its_permissions_allow(stack, apps):  # noqa: F811
    listen, data_dir = stack
    routes = guarded(apps)
    assert {p for p, *_ in routes} == set(LIVE), "every live process has guarded routes"
    calls = [(p, m, r, perm, role) for p, m, r, perm in routes
             for role in (None, *ROLE_PERMISSIONS)]
    with ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(lambda c: _call(listen, *c[:3], c[4]), calls))
    problems = []
    for (process, method, route, permission, role), (status, body, text) in zip(
            calls, answers, strict=True):
        where = f"{process} {method} {route} as {role or 'nobody'}: {status}"
        error = body.get("error") if isinstance(body, dict) else None
        error = error if isinstance(error, dict) else {"body": body}
        if role is None:
            if status != 401:
                problems.append(f"{where}, expected 401")
        elif not Principal(role, role).can(permission):
            # The house error names it as a field; the Prometheus- and Cortex-compatible
            # routes answer in their own formats (JSON or YAML), which name it too.
            house = isinstance(body, dict) and isinstance(body.get("error"), dict)
            named = error.get("details") == [
                {"field": "permission", "problem": f"{permission} required"}] if house \
                else f"'{permission}'" in text
            if status != 403 or not named:
                problems.append(f"{where}, expected 403 naming {permission}: {text[:200]}")
        elif status == 401 or (status == 403 and (any(
                d.get("field") == "permission" for d in error.get("details", []))
                or "lacks the permission" in text)):
            # A 403 for a scope of the principal (a tenant, a coach, a step-up) is not a
            # refusal of the route's permission; one naming the permission is.
            problems.append(f"{where}, the role holds {permission}: {error}")
    assert not problems, f"{len(problems)} of {len(calls)}:\n" + "\n".join(problems[:80])

    # Each of those requests is one record of the one chain, from the process that answered.
    log = audit_log_path(data_dir)
    assert verify(log)[1] is None
    records = AuditLog(log).read(limit=len(calls) * 2)
    got = sorted((r["process"], r["method"], r["route"], r["who"]) for r in records)
    want = sorted((p, m, r, f"{role}-user" if role else "anonymous")
                  for p, m, r, _, role in calls)
    assert got == want
    assert not any(t in log.read_text() for t in TOKENS.values())
    # Auditors read them all at the bridge, whichever process wrote them.
    for process in LIVE:
        entries = requests.get(f"http://{listen['bridge']}/api/analytics/audit", timeout=30,
                               params={"process": process, "limit": 1000},
                               headers={"Authorization": f"Bearer {TOKENS['auditor']}"}
                               ).json()["entries"]
        assert entries and {e["process"] for e in entries} == {process}
