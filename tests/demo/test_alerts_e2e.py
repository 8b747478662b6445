"""End to end, per scenario: scenario -> alert fires -> page in the demo channel -> `normal`
-> the alert resolves and the resolution reaches the channel too.

PENDING until the branches it needs are merged: the rules (rules/*.rules.yml with the
alert names of NAMES.md), the events intake (exporters/events/mapping.yml), the
integrations exporter with probe `targets`, the infrastructure exporter's filesystem
collector, and the bridge's /hooks/alertmanager delivering channel `demo`. While any
piece is missing the test XFAILs naming it (set PULSE_E2E_STRICT=1 to make that a
failure). Time is compressed: the shipped rules are copied with every range divided by
TIME_SCALE and every `for` by twice that (`for: 1h` takes 30 s here); Alertmanager's group timers
are 1-2 s and business-hours muting is off; the simulator runs fast.
"""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path

import pytest
import yaml

from demo.scenarios import SCENARIOS
from pulse.config import load_config
from pulse.render import alertmanager_config
from tests import harness
from tests.demo.conftest import write_demo_config

TIME_SCALE = 60
RULES = harness.ROOT / "rules"
UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
# Several minutes in all (each scenario fires, is delivered and resolves): `-m "not e2e"`
# leaves it out of a quick run.
pytestmark = [pytest.mark.integration, pytest.mark.e2e]


def shipped_alerts() -> set[str]:
    """Alert names defined in rules/*.rules.yml."""
    names = set()
    for path in RULES.glob("*.rules.yml"):
        doc = yaml.safe_load(path.read_text()) or {}
        for group in doc.get("groups", []):
            names.update(r["alert"] for r in group.get("rules", []) if "alert" in r)
    return names


def _grep(folder: str, text: str) -> bool:
    return any(text in p.read_text(errors="replace")
               for p in (harness.ROOT / folder).rglob("*.py"))


def missing_pieces(scenario: str) -> list[str]:
    """What this scenario's end-to-end path still lacks in this tree."""
    alert = SCENARIOS[scenario][1]
    missing = []
    if alert not in shipped_alerts():
        missing.append(f"alert {alert} in rules/*.rules.yml (rules issue)")
    if not _grep("bridge", "/hooks/alertmanager"):
        missing.append("bridge POST /hooks/alertmanager delivering to apprise (delivery issue)")
    if scenario in ("ai-accuracy-drop", "crash-spike", "ingest-garbage") and \
            not (harness.ROOT / "exporters" / "events" / "mapping.yml").exists():
        missing.append("the events intake and its mapping (events issue)")
    schema = json.loads((harness.ROOT / "pulse/schema/integrations.schema.json").read_text())
    if scenario == "integration-outage" and "targets" not in schema["properties"]:
        missing.append("exporters.integrations probe targets (integrations issue)")
    if scenario == "disk-filling" and not _grep("exporters/infrastructure",
                                                "avail_bytes"):
        missing.append("the infrastructure exporter's filesystem collector (issue 4)")
    return missing


def compress(text: str) -> str:
    """A rule file with ranges divided by TIME_SCALE and `for` by twice that (min 5 s).

    Ranges keep enough samples to hold the rules' min-sample guards at the simulator's
    rate; `for` only delays, so it is shortened further.
    """
    def scaled(value: str, scale: int) -> str:
        seconds = sum(int(n) * UNITS[u] for n, u in re.findall(r"(\d+)([smhd])", value))
        return f"{max(5, seconds // scale)}s"

    text = re.sub(r"\[((?:\d+[smhd])+)\]",
                  lambda m: f"[{scaled(m.group(1), TIME_SCALE)}]", text)
    return re.sub(r"(\bfor:\s*)((?:\d+[smhd])+)",
                  lambda m: m.group(1) + scaled(m.group(2), 2 * TIME_SCALE), text)


