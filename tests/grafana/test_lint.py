"""House style, checked on the generated JSON Grafana actually loads."""

import re

import pytest

from grafana import lib
from pulse.dashboards import load_all, panels

DOCS = load_all()
PANELS = [(name, p) for name, doc in DOCS.items() for p in panels(doc)]
IDS = [f"{name}:{p['title']}" for name, p in PANELS]
RANGE_FUNC = re.compile(
    r"\b(rate|irate|increase|delta|idelta|max_over_time|avg_over_time|predict_linear)"
    r"\s*\(\s*[a-zA-Z_:][\w:]*\s*(\{[^}]*\})?\s*\[([^\]]+)\]")
ALLOWED_WINDOWS = {
    "rate": {"$__rate_interval"}, "irate": {"$__rate_interval"},
    "increase": {"$__rate_interval", "$__range"},
    "max_over_time": {"$__range"}, "avg_over_time": {"$__range"},
    # The fill forecast looks at the same 6 h as the NodeFilesystemFillingUp alert.
    "predict_linear": {"6h"},
}


def test_seven_dashboards():
    assert sorted(DOCS) == ["ai", "business", "coach", "executive", "product", "pulse",
                            "system"]


@pytest.mark.parametrize("name", sorted(DOCS))
def test_dashboard_level(name):
    doc = DOCS[name]
    assert doc["schemaVersion"] == lib.SCHEMA_VERSION == 39
    assert doc["title"] and doc["description"]
    assert any(t.startswith("audience:") for t in doc["tags"])
    first = doc["templating"]["list"][0]
    assert (first["name"], first["type"], first["query"]) == ("datasource", "datasource",
                                                               "prometheus")
    assert first["current"]["value"] == "pulse-prometheus"
    for var in doc["templating"]["list"][1:]:
        assert var["datasource"] == lib.DATASOURCE, var["name"]
    ids = [p["id"] for p in panels(doc)]
    assert len(ids) == len(set(ids))


@pytest.mark.parametrize(("name", "panel"), PANELS, ids=IDS)
def test_panel_house_style(name, panel):
    assert panel["title"].strip()
    assert panel["description"].strip()
    assert panel["fieldConfig"]["defaults"].get("unit"), "every panel has a unit"
    assert panel["datasource"] == lib.DATASOURCE
    pos = panel["gridPos"]
    assert 0 <= pos["x"] and pos["x"] + pos["w"] <= lib.GRID_WIDTH
    assert panel["targets"], "a panel without a query shows nothing"
    refs = [t["refId"] for t in panel["targets"]]
    assert len(refs) == len(set(refs))
    for t in panel["targets"]:
        assert t["datasource"] == lib.DATASOURCE
        expr = t["expr"]
        calls = re.findall(r"\b(rate|irate|increase)\s*\(", expr)
        windows = RANGE_FUNC.findall(expr)
        assert len(windows) >= len(calls), f"a rate over something not a selector: {expr}"
        for func, _, window in windows:
            assert window in ALLOWED_WINDOWS[func], f"{func}(...[{window}]) in {expr}"
        assert not re.search(r"\[\d+[smhdw]\]", expr.replace("[6h], 86400", "")), expr


def _threshold_steps(node):
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "thresholds" and isinstance(value, dict) and "steps" in value:
                yield value["steps"]
            yield from _threshold_steps(value)
    elif isinstance(node, list):
        for item in node:
            yield from _threshold_steps(item)


@pytest.mark.parametrize(("name", "panel"), PANELS, ids=IDS)
def test_thresholds_use_real_null(name, panel):
    found = list(_threshold_steps(panel["fieldConfig"]))
    assert found, "thresholds are set explicitly"
    for steps in found:
        assert steps and steps[0]["value"] is None, steps
        for step in steps[1:]:
            assert isinstance(step["value"], int | float), steps
        assert "null" not in [s["value"] for s in steps]


@pytest.mark.parametrize(("label", "colours"), [
    ("platform", lib.PLATFORM_COLOURS), ("severity", lib.SEVERITY_COLOURS),
    ("outcome", lib.OUTCOME_COLOURS)])
def test_consistent_colours(label, colours):
    seen = 0
    for _, panel in PANELS:
        if not any(t.get("legendFormat", "").startswith(f"{{{{{label}}}}}")
                   for t in panel["targets"]):
            continue
        seen += 1
        fixed = {}
        for o in panel["fieldConfig"]["overrides"]:
            if o["matcher"]["id"] == "byRegexp":
                value = o["matcher"]["options"][1:].split("(")[0]
                fixed[value] = o["properties"][0]["value"]["fixedColor"]
        assert fixed == colours, panel["title"]
    assert seen, f"no panel splits by {label}"


def test_executive_headlines_show_change_against_previous_period():
    stats = [p for p in panels(DOCS["executive"]) if p["type"] == "stat"]
    assert len(stats) >= 8
    for p in stats:
        a, b = p["targets"]
        assert "offset $__range" in b["expr"] and a["expr"] in b["expr"], p["title"]
        override = p["fieldConfig"]["overrides"][0]
        assert override["matcher"] == {"id": "byFrameRefID", "options": "B"}
        assert {"id": "unit", "value": "percentunit"} in override["properties"]


def test_panels_read_recording_rules_where_one_exists():
    from pulse.dashboards import metric_names
    from tests.synthetic import recording_rules, rules_dir

    rules = recording_rules()
    assert rules, f"no recording rules in {rules_dir()}"
    read_by_rules = {m for entry in rules.values() for rule in entry["rules"]
                     for m in metric_names(rule["expr"])}
    raw_rates = re.compile(r"\b(?:rate|irate)\s*\(\s*([a-zA-Z_][\w]*)\s*[\[{]")
    offenders = []
    for name, panel in PANELS:
        for t in panel["targets"]:
            for metric in raw_rates.findall(t["expr"]):
                if metric in read_by_rules or metric.removesuffix("_bucket") + "_bucket" \
                        in read_by_rules:
                    offenders.append(f"{name}/{panel['title']}: rate({metric}) has a rule")
    assert not offenders, "\n".join(offenders)
