"""The raw profile series stay behind the bridge: a real Prometheus scrapes raw
`pulse_profiles_*` series (counts under k, one of them even carrying a coach label) beside
published ones; no query, series, labels or label-values request of any role but admin
returns a raw series or its value, one naming a raw series is a 403 naming it, and admin
still reads them (docs/profiles.md, "Raw and published series")."""

import time

import pytest

from tests.bridge.api.test_prometheus_read import _get, _rows
from tests.bridge.stack import Stack
from tests.harness import wait_until

pytestmark = pytest.mark.integration

RAW = {
    'pulse_profiles_users{window="1d",platform="all"}': 3.0,
    'pulse_profiles_coach_clients_active{coach_id="coach-1"}': 2.0,
    # A raw series with the coach label: the coach scoping alone would let coach-1 see it.
    'pulse_profiles_coach_goal_progress_sum{coach="coach-1"}': 0.5,
}
PUBLISHED = {
    'fitness_active_users{window="1d",platform="all"}': 4242.0,
    'fitness_coach_clients_active{coach="coach-1"}': 12.0,
}
RAW_NAMES = {"pulse_profiles_users", "pulse_profiles_coach_clients_active",
             "pulse_profiles_coach_goal_progress_sum"}
RAW_VALUES = set(RAW.values())
GUARDED = ("analyst", "engineer", "auditor", "coach")


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    """Prometheus scraping the raw and published series, and the bridge over real HTTP."""
    s = Stack(tmp_path_factory.mktemp("raw-guard"), "http://127.0.0.1:9")
    s.source.values.update({**RAW, **PUBLISHED})
    wait_until(lambda: len(s.prometheus.query('{__name__=~"fitness_.*|pulse_profiles_.*"}'))
               == len(RAW) + len(PUBLISHED), timeout=60)
    time.sleep(3)  # a few scrapes, for the ranges and subqueries below
    s.url = s.serve()
    yield s
    s.stop()


# Queries that select by regex, by label or by everything: empty of raw series, never a 403.
WIDE = [
    '{__name__=~".+"}',
    '{__name__=~"pulse_.*"}',
    '{__name__=~"pulse_profiles_.+"}',
    '{__name__=~"pulse_profiles_users|fitness_active_users"}',
    '{__name__=~".*PROFILES.*|.*profiles.*"}',
    '{window="1d"}',
    'fitness_active_users or {__name__=~".*profiles.*"}',
    'fitness_coach_clients_active unless {__name__=~"pulse_profiles_.*"}',
    'count by (__name__) ({__name__=~".+"})',
    'label_replace({__name__=~"pulse.+"}, "name", "$1", "__name__", "(.*)")',
    'max_over_time({__name__=~"pulse_profiles_.*"}[2s:1s])',
    'sum by (__name__) ({__name__=~".+"} offset 1s)',
    '{__name__="sum"} or {__name__=~"p.*"}',
]
# Queries naming a raw series: a 403 naming it.
NAMED = [
    ("pulse_profiles_users", "pulse_profiles_users"),
    ("sum(rate(pulse_profiles_users[1m]))", "pulse_profiles_users"),
    ('{__name__="pulse_profiles_users"}', "pulse_profiles_users"),
    ('{__name__=~"pulse_profiles_coach_clients_active"}',
     "pulse_profiles_coach_clients_active"),
    ("fitness_active_users or pulse_profiles_coach_goal_progress_sum",
     "pulse_profiles_coach_goal_progress_sum"),
    ("max_over_time(pulse_profiles_users[5m:1m] offset 1m)", "pulse_profiles_users"),
]


def _no_raw(rows):
    for labels, values in rows:
        assert labels.get("__name__") not in RAW_NAMES, labels
        assert labels.get("name") not in RAW_NAMES and "coach_id" not in labels, labels
        assert not RAW_VALUES & set(values), (labels, values)


