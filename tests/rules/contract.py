"""The rule contract: what every alert and recording rule in rules/ must carry.

`problems(...)` returns human-readable violations (empty when the files comply); the
tests assert on it, and `shortened(...)` makes a copy of a rule file for live tests.
"""

from __future__ import annotations

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
RULES_DIR = ROOT / "rules"
TESTS_DIR = RULES_DIR / "tests"
RUNBOOKS = ROOT / "docs" / "runbooks.md"

AREAS = ("application", "infrastructure", "integrations", "ai", "business", "engagement",
         "data-quality", "capacity", "profiles")
SEVERITIES = {"critical", "warning", "info"}
TEAMS = {"oncall", "ai", "product", "business", "data"}
DASHBOARD_UIDS = {"pulse-executive", "pulse-product", "pulse-coach", "pulse-system", "pulse-ai",
                  "pulse-business", "pulse-self"}
RUNBOOK_BASE = "http://127.0.0.1:8080/runbooks#"
DASHBOARD_BASE = "http://127.0.0.1:3000/d/"
# The scrape jobs of pulse/launcher/render.py: each needs an `...Down` alert on up and absent().
SCRAPE_JOBS = ("prometheus", "alertmanager", "events", "infrastructure", "integrations", "ai",
               "bridge", "demo")
# Always firing by design, so it has no "not yet firing" case and a static description.
HEARTBEATS = {"Watchdog"}

ALERT_NAME = re.compile(r"^[A-Z][a-z0-9]+(?:[A-Z][a-z0-9]*)*$")
RECORD_NAME = re.compile(r"^[a-z][a-z0-9_]*:[a-z][a-z0-9_]*:[a-z0-9][a-z0-9_]*$")
SECTION = re.compile(r"^## (\S+)\s*$", re.M)


def rule_files() -> list[Path]:
    """Every rules/<area>.rules.yml."""
    return sorted(RULES_DIR.glob("*.rules.yml"))


def test_files() -> list[Path]:
    """Every rules/tests/<area>.test.yml."""
    return sorted(TESTS_DIR.glob("*.test.yml"))


def load(path: Path) -> dict:
    """A YAML document."""
    return yaml.safe_load(path.read_text())


def runbook_sections(text: str | None = None) -> set[str]:
    """The `## Name` headings of docs/runbooks.md."""
    return set(SECTION.findall(RUNBOOKS.read_text() if text is None else text))


def alert_problems(rule: dict, sections: set[str], where: str) -> list[str]:
    """Violations of the label/annotation contract by one alerting rule."""
    name = rule.get("alert", "")
    out = []
    at = f"{where}: alert {name!r}"
    if not ALERT_NAME.match(name):
        out.append(f"{at}: name is not CamelCase")
    labels = rule.get("labels") or {}
    annotations = rule.get("annotations") or {}
    severity = labels.get("severity")
    if name in HEARTBEATS:
        if severity != "none":
            out.append(f"{at}: a heartbeat has severity none, not {severity!r}")
    elif severity not in SEVERITIES:
        out.append(f"{at}: severity {severity!r} not in {sorted(SEVERITIES)}")
    if labels.get("team") not in TEAMS:
        out.append(f"{at}: team {labels.get('team')!r} not in {sorted(TEAMS)}")
    summary = annotations.get("summary")
    if not summary:
        out.append(f"{at}: no summary")
    else:
        if not summary.endswith("."):
            out.append(f"{at}: summary does not end with a period")
        if "{{" in summary:
            out.append(f"{at}: summary is templated (it must be a static sentence)")
    description = annotations.get("description")
    if not description:
        out.append(f"{at}: no description")
    elif name not in HEARTBEATS and "{{" not in description:
        out.append(f"{at}: description is not templated with the labels or the value")
    runbook = annotations.get("runbook_url")
    if runbook != RUNBOOK_BASE + name.lower():
        out.append(f"{at}: runbook_url {runbook!r} is not {RUNBOOK_BASE + name.lower()!r}")
    if name not in sections:
        out.append(f"{at}: docs/runbooks.md has no '## {name}' section")
    dashboard = annotations.get("dashboard_url", "")
    if not (dashboard.startswith(DASHBOARD_BASE)
            and dashboard[len(DASHBOARD_BASE):] in DASHBOARD_UIDS):
        out.append(f"{at}: dashboard_url {dashboard!r} is not one of the Pulse dashboards")
    return out


def record_problems(rule: dict, where: str) -> list[str]:
    """Violations of the level:metric:operations naming by one recording rule."""
    from pulse.profiles.aggregates import PUBLISHED

    name = rule.get("record", "")
    # The published profile series keep the names they had as gauges (dashboards, reports
    # and the catalogue read them); only profiles.rules.yml records them.
    if name in PUBLISHED and Path(where).name == "profiles.rules.yml":
        return []
    if not RECORD_NAME.match(name):
        return [f"{where}: recording rule {name!r} is not named level:metric:operations"]
    return []


def problems(docs: dict[str, dict], sections: set[str]) -> list[str]:
    """Every contract violation in the given rule documents (name -> parsed YAML)."""
    out = []
    for where, doc in docs.items():
        groups = (doc or {}).get("groups")
        if not groups:
            out.append(f"{where}: no rule groups")
            continue
        for group in groups:
            for rule in group.get("rules") or []:
                if "alert" in rule:
                    out.extend(alert_problems(rule, sections, where))
                elif "record" in rule:
                    out.extend(record_problems(rule, where))
                else:
                    out.append(f"{where}: a rule is neither an alert nor a record: {rule}")
    return out


def rules_of(docs: dict[str, dict]) -> list[dict]:
    """All rules of all documents, flattened."""
    return [rule for doc in docs.values() for group in doc["groups"] for rule in group["rules"]]


def coverage_problems(rule_docs: dict[str, dict], test_docs: dict[str, dict]) -> list[str]:
    """Alerts without a before/after promtool case, records without a promql_expr_test."""
    before, after, exprs = set(), set(), []
    for doc in test_docs.values():
        for case in doc.get("tests") or []:
            for test in case.get("alert_rule_test") or []:
                (after if test.get("exp_alerts") else before).add(test["alertname"])
            exprs.extend(t["expr"] for t in case.get("promql_expr_test") or [])
    out = []
    rules = rules_of(rule_docs)
    for name in sorted({r["alert"] for r in rules if "alert" in r}):
        if name not in after:
            out.append(f"alert {name}: no promtool case where it fires")
        if name not in before and name not in HEARTBEATS:
            out.append(f"alert {name}: no promtool case just before it fires (exp_alerts: [])")
    used = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
    tested = {token for expr in exprs for token in used.findall(expr)}
    for name in sorted({r["record"] for r in rules if "record" in r}):
        if name not in tested:
            out.append(f"recording rule {name}: no promql_expr_test reads it")
    return out


def shortened(doc: dict, max_for: str = "1s") -> dict:
    """A copy of a rule document for live tests: no group intervals, `for` capped."""
    copy = yaml.safe_load(yaml.safe_dump(doc))
    for group in copy["groups"]:
        group.pop("interval", None)
        for rule in group["rules"]:
            if rule.get("for"):
                rule["for"] = max_for
    return copy