def compress_routing(node):
    """The shipped routing with short group timers and no business-hours muting."""
    if isinstance(node, dict):
        out = {k: compress_routing(v) for k, v in node.items()
               if k not in ("active_time_intervals", "mute_time_intervals")}
        if "group_wait" in out or "receiver" in out:
            out.update(group_wait="1s", group_interval="2s")
        return out
    if isinstance(node, list):
        return [compress_routing(v) for v in node]
    return node


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    """Intake, exporters, bridge, the demo, Alertmanager and Prometheus on compressed rules."""
    work = tmp_path_factory.mktemp("e2e")
    data = work / "data"
    sink_port = harness.free_port()
    path = work / "pulse.yml"
    overrides = {}
    schema = json.loads((harness.ROOT / "pulse/schema/integrations.schema.json").read_text())
    cfg_demo = {"speed": 20, "users": 60, "disk_size_mb": 16,
                "sink_listen": f"127.0.0.1:{sink_port}"}
    raw = write_demo_config(path, data, demo=cfg_demo)
    if "targets" in schema["properties"]:
        overrides = {"targets": [{"name": "payments", "timeout": "2s", "interval": "1s",
                                  "url": f"http://{raw['demo']['payments_listen']}/health"}]}
        raw["exporters"]["integrations"].update(overrides)
    raw["bridge"]["channels"] = {"demo": [f"json://127.0.0.1:{sink_port}/notify"]}
    bridge_schema = json.loads((harness.ROOT / "pulse/schema/bridge.schema.json").read_text())
    if "receivers" in bridge_schema["properties"]:
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
        am = harness.AlertmanagerServer(work / "am",
                                        compress_routing(alertmanager_config(cfg))).start()
        prom = harness.PrometheusServer(
            work / "prom", rule_files=[str(rules_dir / "*.rules.yml")],
            alertmanagers=[am.url],
            targets={"events": [cfg.exporters.events.listen],
                     "infrastructure": [cfg.exporters.infrastructure.listen],
                     "integrations": [cfg.exporters.integrations.listen],
                     "bridge": [cfg.bridge.listen], "demo": [cfg.demo.listen]}).start()
        procs.append(harness.Process([sys.executable, "-m", "demo.simulate", "--config",
                                      str(path)], work / "simulator.log", env=env,
                                     cwd=harness.ROOT))
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


def _mentions(note: dict, alert: str) -> bool:
    return alert in f"{note.get('title')} {note.get('message')}"


@pytest.mark.parametrize("scenario", [s for s in SCENARIOS if s != "normal"])
def test_scenario_pages_the_demo_channel_and_normal_resolves_it(scenario, request):
    missing = missing_pieces(scenario)
    if missing:
        message = f"PENDING MERGE for {scenario}: missing " + "; ".join(missing)
        if os.environ.get("PULSE_E2E_STRICT"):
            pytest.fail(message, pytrace=False)
        pytest.xfail(message)
    stack = request.getfixturevalue("stack")
    from demo.scenarios import write_scenario

    alert = SCENARIOS[scenario][1]
    prom, data = stack["prom"], stack["data"]
    before = len(_notes(data))
    write_scenario(data, scenario)
    try:
        prom.wait_for_alert(alert, "firing", timeout=300)
        harness.wait_until(lambda: any(_mentions(n, alert) for n in _notes(data)[before:]),
                           timeout=120, message=f"{alert} delivered to the demo channel")
    finally:
        write_scenario(data, "normal")
    fired = len(_notes(data))
    harness.wait_until(lambda: not any(a["labels"]["alertname"] == alert
                                       for a in prom.alerts()), timeout=300,
                       message=f"{alert} resolved")
    harness.wait_until(lambda: any(_mentions(n, alert) and "resolved" in json.dumps(n).lower()
                                   for n in _notes(data)[fired:]),
                       timeout=120, message=f"{alert} resolution delivered")


def test_compress_scales_ranges_and_for():
    text = "expr: rate(x[5m]) > predict_linear(y[6h], 4 * 3600)\n        for: 1h\n"
    assert compress(text) == "expr: rate(x[5s]) > predict_linear(y[360s], 4 * 3600)\n" \
                             "        for: 30s\n"
