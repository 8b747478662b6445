"""End to end, per scenario: scenario -> alert fires -> page in the demo channel -> `normal`
-> the alert resolves and the resolution reaches the channel too.

Time is compressed with pulse.launcher.demotime (what `pulse up --demo` does, only faster): the
shipped rules are copied with every range divided by TIME_SCALE and every `for` by twice
that (`for: 1h` takes 30 s here); Alertmanager's group timers are 1-2 s and business-hours
muting is off; the simulator runs fast.
"""

from __future__ import annotations

import json
import os
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml

from demo.scenarios import SCENARIOS
from pulse.config import load_config
from pulse.launcher.demotime import compress_routing, compress_rules
from pulse.launcher.render import alertmanager_config
from pulse.launcher.supervisor import service_argv
from tests import harness
from tests.demo.conftest import write_demo_config

TIME_SCALE = 60
RULES = harness.ROOT / "rules"
UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
# Several minutes in all (each scenario fires, is delivered and resolves): `-m "not e2e"`
# leaves it out of a quick run.
pytestmark = [pytest.mark.integration, pytest.mark.e2e]


def compress(text: str) -> str:
    """A rule file on test time: ranges / TIME_SCALE, `for` / twice that (floors of 5 s)."""
    return compress_rules(text, TIME_SCALE, 2 * TIME_SCALE, min_range=5, min_for=5)


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    """Intake, exporters, bridge, the demo, Alertmanager and Prometheus on compressed rules."""
    work = tmp_path_factory.mktemp("e2e")
    data = work / "data"
    sink_port = harness.free_port()
    path = work / "pulse.yml"
    cfg_demo = {"speed": 20, "users": 60, "disk_size_mb": 16, "disk_fill": "40s",
                "sink_listen": f"127.0.0.1:{sink_port}"}
    raw = write_demo_config(path, data, demo=cfg_demo)
    raw["exporters"]["integrations"]["targets"] = [
        {"name": "payments", "timeout": "2s", "interval": "1s",
         "url": f"http://{raw['demo']['payments_listen']}/health"}]
    raw["bridge"]["channels"] = {"demo": [f"json://127.0.0.1:{sink_port}/notify"]}
    raw["bridge"]["receivers"] = {"default": ["demo"]}  # as the shipped pulse.yml does
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    env = harness.pulse_env(data)
    cfg = load_config(path, env=env)
    rules_dir = work / "rules"
    rules_dir.mkdir()
    for rule_file in RULES.glob("*.rules.yml"):
        (rules_dir / rule_file.name).write_text(compress(rule_file.read_text()))
    procs = []
    try:
        for module, listen in (("exporters.events", cfg.exporters.events.listen),
                               ("exporters.infrastructure", cfg.exporters.infrastructure.listen),
                               ("exporters.integrations", cfg.exporters.integrations.listen),
                               ("bridge", cfg.bridge.listen),
                               ("demo.payments", cfg.demo.payments_listen),
                               ("demo.sink", cfg.demo.sink_listen),
                               ("demo.app", cfg.demo.listen)):
            procs.append(harness.start_service(module, path, env, listen,
                                               work / f"{module}.log", timeout=60))
        routing = compress_routing(alertmanager_config(cfg), group_interval="2s")
        am = harness.AlertmanagerServer(work / "am", routing).start()
        prom = harness.PrometheusServer(
            work / "prom", rule_files=[str(rules_dir / "*.rules.yml")],
            alertmanagers=[am.url],
            targets={"events": [cfg.exporters.events.listen],
                     "infrastructure": [cfg.exporters.infrastructure.listen],
                     "integrations": [cfg.exporters.integrations.listen],
                     "bridge": [cfg.bridge.listen], "demo": [cfg.demo.listen]}).start()
        procs.append(harness.Process(service_argv("demo.simulate", path), work / "simulator.log",
                                     env=env, cwd=harness.ROOT))
        yield {"cfg": cfg, "prom": prom, "am": am, "data": data}
    finally:
        for proc in reversed(procs):
            proc.stop()
        for server in ("prom", "am"):
            obj = locals().get(server)
            if obj is not None:
                obj.stop()


def _notes(data: Path) -> list[dict]:
    try:
        lines = (data / "demo" / "notifications.jsonl").read_text().splitlines()
    except OSError:
        return []
    return [json.loads(line) for line in lines if line.strip()]


