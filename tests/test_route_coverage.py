"""Every HTTP route of every Pulse process is in the one role table, or listed as open.

The Flask route table of each process is walked, and so is each OpenAPI document (whose
paths may be served by WSGI middleware in front of Flask, as the intake's ingest is). A
route must name a permission of pulse.access.ROLE_PERMISSIONS (its view's `permission`,
set by the bridge's `require`) or be in pulse.access.OPEN_ROUTES; a new route that is
neither fails here, so no endpoint can be forgotten.
"""

from __future__ import annotations

import importlib
import re

import pytest
from flask import Flask
from prometheus_client import CollectorRegistry
from werkzeug.exceptions import MethodNotAllowed, NotFound

from pulse.access import OPEN_ROUTES, known_permission
from pulse.config import validate

PROCESSES = ("bridge", "exporters.events", "exporters.ai", "exporters.integrations",
             "exporters.infrastructure")
IGNORED_METHODS = {"HEAD", "OPTIONS"}


@pytest.fixture(scope="module")
def apps(tmp_path_factory):
    """Each Pulse process's WSGI app, built from one minimal configuration."""
    data = tmp_path_factory.mktemp("routes") / "data"
    cfg = validate({"data_dir": str(data), "privacy": {"salt": "${PULSE_PRIVACY_SALT}"},
                    "prometheus": {"url": "http://127.0.0.1:9"},
                    "alertmanager": {"url": "http://127.0.0.1:9"},
                    "exporters": {"events": {"listen": "127.0.0.1:1",
                                             "profiles": {"enabled": False}}}},
                   "test", {"PULSE_PRIVACY_SALT": "x" * 32})
    built = {name: importlib.import_module(name).create_app(cfg, CollectorRegistry())
             for name in PROCESSES}
    yield built
    built["exporters.events"].extensions["pulse.events"].store.close()


def _open(process: str, route: str) -> bool:
    return (process, route) in OPEN_ROUTES or any(
        p == process and r.endswith("/*") and route.startswith(r[:-1])
        for p, r in OPEN_ROUTES)


def _flask_routes(apps):
    for process, app in apps.items():
        for rule in app.url_map.iter_rules():
            for method in sorted(rule.methods - IGNORED_METHODS):
                yield process, method, rule.rule, app.view_functions[rule.endpoint]


def _openapi_operations(apps):
    for process, app in apps.items():
        if "/api/openapi.json" not in {r.rule for r in app.url_map.iter_rules()}:
            continue
        doc = app.test_client().get("/api/openapi.json").get_json()
        for path, item in doc["paths"].items():
            for method in item:
                if method.upper() in {"GET", "POST", "PUT", "PATCH", "DELETE"}:
                    yield process, method.upper(), path


def test_every_flask_route_names_a_permission_of_the_role_table_or_is_open(apps):
    problems = []
    for process, method, route, view in _flask_routes(apps):
        permission = getattr(view, "permission", None)
        if _open(process, route):
            if permission is not None:
                problems.append(f"{process} {method} {route}: listed open but guarded by "
                                f"{permission!r}")
        elif permission is None:
            problems.append(f"{process} {method} {route}: no permission and not listed open")
        elif not known_permission(permission):
            problems.append(f"{process} {method} {route}: {permission!r} is in no role")
    assert not problems, "\n".join(problems)


def test_every_openapi_operation_is_a_guarded_route_or_listed_open(apps):
    problems = []
    for process, method, path in _openapi_operations(apps):
        adapter = apps[process].url_map.bind("pulse.test")
        concrete = re.sub(r"\{[^}]+\}", "x1", path)
        try:
            endpoint, _ = adapter.match(concrete, method=method)
        except (NotFound, MethodNotAllowed):
            # Served in front of Flask (WSGI middleware): it must be open on purpose.
            if not _open(process, path):
                problems.append(f"{process} {method} {path}: not a Flask route and not "
                                "listed open")
            continue
        view = apps[process].view_functions[endpoint]
        rule = next(r.rule for r in apps[process].url_map.iter_rules(endpoint))
        if not (getattr(view, "permission", None) or _open(process, rule)):
            problems.append(f"{process} {method} {path}: no permission and not listed open")
    assert not problems, "\n".join(problems)


def test_the_open_list_names_real_routes(apps):
    routes = {(p, r) for p, _, r, _ in _flask_routes(apps)}
    served = routes | {(p, path) for p, _, path in _openapi_operations(apps)}
    stale = [k for k in OPEN_ROUTES if not k[1].endswith("/*") and k not in served]
    assert not stale, f"listed open but served by no process: {stale}"


def test_an_unlisted_unguarded_route_is_caught():
    app = Flask("forgotten")
    app.add_url_rule("/api/forgotten", "forgotten", lambda: "")
    with pytest.raises(AssertionError, match="/api/forgotten: no permission"):
        test_every_flask_route_names_a_permission_of_the_role_table_or_is_open(
            {"exporters.infrastructure": app})
