"""The proof: against real Prometheus with the recorded fixture and the repository's rules,
every query of every panel parses and returns at least one series."""

import re
import time

import pytest
import yaml

from pulse.dashboards import check, default_range, load_all, metric_names, queries
from pulse.launcher.cli import main
from tests.grafana.fixture import STEP, shared_fixture_prometheus
from tests.harness import wait_until
from tests.synthetic import rule_files

pytestmark = pytest.mark.integration
DOCS = load_all()


def needs_rules(expr: str) -> bool:
    """True when the expression reads a recording rule or the ALERTS series."""
    return any(":" in n or n == "ALERTS" for n in metric_names(expr))


def rule_names() -> tuple[set[str], set[str]]:
    """(recorded names, alert names) defined by the rule files."""
    records, alerts = set(), set()
    for path in rule_files():
        for group in (yaml.safe_load(path.read_text()) or {}).get("groups", []):
            for rule in group.get("rules", []):
                (records.add(rule["record"]) if "record" in rule
                 else alerts.add(rule.get("alert")))
    return records, alerts


@pytest.fixture(scope="module")
def fixture_prom(tmp_path_factory):
    """Prometheus on the fixture (4 h ending now) with the rules backfilled."""
    prom, end = shared_fixture_prometheus(tmp_path_factory.mktemp("dashboards-fixture"))
    yield prom, end
    prom.stop()


def _report(outcomes) -> str:
    return "\n".join(f"{o.query.dashboard}/{o.query.panel_title} [{o.query.ref}]: "
                     f"{o.error or 'no series'}\n    {o.expr}" for o in outcomes)


def test_every_catalogue_query_returns_series(fixture_prom):
    prom, end = fixture_prom
    outcomes = [o for o in check(prom.url, end - 3600, end, step=STEP, scrape_s=STEP)
                if not needs_rules(o.query.expr)]
    assert len(outcomes) > 40
    failed = [o for o in outcomes if not o.ok]
    assert not failed, "empty or failing panels:\n" + _report(failed)


def test_every_query_on_rules_returns_series(fixture_prom):
    prom, end = fixture_prom
    records, alerts = rule_names()
    wanted = {n for name, doc in DOCS.items() for q in queries(name, doc)
              for n in metric_names(q.expr) if ":" in n}
    assert wanted <= records, f"recording rules the dashboards read but no file defines: " \
                              f"{sorted(wanted - records)}"
    assert alerts, "the rule files define no alert (Watchdog at least)"
    # ALERTS exists only once Prometheus has evaluated the alerting rules live.
    wait_until(lambda: prom.query('ALERTS{alertstate="firing"}'), 60,
               message="a firing alert (Watchdog)")
    now = time.time()
    outcomes = [o for o in check(prom.url, now - 3600, now, step=STEP, scrape_s=STEP)
                if needs_rules(o.query.expr)]
    assert outcomes
    failed = [o for o in outcomes if not o.ok]
    assert not failed, "empty or failing panels:\n" + _report(failed)


def test_template_variables_have_values(fixture_prom):
    prom, _ = fixture_prom
    for name, doc in DOCS.items():
        for var in doc["templating"]["list"][1:]:
            metric, label = re.fullmatch(r"label_values\((\S+), (\w+)\)",
                                         var["query"]).groups()
            assert prom.query(f"count by ({label}) ({metric})"), (name, var["name"])


def test_rule_backfill_covers_the_range(fixture_prom):
    prom, end = fixture_prom
    records, _ = rule_names()
    assert records, "the rule files record nothing"
    used = sorted(n for name, doc in DOCS.items() for q in queries(name, doc)
                  for n in metric_names(q.expr) if n in records)
    for name in used:
        # Backfilled points exist hours before Prometheus started evaluating live.
        assert prom.query(f"count_over_time({name}[10m])", end - 2 * 3600), name


def test_cli_check_passes_on_fixture(fixture_prom, capsys):
    prom, _ = fixture_prom
    wait_until(lambda: prom.query('ALERTS{alertstate="firing"}'), 60,
               message="a firing alert (Watchdog)")
    assert main(["dashboards", "check", "--prometheus", prom.url, "--scrape-interval",
                 f"{STEP}s", "-v"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"(\d+)/\1 queries returned data", out), out


def test_cli_check_names_empty_panels(prometheus_factory, capsys):
    empty = prometheus_factory()
    assert main(["dashboards", "check", "--prometheus", empty.url,
                 "--dashboard", "coach"]) == 1
    out = capsys.readouterr().out
    assert "EMPTY  coach/Active clients [A]" in out
    assert "0/8 queries returned data" in out


def test_cli_check_rejects_bad_input(capsys):
    assert main(["dashboards", "check", "--prometheus", "http://127.0.0.1:9",
                 "--dashboard", "nope"]) == 2
    assert "unknown nope" in capsys.readouterr().err
    assert main(["dashboards", "check", "--prometheus", "http://127.0.0.1:9",
                 "--range", "soon"]) == 2


def test_default_range_is_half_the_servers_age_within_bounds():
    assert default_range(None) == 3600
    assert default_range(30) == 60
    assert default_range(1000) == 500
    assert default_range(10 * 3600) == 3600


def test_cli_check_without_range_uses_what_a_fresh_server_has_seen(prometheus_factory, capsys):
    prom = prometheus_factory()
    # A fresh stack: Prometheus scrapes itself, so its oldest sample is seconds old.
    prom.configure(targets={"prometheus": [f"127.0.0.1:{prom.port}"]})
    prom.wait_for_value("prometheus_tsdb_lowest_timestamp_seconds", timeout=60)
    assert main(["dashboards", "check", "--prometheus", prom.url,
                 "--dashboard", "coach"]) == 1
    out = capsys.readouterr().out
    assert "over the last 60s (half of what it has seen, from 1m to 1h)" in out, out
    assert main(["dashboards", "check", "--prometheus", prom.url, "--range", "2h",
                 "--dashboard", "coach"]) == 1
    assert "over the last 2h" in capsys.readouterr().out
