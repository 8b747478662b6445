"""GET /api/analytics/dashboards/{id} against a real Prometheus holding the recorded fixture."""


import pytest

from bridge import create_app
from bridge.openapi import document
from pulse.dashboards import load_all, panels
from tests.bridge.conftest import auth, bridge_config
from tests.bridge.openapi_check import validate_response
from tests.grafana.fixture import STEP, STOPPED_MODEL, shared_fixture_prometheus

pytestmark = pytest.mark.integration
URL = "/api/analytics/dashboards"


@pytest.fixture(scope="module")
def fixture_prom(tmp_path_factory):
    """Prometheus on the fixture with the repository's rules backfilled."""
    prom, end = shared_fixture_prometheus(tmp_path_factory.mktemp("bridge-dashboards"))
    yield prom, end
    prom.stop()


@pytest.fixture
def api(tmp_path, fixture_prom):
    """A bridge test client talking to the fixture Prometheus (scrape interval = fixture's)."""
    prom, _ = fixture_prom
    app = create_app(bridge_config(tmp_path, prometheus={"url": prom.url,
                                                         "scrape_interval": f"{STEP}s"}))
    return app.test_client()


def test_executive_dashboard_with_data_and_quality(api):
    resp = api.get(f"{URL}/pulse-executive?from=now-2h", headers=auth("executive"))
    assert resp.status_code == 200, resp.json
    body = resp.json
    validate_response(document(), "DashboardDataResponse", body)
    dash = body["dashboard"]
    doc = load_all()["executive"]
    assert (dash["id"], dash["targetAudience"], dash["owner"]) == ("pulse-executive",
                                                                   "executive", "pulse")
    assert len(dash["widgets"]) == len(body["data"]) == len(list(panels(doc)))
    assert {"role": "coach", "permission": "read", "scope": "own coach_id"} \
        not in dash["accessControl"]
    headline = next(w for w in dash["widgets"] if w["title"] == "New users")
    assert headline["type"] == "metric"
    assert "offset $__range" in headline["query"]["promql"][1]["expr"]
    quality = {q["widgetId"]: q for q in body["dataQuality"]["widgets"]}
    for panel in panels(doc):
        q = quality[f"panel-{panel['id']}"]
        assert q["hasData"] and q["status"] == "ok", (panel["title"], q)
        assert q["seriesPresentRatio"] == 1.0
        assert q["newestSampleAgeSeconds"] < 600
    assert body["dataQuality"]["status"] == "complete"


def test_every_dashboard_answers(api):
    for name, doc in load_all().items():
        resp = api.get(f"{URL}/{name}?from=now-1h", headers=auth("admin"))
        assert resp.status_code == 200, (name, resp.json)
        assert resp.json["dashboard"]["id"] == doc["uid"]
        with_data = {d["widgetId"] for d in resp.json["data"] if d["series"]}
        for panel in panels(doc):
            assert f"panel-{panel['id']}" in with_data, (name, panel["title"])


def test_a_stopped_source_shows_as_partial(api):
    resp = api.get(f"{URL}/pulse-ai?from=now-3h&step=60", headers=auth("engineer"))
    assert resp.status_code == 200
    body = resp.json
    wid = next(w["id"] for w in body["dashboard"]["widgets"]
               if w["title"] == "Evaluated accuracy")
    q = next(q for q in body["dataQuality"]["widgets"] if q["widgetId"] == wid)
    assert (q["hasData"], q["expectedSeries"], q["presentSeries"], q["status"]) == \
        (True, 3, 2, "partial")
    assert q["seriesPresentRatio"] == pytest.approx(2 / 3, abs=1e-3)
    assert body["dataQuality"]["status"] == "partial"
    series = next(d for d in body["data"] if d["widgetId"] == wid)["series"]
    assert STOPPED_MODEL in {s["labels"]["model"] for s in series}


def _clients(body) -> float:
    wid = next(w["id"] for w in body["dashboard"]["widgets"] if w["title"] == "Active clients")
    values = next(d for d in body["data"] if d["widgetId"] == wid)["series"][0]["values"]
    return values[-1][1]


def test_coach_sees_only_own_clients(api):
    resp = api.get(f"{URL}/pulse-coach?from=now-1h", headers=auth("coach"))
    assert resp.status_code == 200, resp.json
    assert _clients(resp.json) == 12  # coach-1 in the fixture
    assert {"role": "coach", "permission": "read", "scope": "own coach_id"} \
        in resp.json["dashboard"]["accessControl"]
    same = api.get(f"{URL}/coach?from=now-1h&coach=coach-1", headers=auth("coach"))
    assert same.status_code == 200
    other = api.get(f"{URL}/pulse-coach?coach=coach-2", headers=auth("coach"))
    assert other.status_code == 403 and other.json["error"]["details"][0]["field"] == "coach"
    for name in ("pulse-executive", "pulse-system", "ai"):
        resp = api.get(f"{URL}/{name}", headers=auth("coach"))
        assert resp.status_code == 403, name
        assert resp.json["error"]["code"] == "forbidden"


def test_other_roles_choose_the_coach(api):
    everyone = api.get(f"{URL}/pulse-coach?from=now-1h", headers=auth("analyst"))
    assert _clients(everyone.json) == 12 + 8 + 23
    two = api.get(f"{URL}/pulse-coach?from=now-1h&coach=coach-2,coach-3",
                  headers=auth("analyst"))
    assert _clients(two.json) == 8 + 23


@pytest.mark.parametrize(("query", "field"), [
    ("?color=red", "color"),
    ("?from=yesterday", "from"),
    ("?from=now&to=now-1h", "from"),
    ("?step=0", "step"),
    ("?step=fast", "step"),
    ("?from=now-400d&step=1", "step"),
    ('?platform=ios"}', "platform"),
])
def test_bad_input_is_a_clear_400(api, query, field):
    resp = api.get(f"{URL}/pulse-product{query}", headers=auth("admin"))
    assert resp.status_code == 400, resp.json
    assert resp.json["error"]["details"][0]["field"] == field


def test_unknown_dashboard_and_no_token(api):
    resp = api.get(f"{URL}/nope", headers=auth("admin"))
    assert resp.status_code == 404
    assert resp.json["error"]["details"][0]["field"] == "dashboardId"
    assert api.get(f"{URL}/pulse-executive").status_code == 401
    assert api.get(f"{URL}/pulse-executive", headers=auth("auditor")).status_code == 200


def test_prometheus_down_is_503(client):
    resp = client.get(f"{URL}/pulse-executive", headers=auth("admin"))
    assert resp.status_code == 503
    assert resp.json["error"]["code"] == "unavailable"