@pytest.mark.parametrize("role", GUARDED)
@pytest.mark.parametrize("expr", WIDE)
def test_no_wide_query_reaches_a_raw_series(stack, role, expr):
    resp = _get(stack, "query", role=role, method="POST", query=expr)
    assert resp.status_code == 200, resp.text
    _no_raw(_rows(resp.json()))
    end = time.time()
    ranged = _get(stack, "query_range", role=role, query=expr, start=f"{end - 3:.3f}",
                  end=f"{end:.3f}", step="1")
    assert ranged.status_code == 200, ranged.text
    _no_raw(_rows(ranged.json()))


def test_what_is_left_is_the_published_series(stack):
    rows = _rows(_get(stack, "query", role="analyst", query='{__name__=~".+"}').json())
    names = {labels["__name__"] for labels, _ in rows}
    assert {"fitness_active_users", "fitness_coach_clients_active"} <= names
    total = _rows(_get(stack, "query", role="engineer", query='sum({window="1d"})').json())
    assert total == [({}, [4242.0])]
    coach = _rows(_get(stack, "query", role="coach", query='{__name__=~".+"}').json())
    assert [(labels["__name__"], values) for labels, values in coach] == \
        [("fitness_coach_clients_active", [12.0])]


@pytest.mark.parametrize("role", GUARDED)
@pytest.mark.parametrize(("expr", "name"), NAMED)
def test_a_query_naming_a_raw_series_is_a_403_naming_it(stack, role, expr, name):
    for path, params in (("query", {"query": expr}),
                         ("query_range", {"query": expr, "start": "1", "end": "2",
                                          "step": "1"})):
        resp = _get(stack, path, role=role, **params)
        assert resp.status_code == 403, resp.text
        body = resp.json()
        assert (body["status"], body["errorType"]) == ("error", "forbidden")
        assert name in body["error"], body


@pytest.mark.parametrize("role", GUARDED)
def test_series_and_labels_show_no_raw_series(stack, role):
    for method in ("GET", "POST"):
        series = _get(stack, "series", role=role, method=method,
                      **{"match[]": ['{__name__=~".+"}', '{__name__=~"pulse_.*"}']})
        assert series.status_code == 200, series.text
        names = {s["__name__"] for s in series.json()["data"]}
        assert names and not names & RAW_NAMES, names
    values = _get(stack, "label/__name__/values", role=role).json()["data"]
    assert values and not set(values) & RAW_NAMES, values
    regex = _get(stack, "label/__name__/values", role=role,
                 **{"match[]": '{__name__=~"pulse_profiles_.*"}'}).json()["data"]
    assert regex == []
    # coach_id is a label of raw series only.
    assert "coach_id" not in _get(stack, "labels", role=role).json()["data"]
    assert _get(stack, "label/coach_id/values", role=role).json()["data"] == []
    for path in ("series", "labels", "label/window/values"):
        denied = _get(stack, path, role=role, **{"match[]": "pulse_profiles_users"})
        assert denied.status_code == 403, (path, denied.text)
        assert "pulse_profiles_users" in denied.json()["error"]


def test_admin_still_reads_the_raw_series(stack):
    [(labels, values)] = _rows(_get(stack, "query", role="admin",
                                    query="pulse_profiles_users").json())
    assert labels["window"] == "1d" and values == [3.0]
    rows = _rows(_get(stack, "query", role="admin", query='{__name__=~".+"}').json())
    assert RAW_NAMES <= {labels["__name__"] for labels, _ in rows}
    values = _get(stack, "label/__name__/values", role="admin").json()["data"]
    assert RAW_NAMES <= set(values)
    series = _get(stack, "series", role="admin", **{"match[]": "pulse_profiles_users"})
    assert [s["__name__"] for s in series.json()["data"]] == ["pulse_profiles_users"]
    assert _get(stack, "label/coach_id/values", role="admin").json()["data"] == ["coach-1"]