def _mentions(note: dict, alert: str, scope: dict[str, str] | None = None) -> bool:
    text = f"{note.get('title')} {note.get('message')}"
    return alert in text and all(value in text for value in (scope or {}).values())


def scenario_scope(scenario: str, stack: dict) -> dict[str, str]:
    """Labels that tell the scenario's own alert from the same alert about the host.

    The infrastructure exporter reports every filesystem of the machine, and on test
    time a 6-minute trend is extrapolated a full day: a shared, busy root filesystem
    with under 40 % available fires NodeFilesystemFillingUp for mountpoint="/" on its
    own, so disk-filling is judged on the demo disk's mountpoint only.
    """
    if scenario == "disk-filling":
        from demo.disk import DiskFiller

        return {"mountpoint": os.path.realpath(DiskFiller(stack["cfg"].data_dir).mountpoint)}
    return {}


# The two slow scenarios (a window to fill, a disk to fill) run from
# test_alerts_e2e_slow.py, on a stack of their own, so a parallel run overlaps them.
SLOW = ("ai-accuracy-drop", "disk-filling")


def check_scenario(scenario: str, stack: dict) -> None:
    """Switch to scenario: its alert fires and is delivered; `normal` resolves both."""
    from demo.scenarios import write_scenario

    alert = SCENARIOS[scenario][1]
    scope = scenario_scope(scenario, stack)
    prom, data = stack["prom"], stack["data"]
    before = len(_notes(data))
    since = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    write_scenario(data, scenario)
    try:
        prom.wait_for_alert(alert, "firing", labels=scope, timeout=240)
        harness.wait_until(lambda: any(_mentions(n, alert, scope) for n in _notes(data)[before:]),
                           timeout=60, message=f"{alert} {scope} delivered to the demo channel")
    finally:
        write_scenario(data, "normal")
    fired = len(_notes(data))
    harness.wait_until(lambda: not any(_matches(a["labels"], alert, scope)
                                       for a in prom.alerts()), timeout=180,
                       message=f"{alert} {scope} resolved")
    harness.wait_until(lambda: any(_mentions(n, alert, scope)
                                   and "resolved" in json.dumps(n).lower()
                                   for n in _notes(data)[fired:]),
                       timeout=60, message=f"{alert} {scope} resolution delivered")
    # One incident, one page: per receiver, exactly one firing and one resolved
    # notification of the alert (a flapping alert would page again). A few group
    # intervals more, so a late page would be counted.
    time.sleep(6)
    seen = pages(data, alert, since, scope)
    assert seen == {(receiver, state): 1 for receiver in {r for r, _ in seen}
                    for state in ("firing", "resolved")}, seen


def _matches(labels: dict, alert: str, scope: dict[str, str]) -> bool:
    return labels.get("alertname") == alert and all(labels.get(k) == v for k, v in scope.items())


def pages(data: Path, alert: str, since: str,
          scope: dict[str, str] | None = None) -> dict[tuple[str, str], int]:
    """Notifications of alert (with the scope's labels) delivered since `since`, per
    (receiver, firing|resolved), from the bridge's delivery history (one entry per alert
    per notification)."""
    seen: set[tuple[str, str, str]] = set()
    path = data / "delivery" / "history.jsonl"
    for line in path.read_text().splitlines() if path.exists() else []:
        entry = json.loads(line)
        if (entry.get("name") == alert and entry.get("notifiedAt", "") >= since
                and _matches(entry.get("labels", {}), alert, scope or {})):
            seen.add((entry["receiver"], entry["state"], entry["notifiedAt"]))
    out: dict[tuple[str, str], int] = {}
    for receiver, state, _ in seen:
        out[(receiver, state)] = out.get((receiver, state), 0) + 1
    return out


@pytest.mark.parametrize("scenario", [s for s in SCENARIOS if s != "normal" and s not in SLOW])
def test_scenario_pages_the_demo_channel_and_normal_resolves_it(scenario, stack):
    check_scenario(scenario, stack)


def test_compress_scales_ranges_and_for():
    text = "expr: rate(x[5m]) > predict_linear(y[6h], 4 * 3600)\n        for: 1h\n"
    assert compress(text) == "expr: rate(x[5s]) > predict_linear(y[360s], 4 * 3600)\n" \
                             "        for: 30s\n"
